"""Structure measure of the judge (the controls that validate it: experiments/controls.py).

The synthesis objective sees CNN features through Gram matrices (and optionally
autocorrelations of them); none of that is used here. Structure is judged on raw pixels, by
two groups of fixed-filter statistics:

- ``layout``: correlograms (autocorrelation coefficients over shifts up to 0.15 of the
  exemplar's side) of Gabor responses and of their magnitudes at box-pyramid octaves 1-3 of
  the contrast-normalised luminance: do elements recur at the exemplar's spacings and angles?
- ``edges``: Portilla-Simoncelli style cross-scale phase correlations and the kurtosis and
  skewness of each band: are edges as sharp and as aligned across scales?

Real crops of a photo differ from each other (lighting, non-stationarity), so a statistic
compared with the whole exemplar's value cannot tell a small structural change from the
crop-to-crop spread. Each statistic is therefore z-scored against ``CROPS`` real crops of
half the exemplar's short side (mean and standard deviation per entry), and a group's
distance is the RMS z-score: entries that real crops agree on (the lattice spacing of cells,
the width of a joint) weigh much more than those that vary anyway. The measure is the
geometric mean of the two groups, each divided by the real crops' own leave-one-out value, so
that 1.0 means "as far from the exemplar's real crops as one of them".

Convention: images are (3, H, W) float tensors in [0, 1], RGB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# Fixed filters, shared with the judge (judge/__init__.py): opponent colour and a Gabor bank.
def opponent(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB -> (3, H, W) luminance, red-green, blue-yellow."""
    r, g, b = x
    return torch.stack([0.299 * r + 0.587 * g + 0.114 * b, r - g, 0.5 * (r + g) - b])


def gabor_bank(orientations: int = 4, wavelength: float = 4.0, size: int = 9) -> torch.Tensor:
    """(2 * orientations, 1, size, size) even and odd zero-mean Gabor kernels, unit L1 norm."""
    r = torch.arange(size, dtype=torch.float32) - size // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    sigma = 0.56 * wavelength  # about one octave of bandwidth
    kernels = []
    for k in range(orientations):
        theta = math.pi * k / orientations
        u = x * math.cos(theta) + y * math.sin(theta)
        envelope = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
        for phase in (torch.cos, torch.sin):
            g = envelope * phase(2 * math.pi * u / wavelength)
            g = g - envelope * (g.sum() / envelope.sum())  # no response to flat areas
            kernels.append(g / g.abs().sum())
    return torch.stack(kernels)[:, None]


GABOR_WAVELENGTH = 4.0  # px at each octave: the band centred on 1/4 cycle per pixel
OCTAVES = (1, 2, 3)  # box-pyramid octaves of the layout statistics
_GABOR = gabor_bank(wavelength=GABOR_WAVELENGTH)
MIN_SIDE = 16  # coarser maps than this hold too few responses for statistics
CROPS = 24  # real crops whose statistics' spread sets the z-scores
SHIFT_FRACTION = 0.15  # correlogram shifts up to this fraction of the exemplar's short side


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    fy, fx = torch.fft.fftfreq(h), torch.fft.fftfreq(w)
    lowpass = torch.exp(-2 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return torch.fft.ifft2(torch.fft.fft2(x) * lowpass).real


def contrast_normalised(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Opponent channels minus their local mean, over the local luminance standard deviation.

    Both are Gaussian-weighted with sd ``sigma`` px (borders reflected). Lighting gradients
    and slow contrast changes of a photo then no longer count as structure.
    """
    o = opponent(x)
    pad = min(int(2 * sigma), o.shape[-1] - 1, o.shape[-2] - 1)
    p = F.pad(o[None], (pad,) * 4, mode="reflect")[0]
    mean = _gaussian_blur(p, sigma)
    var = _gaussian_blur((p - mean)[:1] ** 2, sigma)
    z = (p - mean) / (var.clamp_min(0).sqrt() + 0.01)
    return z[:, pad : z.shape[1] - pad, pad : z.shape[2] - pad]


def _gabor(level: torch.Tensor) -> torch.Tensor:
    """(1, h, w) -> (4, h, w) complex responses of the judge's Gabor bank (4 orientations)."""
    resp = F.conv2d(F.pad(level[None], (4, 4, 4, 4), mode="reflect"), _GABOR)[0]
    return torch.complex(resp[0::2], resp[1::2])


def _correlogram(m: torch.Tensor, shift: int) -> torch.Tensor:
    """(C, h, w) -> (C, 2k+1, 2k+1) autocorrelation coefficients over the overlap, k <= shift."""
    m = m - m.mean((1, 2), keepdim=True)
    c, h, w = m.shape
    ky, kx = min(shift, h - 1), min(shift, w - 1)
    grid = (h + ky, w + kx)
    spec = torch.fft.rfft2(m, s=grid)
    r = torch.fft.irfft2(spec * spec.conj(), s=grid)
    r = torch.roll(r, (ky, kx), (-2, -1))[..., : 2 * ky + 1, : 2 * kx + 1]
    dy, dx = torch.arange(-ky, ky + 1).float(), torch.arange(-kx, kx + 1).float()
    r = r / ((h - dy.abs())[:, None] * (w - dx.abs())[None, :])
    return r / r[:, ky : ky + 1, kx : kx + 1].clamp_min(1e-12)


def layout_stats(z: torch.Tensor, shift_px: int, octaves) -> list[torch.Tensor]:
    """Where band-pass structure recurs: per octave, correlograms of the signed Gabor responses
    and of their magnitudes over shifts up to ``shift_px`` image pixels."""
    out = []
    for s in octaves:
        level = F.avg_pool2d(z[None, :1], 2**s)[0]
        resp = _gabor(level)
        k = max(2, shift_px >> s)
        out.append(_correlogram(torch.cat([resp.real, resp.imag]), k).flatten())
        out.append(_correlogram(resp.abs(), k).flatten())
    return out


def phase_stats(x: torch.Tensor, octaves) -> torch.Tensor:
    """Edges and sharpness: Portilla-Simoncelli style cross-scale phase correlations (each band
    against the next coarser one with its phase doubled) and the log-kurtosis and skewness of
    each band's responses, for luminance octaves ``octaves`` (each needs the next one too)."""
    lum = opponent(x)[:1]
    levels = [F.avg_pool2d(lum[None], 2**s)[0] if s else lum for s in range(max(octaves) + 2)]
    resp = [_gabor(level) for level in levels]
    out = []
    for s in octaves:
        fine, coarse = resp[s], resp[s + 1]
        coarse = torch.view_as_real(coarse).permute(0, 3, 1, 2)
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        coarse = torch.view_as_complex(coarse.permute(0, 2, 3, 1).contiguous())
        doubled = coarse**2 / coarse.abs().clamp_min(1e-8)
        norm = fine.abs().pow(2).mean((1, 2)).sqrt() * coarse.abs().pow(2).mean((1, 2)).sqrt()
        corr = (fine * doubled.conj()).mean((1, 2)) / norm.clamp_min(1e-12)
        out.append(torch.view_as_real(corr).flatten())
        re = fine.real
        z = (re - re.mean((1, 2), keepdim=True)) / re.std((1, 2), keepdim=True).clamp_min(1e-8)
        out.append(
            0.3 * torch.stack([z.pow(4).mean((1, 2)).log(), z.pow(3).mean((1, 2))]).flatten()
        )
    return torch.cat(out)


def structure_stats(x: torch.Tensor, ref_side: int) -> dict[str, torch.Tensor]:
    """{"layout": (N,), "edges": (M,)} statistics of x (3, H, W) for an exemplar of short side
    ``ref_side`` (which sets the contrast normalisation's sd, 1/16 of it, and the layout's
    shifts, 0.15 of it, so that every image is measured on the exemplar's scale)."""
    z = contrast_normalised(x, ref_side / 16)
    small = ref_side // 2  # the real crops' side: x must be at least as large
    layout_octaves = [s for s in OCTAVES if small >> s >= MIN_SIDE]
    edge_octaves = [s for s in range(3) if small >> (s + 1) >= MIN_SIDE]
    return {
        "layout": torch.cat(layout_stats(z, int(SHIFT_FRACTION * ref_side), layout_octaves)),
        "edges": phase_stats(x, edge_octaves),
    }


def _z_rms(stats, mean, std) -> dict[str, float]:
    return {k: float(((stats[k] - mean[k]) / std[k]).pow(2).mean().sqrt()) for k in stats}


def _moments(rows: list[dict[str, torch.Tensor]]):
    mean = {k: torch.stack([r[k] for r in rows]).mean(0) for k in rows[0]}
    std = {}
    for k in rows[0]:
        sd = torch.stack([r[k] for r in rows]).std(0)
        # Entries on which the crops agree exactly (a correlogram's centre is always 1) would
        # divide by ~0: floor each sd at a fifth of the group's median sd.
        std[k] = sd.clamp_min(0.2 * float(sd.median()) + 1e-12)
    return mean, std


class StructureReference:
    """The real-crop statistics of one exemplar, computed once; call it on outputs.

    Args:
        ref: (3, H, W) exemplar in [0, 1], at least ``8 * MIN_SIDE`` px on its short side.
        crops: number of real crops (half the short side, random positions from ``seed``).

    Call: ``reference(x)`` with x (3, h, w), h, w >= half the exemplar's short side (the real
    crops' side, so that x has every statistic they have) -> {"layout", "edges",
    "structure"}: RMS z-scores over the leave-one-out real-crop value (1.0 ~ a real crop) and
    their geometric mean.
    """

    def __init__(self, ref: torch.Tensor, crops: int = CROPS, seed: int = 321):
        self.side = min(ref.shape[-2:])
        if self.side < 8 * MIN_SIDE:
            raise ValueError(f"exemplars under {8 * MIN_SIDE} px are too small for the measure")
        half = self.side // 2
        g = torch.Generator().manual_seed(seed)
        h, w = ref.shape[-2:]
        rows = []
        for _ in range(crops):
            y = int(torch.randint(0, h - half + 1, (1,), generator=g))
            x = int(torch.randint(0, w - half + 1, (1,), generator=g))
            rows.append(structure_stats(ref[:, y : y + half, x : x + half], self.side))
        self.mean, self.std = _moments(rows)
        loo = [_z_rms(r, *_moments(rows[:i] + rows[i + 1 :])) for i, r in enumerate(rows)]
        self.baseline = {k: sum(v[k] for v in loo) / len(loo) for k in rows[0]}

    def __call__(self, x: torch.Tensor) -> dict[str, float]:
        z = _z_rms(structure_stats(x, self.side), self.mean, self.std)
        out = {k: v / self.baseline[k] for k, v in z.items()}
        out["structure"] = math.exp(sum(math.log(max(v, 1e-12)) for v in out.values()) / 2)
        return out


_CACHE: dict[tuple, StructureReference] = {}


def structure_distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    """``StructureReference(ref)(x)["structure"]``, the reference cached per exemplar (its
    crops' statistics are the expensive part). NaN, never a made-up value, when ref is under
    ``8 * MIN_SIDE`` px or x under half of ref's short side: there is no real crop to compare."""
    ref_side = min(ref.shape[-2:])
    if ref_side < 8 * MIN_SIDE or min(x.shape[-2:]) < ref_side // 2:
        return float("nan")
    key = (ref.data_ptr(), tuple(ref.shape), float(ref.double().sum()))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = StructureReference(ref)
    return _CACHE[key](x)["structure"]
