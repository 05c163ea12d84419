"""Structure measure of the judge, and the controls that validate it.

The synthesis objective sees CNN features through Gram matrices (and optionally autocorrelations
of them); none of that is used here. Structure is judged on raw pixels: every output patch,
at several box-filtered octaves, is looked up among all the exemplar's patches of that octave,
and the distance to its nearest neighbour is averaged. A bent row of bricks, a broken cell
wall, a disc of the wrong size or a block seam makes patches that the exemplar does not
contain, while a texture made of the exemplar's own layout finds close matches everywhere.

Convention: images are (3, H, W) float tensors in [0, 1], RGB. Distances are RMS differences
per patch element in opponent colour space (luminance, red-green, blue-yellow); lower is
better. A real crop is judged against the exemplar with its own region left out (``exclude``),
so it cannot find itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.filters import gabor_bank, opponent

GABOR_WAVELENGTH = 4.0  # px at each octave: the band centred on 1/4 cycle per pixel
OCTAVES = (1, 2, 3)  # box-pyramid octaves: elements of 2-8, 4-16 and 8-32 px apart
_GABOR = gabor_bank(wavelength=GABOR_WAVELENGTH)
MIN_SIDE = 16  # coarser maps than this hold too few responses for statistics
PATCH = 8  # patch side, in pixels of the octave: spans of 15, 29 and 57 px of the image
QUERIES = 512  # output patches looked up per octave (a seeded random subset)
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


def _box_blur(x: torch.Tensor, octave: int) -> torch.Tensor:
    """Mean over 2^octave x 2^octave windows at every pixel (no decimation, so every phase of
    the octave's grid is kept and a crop matches its source exactly)."""
    k = 2**octave
    padded = F.pad(x[None], (k // 2, k - 1 - k // 2, k // 2, k - 1 - k // 2), mode="reflect")
    return F.avg_pool2d(padded, k, stride=1)[0]


def patch_distance(x, ref, exclude=None, seed: int = 0) -> float:
    """Geometric mean over ``OCTAVES`` of the mean nearest-neighbour distance of x's patches.

    A patch of octave s is ``PATCH`` x ``PATCH`` samples 2^s px apart on the box-blurred image;
    the exemplar's patches start on every 2^(s-1)-th pixel. Distances are RMS per element.
    """
    g = torch.Generator().manual_seed(seed)
    logs = []
    for s in OCTAVES:
        a, b = _box_blur(x, s), _box_blur(ref, s)
        d, stride = 2**s, 2 ** (s - 1)
        span = d * (PATCH - 1) + 1
        if min(a.shape[-2:]) < span or min(b.shape[-2:]) < span:
            continue
        queries = F.unfold(a[None], PATCH, dilation=d, stride=d)[0].T  # (P, C * PATCH^2)
        queries = queries[torch.randperm(queries.shape[0], generator=g)[:QUERIES]]
        base = F.unfold(b[None], PATCH, dilation=d, stride=stride)[0].T
        if exclude is not None:
            y0, x0, h, w = exclude
            nh = (b.shape[1] - span) // stride + 1
            nw = (b.shape[2] - span) // stride + 1
            ys = torch.arange(nh).repeat_interleave(nw) * stride
            xs = torch.arange(nw).repeat(nh) * stride
            inside = (ys < y0 + h) & (ys + span > y0) & (xs < x0 + w) & (xs + span > x0)
            base = base[~inside]
            if base.shape[0] == 0:
                continue
        q_sq = queries.pow(2).sum(1, keepdim=True)
        best = torch.full((queries.shape[0],), float("inf"))
        for chunk in torch.split(base, 16384):
            dist = q_sq + chunk.pow(2).sum(1)[None] - 2 * queries @ chunk.T
            best = torch.minimum(best, dist.min(1).values)
        logs.append(math.log(float((best.clamp_min(0) / queries.shape[1]).sqrt().mean()) + 1e-9))
    if not logs:
        raise ValueError(f"images of {tuple(x.shape[-2:])} px are too small for the measure")
    return math.exp(sum(logs) / len(logs))


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


def structure_terms(x: torch.Tensor, ref: torch.Tensor, exclude=None) -> dict[str, float]:
    """The three parts of the structure measure, each a distance of x to ref (lower is better).

    ``patches``: nearest-neighbour patch distance (are x's shapes the exemplar's?);
    ``layout``: correlogram distance (do elements recur at the exemplar's spacings and angles?);
    ``edges``: phase and marginal statistics (are edges as sharp and as aligned across scales?).
    Patches and layout are taken on contrast-normalised images (sd: 1/16 of the exemplar's
    short side), and the layout's shifts reach 0.15 of it: both scales come from the exemplar,
    so that outputs of any size are measured alike.
    """
    side = min(ref.shape[-2:])
    zx, zr = contrast_normalised(x, side / 16), contrast_normalised(ref, side / 16)
    shift = int(SHIFT_FRACTION * side)
    # Statistics are taken only at octaves where both images are at least MIN_SIDE px.
    small = min(*x.shape[-2:], side)
    layout_octaves = [s for s in OCTAVES if small >> s >= MIN_SIDE]
    edge_octaves = [s for s in range(3) if small >> (s + 1) >= MIN_SIDE]
    if not layout_octaves or not edge_octaves:
        raise ValueError(f"images under {MIN_SIDE << 2} px are too small for the structure measure")
    lx, lr = layout_stats(zx, shift, layout_octaves), layout_stats(zr, shift, layout_octaves)
    layout = math.sqrt(
        sum(float((a - b).pow(2).mean()) for a, b in zip(lx, lr, strict=True)) / len(lx)
    )
    edges = phase_stats(x, edge_octaves) - phase_stats(ref, edge_octaves)
    return {
        "patches": patch_distance(zx, zr, exclude),
        "layout": layout,
        "edges": float(edges.pow(2).mean().sqrt()),
    }


def structure_distance(x, ref, exclude=None) -> float:
    """Geometric mean of ``structure_terms`` (raw; the judge divides by real crops' values).

    NaN (not a number, never a made-up value) for images under ``4 * MIN_SIDE`` px a side,
    which have no octave big enough for the statistics."""
    if min(*x.shape[-2:], *ref.shape[-2:]) < 4 * MIN_SIDE:
        return float("nan")
    terms = structure_terms(x, ref, exclude)
    return math.exp(sum(math.log(max(v, 1e-12)) for v in terms.values()) / len(terms))


# Controls: images that keep the exemplar's local statistics and break its layout --------------


def crop_at(ref: torch.Tensor, size: tuple[int, int], seed: int) -> tuple[torch.Tensor, tuple]:
    """A random (3, *size) crop of ``ref`` and its (y, x, h, w) region."""
    g = torch.Generator().manual_seed(seed)
    h, w = ref.shape[-2:]
    y = int(torch.randint(0, h - size[0] + 1, (1,), generator=g))
    x = int(torch.randint(0, w - size[1] + 1, (1,), generator=g))
    return ref[:, y : y + size[0], x : x + size[1]], (y, x, size[0], size[1])


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
    """A crop of ``ref`` covering ``size / factor`` px, resized to ``size`` (factor > 1 enlarges).

    Returns the image and the region it was cut from."""
    src = (round(size[0] / factor), round(size[1] / factor))
    crop, region = crop_at(ref, src, seed)
    out = F.interpolate(
        crop[None], size=size, mode="bicubic", antialias=factor < 1, align_corners=False
    )
    return out[0].clamp(0, 1), region


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


def controls(ref: torch.Tensor, size: tuple[int, int], seed: int = 0) -> dict[str, tuple]:
    """Named (image, excluded region or None) pairs of ``size`` made from ``ref``.

    ``ref`` must be at least 1.25x ``size`` on each side (for the 0.8x rescale). Every control
    but noise is made from a real crop and is judged with that crop's region left out, like the
    real crops themselves, so that the comparison with them is fair.
    """
    side = min(size)
    out = {}
    for k in range(3):
        out[f"real crop {k + 1}"] = crop_at(ref, size, seed + k)
    crop, region = crop_at(ref, size, seed + 10)
    out["elastic warp"] = (
        elastic_warp(crop, amplitude=side / 64, scale=side / 16, seed=seed),
        region,
    )
    out["rescaled 1.25x"] = rescaled(ref, size, 1.25, seed + 11)
    out["rescaled 0.8x"] = rescaled(ref, size, 0.8, seed + 12)
    crop, region = crop_at(ref, size, seed + 13)
    out["shuffled blocks"] = (block_shuffled(crop, max(8, side // 4), seed), region)
    crop, region = crop_at(ref, size, seed + 14)
    out["phase randomised"] = (phase_randomised(crop, seed), region)
    gen = torch.Generator().manual_seed(seed + 15)
    mean, std = ref.mean((1, 2), keepdim=True), ref.std((1, 2), keepdim=True)
    out["noise"] = ((mean + std * torch.randn(3, *size, generator=gen)).clamp(0, 1), None)
    return out
