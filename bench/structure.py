"""Structure measure of the judge, and the controls that validate it.

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

from bench.filters import gabor_bank, opponent

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


# Controls: images that keep the exemplar's local statistics and break its layout --------------


def _crop(ref: torch.Tensor, size: tuple[int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h, w = ref.shape[-2:]
    y = int(torch.randint(0, h - size[0] + 1, (1,), generator=g))
    x = int(torch.randint(0, w - size[1] + 1, (1,), generator=g))
    return ref[:, y : y + size[0], x : x + size[1]]


def elastic_warp(x: torch.Tensor, amplitude: float, scale: float, seed: int) -> torch.Tensor:
    """``x`` resampled along a smooth random displacement field.

    The field is white noise low-passed by a Gaussian of sd ``scale`` px, rescaled so that its
    RMS displacement is ``amplitude`` px per axis; bilinear resampling, borders reflected.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    fy, fx = torch.fft.fftfreq(h), torch.fft.rfftfreq(w)
    lowpass = torch.exp(-2 * math.pi**2 * scale**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    field = torch.fft.irfft2(torch.fft.rfft2(torch.randn(2, h, w, generator=g)) * lowpass, s=(h, w))
    field = field * (amplitude / field.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-12))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid_x = (xs + field[1]) / (w - 1) * 2 - 1
    grid_y = (ys + field[0]) / (h - 1) * 2 - 1
    grid = torch.stack([grid_x, grid_y], -1)[None]
    out = F.grid_sample(
        x[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True
    )
    return out[0].clamp(0, 1)


def rescaled(ref: torch.Tensor, size: tuple[int, int], factor: float, seed: int):
    """A crop of ``ref`` covering ``size / factor`` px resized to ``size`` (> 1 enlarges)."""
    src = (round(size[0] / factor), round(size[1] / factor))
    out = F.interpolate(
        _crop(ref, src, seed)[None], size=size, mode="bicubic", antialias=factor < 1
    )
    return out[0].clamp(0, 1)


def phase_randomised(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Same Fourier modulus per channel, a random phase added to all channels alike.

    Adding one white-noise phase to every channel keeps the colour channels' relative phases
    (so their cross-spectra), as in random-phase noise (Galerne, Gousseau, Morel 2011)."""
    g = torch.Generator().manual_seed(seed)
    mean = x.mean((1, 2), keepdim=True)
    spectrum = torch.fft.rfft2(x - mean)
    phase = torch.fft.rfft2(torch.randn(x.shape[-2:], generator=g)).angle()
    out = torch.fft.irfft2(spectrum * torch.exp(1j * phase), s=x.shape[-2:])
    return (out + mean).clamp(0, 1)


def block_shuffled(x: torch.Tensor, block: int, seed: int) -> torch.Tensor:
    """``x`` cut into ``block`` x ``block`` tiles put back in random order."""
    h, w = (x.shape[1] // block) * block, (x.shape[2] // block) * block
    tiles = x[:, :h, :w].unfold(1, block, block).unfold(2, block, block)  # (3, nh, nw, b, b)
    nh, nw = tiles.shape[1:3]
    order = torch.randperm(nh * nw, generator=torch.Generator().manual_seed(seed))
    tiles = tiles.reshape(3, nh * nw, block, block)[:, order].reshape(3, nh, nw, block, block)
    out = x.clone()
    out[:, :h, :w] = tiles.permute(0, 1, 3, 2, 4).reshape(3, h, w)
    return out


def controls(ref: torch.Tensor, size: tuple[int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Named (3, *size) images made from ``ref``: three real crops, then the controls.

    ``ref`` must be at least 1.25x ``size`` on each side (for the 0.8x rescale). The warp moves
    pixels by 1/64 of the side (RMS, per axis) along a field smooth over 1/16 of it; blocks are
    1/4 of the side.
    """
    side = min(size)
    out = {f"real crop {k + 1}": _crop(ref, size, seed + k) for k in range(3)}
    out["elastic warp"] = elastic_warp(_crop(ref, size, seed + 10), side / 64, side / 16, seed)
    out["rescaled 1.25x"] = rescaled(ref, size, 1.25, seed + 11)
    out["rescaled 0.8x"] = rescaled(ref, size, 0.8, seed + 12)
    out["shuffled blocks"] = block_shuffled(_crop(ref, size, seed + 13), max(8, side // 4), seed)
    out["phase randomised"] = phase_randomised(_crop(ref, size, seed + 14), seed)
    g = torch.Generator().manual_seed(seed + 15)
    mean, std = ref.mean((1, 2), keepdim=True), ref.std((1, 2), keepdim=True)
    out["noise"] = (mean + std * torch.randn(3, *size, generator=g)).clamp(0, 1)
    return out
