"""Quality judge: model-free image statistics, independent of the synthesis objective.

The objective matches Gram matrices of VGG features over a binomial Gaussian pyramid (plus an
optional Fourier-modulus term). The judge uses none of that: a fixed Gabor filter bank on
luminance and opponent colour, over an area-averaging (box) pyramid; radially averaged power
spectra of luminance; RGB sliced Wasserstein distances; nearest-neighbour patch copies; seams.

Convention: every image is a (3, H, W) float tensor in [0, 1], RGB. Distances compare an
image with the whole exemplar; lower is better. ``normalise`` divides them by the distance of
real crops of the exemplar (same size as the outputs), so 1.0 means "as close as a real crop".

Used by the benchmark (``bench/quality.py``), by ``experiments/`` and on any finished texture
(``python -m judge.score``). The structure measure is ``judge/structure.py``; the control
images that validate the measures are ``judge/controls.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from data.errors import UserError
from judge.controls import real_crops, white_noise
from judge.structure import gabor_bank, opponent, structure_distance

# Metrics that are distances to the exemplar (lower is better, normalised by real crops).
DISTANCES = ("local", "coarse", "structure", "lowfreq", "highfreq", "colour", "mean_shift")
LOCAL_OCTAVES = (0, 1)  # full resolution and 1/2: fine-scale texture
COARSE_OCTAVES = (3, 4)  # 1/8 and 1/16: the same filter statistics, coarse
MIN_OCTAVE_SIDE = 16  # coarser maps than this carry too few filter responses


_GABOR = gabor_bank()


def _box_octave(x: torch.Tensor, octave: int) -> torch.Tensor:
    """Area-average downsampling by 2^octave (not the objective's binomial pyramid)."""
    return F.avg_pool2d(x[None], 2**octave)[0] if octave else x


def filter_stats(x: torch.Tensor, octave: int) -> torch.Tensor | None:
    """Statistics of a Gabor bank at one octave; None when the octave is smaller than 16 px.

    Returns a 1-D vector: per orientation the mean and standard deviation of the local energy
    (even^2 + odd^2, square-rooted) of luminance; the correlation matrix (upper triangle) of
    those energy maps with the three opponent channels; the standard deviation of each
    opponent channel.
    """
    level = _box_octave(opponent(x.float()), octave)
    if min(level.shape[-2:]) < MIN_OCTAVE_SIDE:
        return None
    lum = F.pad(level[None, :1], (4, 4, 4, 4), mode="reflect")
    resp = F.conv2d(lum, _GABOR)[0]  # (8, h, w)
    energy = (resp[0::2] ** 2 + resp[1::2] ** 2).sqrt()  # (4, h, w)
    maps = torch.cat([energy, level]).flatten(1)  # (7, h * w)
    centred = maps - maps.mean(1, keepdim=True)
    std = centred.pow(2).mean(1).sqrt()
    corr = (centred @ centred.T) / maps.shape[1] / (std[:, None] * std[None, :]).clamp_min(1e-8)
    iu = torch.triu_indices(7, 7, 1)
    return torch.cat([energy.flatten(1).mean(1), std[:4], corr[iu[0], iu[1]], std[4:]])


def _stats_distance(x: torch.Tensor, ref: torch.Tensor, octaves) -> float:
    usable = [o for o in octaves if filter_stats(x, o) is not None]
    if not usable:  # a small image: fall back to its coarsest usable octave
        o = max(o for o in range(8) if min(x.shape[-2:]) >> o >= MIN_OCTAVE_SIDE)
        usable = [o]
    d = [(filter_stats(x, o) - filter_stats(ref, o)).norm() for o in usable]
    return float(torch.stack(d).mean())


def radial_power(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Mean luminance power per radial frequency band (cycles/pixel), Hann-windowed.

    Args:
        x: (3, H, W) image.
        edges: (K + 1,) band edges in cycles per pixel.

    Returns:
        (K,) power per band, as a density (independent of the image size).
    """
    lum = opponent(x.float())[0]
    h, w = lum.shape
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    lum = (lum - lum.mean()) * window
    power = torch.fft.fft2(lum).abs().pow(2) / window.pow(2).sum()
    fy = torch.fft.fftfreq(h).view(h, 1)
    fx = torch.fft.fftfreq(w).view(1, w)
    radius = (fy**2 + fx**2).sqrt()
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (radius >= lo) & (radius < hi)
        bands.append(power[mask].mean() if mask.any() else power.new_tensor(float("nan")))
    return torch.stack(bands)


def _lowfreq_distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    """RMS difference of log10 radial power below 1/8 cycle per pixel."""
    side = min(*x.shape[-2:], *ref.shape[-2:])
    edges = torch.logspace(math.log10(2 / side), math.log10(1 / 8), 9)
    a, b = radial_power(x, edges), radial_power(ref, edges)
    diff = (a.clamp_min(1e-12).log10() - b.clamp_min(1e-12).log10())[~(a.isnan() | b.isnan())]
    return float(diff.pow(2).mean().sqrt())


def highfreq_fraction(x: torch.Tensor) -> float:
    """Fraction of the luminance power (DC excluded) above 1/4 cycle per pixel."""
    edges = torch.tensor([1e-9, 0.25, 1.0])
    lo, hi = radial_power(x, edges)
    h, w = x.shape[-2:]
    radius = (torch.fft.fftfreq(h).view(h, 1) ** 2 + torch.fft.fftfreq(w).view(1, w) ** 2).sqrt()
    n_lo = ((radius > 1e-9) & (radius < 0.25)).sum()
    n_hi = ((radius >= 0.25) & (radius < 1.0)).sum()
    e_lo, e_hi = lo * n_lo, hi * n_hi
    return float(e_hi / (e_lo + e_hi))


def sliced_wasserstein(x: torch.Tensor, ref: torch.Tensor, directions: int = 32) -> float:
    """Mean 1-D Wasserstein distance between RGB pixel sets along fixed random directions."""
    g = torch.Generator().manual_seed(0)
    dirs = F.normalize(torch.randn(directions, 3, generator=g), dim=1)
    q = torch.linspace(0, 1, 257)
    a = torch.quantile(dirs @ _sample_pixels(x, g), q, dim=1)
    b = torch.quantile(dirs @ _sample_pixels(ref, g), q, dim=1)
    return float((a - b).abs().mean())


def _sample_pixels(x: torch.Tensor, g: torch.Generator, n: int = 16384) -> torch.Tensor:
    flat = x.float().flatten(1)
    if flat.shape[1] > n:
        flat = flat[:, torch.randperm(flat.shape[1], generator=g)[:n]]
    return flat


def copy_fraction(
    x: torch.Tensor, ref: torch.Tensor, patch: int = 8, stride: int = 4, tol: float = 0.03
) -> float:
    """Fraction of the output's patches that are near-verbatim copies of an exemplar patch.

    Every ``patch`` x ``patch`` patch of ``x`` on a ``stride`` grid is compared with every
    exemplar patch (stride 1); a copy is one whose nearest neighbour has an RMS difference
    below ``tol`` (about 8 grey levels). 0 = nothing copied; a real crop scores ~1.
    """
    out = F.unfold(x.float()[None], patch, stride=stride)[0].T  # (P, 3 * patch^2)
    ex = F.unfold(ref.float()[None], patch, stride=1)[0].T  # (Q, 3 * patch^2)
    ex_sq = ex.pow(2).sum(1)
    best = torch.full((out.shape[0],), float("inf"))
    for chunk in torch.split(torch.arange(ex.shape[0]), 32768):
        e = ex[chunk]
        d = out.pow(2).sum(1, keepdim=True) + ex_sq[chunk][None] - 2 * out @ e.T
        best = torch.minimum(best, d.min(1).values)
    rms = (best.clamp_min(0) / out.shape[1]).sqrt()
    return float((rms < tol).float().mean())


def seam_ratio(x: torch.Tensor) -> float:
    """Squared jump across the wrap (last -> first row and column) over the interior mean.

    1.0: the wrap looks like any other pixel step (seamless when tiled); >> 1: a visible seam.
    """
    x = x.float()
    wrap = (x[:, :, 0] - x[:, :, -1]).pow(2).mean() + (x[:, 0] - x[:, -1]).pow(2).mean()
    inner = (x[:, :, 1:] - x[:, :, :-1]).pow(2).mean() + (x[:, 1:] - x[:, :-1]).pow(2).mean()
    return float(wrap / inner.clamp_min(1e-12))


def distances(x: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Every distance of ``x`` (an output) to ``ref`` (the whole exemplar); lower is better."""
    return {
        "local": _stats_distance(x, ref, LOCAL_OCTAVES),
        "coarse": _stats_distance(x, ref, COARSE_OCTAVES),
        "structure": structure_distance(x, ref),
        "lowfreq": _lowfreq_distance(x, ref),
        "highfreq": abs(math.log(highfreq_fraction(x) / max(highfreq_fraction(ref), 1e-12))),
        "colour": sliced_wasserstein(x, ref),
        "mean_shift": float((x.float().mean((1, 2)) - ref.float().mean((1, 2))).norm()),
    }


def judge(x: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """``distances`` plus the copy fraction and the seam ratio of ``x``."""
    return {**distances(x, ref), "copy": copy_fraction(x, ref), "seam": seam_ratio(x)}


# Relative to real crops ---------------------------------------------------------------------------


def reference(ref: torch.Tensor, size: tuple[int, int], crops: int = 4) -> dict[str, float]:
    """The real-crop distances that ``normalise`` divides by: the mean over ``crops`` crops."""
    rows = [distances(c, ref) for c in real_crops(ref, size, crops, seed=123)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in DISTANCES}


def normalise(values: dict[str, float], real: dict[str, float], floor: dict[str, float]):
    """Distances divided by the real-crop ones (floored at ``floor`` so that a near-zero real
    distance cannot blow the ratio up); other entries are passed through."""
    out = dict(values)
    for k in DISTANCES:
        out[k] = values[k] / max(real[k], floor[k], 1e-12)
    return out


def overall(values: dict[str, float]) -> float:
    """One number from normalised distances: their geometric mean (1.0 = a real crop).

    A distance that is NaN (the structure measure on images under 64 px) is left out."""
    logs = [math.log(max(values[k], 1e-12)) for k in DISTANCES if not math.isnan(values[k])]
    return math.exp(sum(logs) / len(logs))


def relative_judge(exemplar: torch.Tensor, size: tuple[int, int]):
    """``rate(image)``: normalised judge values plus "score" of a (3, *size) image against
    real crops of that size (1.0 = as close as a real crop). The real crops' distances are
    computed once."""
    real, floor = reference(exemplar, size), floors(exemplar, size)

    def rate(image: torch.Tensor) -> dict[str, float]:
        values = normalise(judge(image, exemplar), real, floor)
        return {**values, "score": overall(values)}

    return rate


def centre_judge(exemplar: torch.Tensor):
    """``rate(image)``: ``relative_judge`` of the centre square of a (3, H, W) image, the
    square half the exemplar's short side."""
    side = min(exemplar.shape[-2:]) // 2
    rate = relative_judge(exemplar, (side, side))

    def centre(image: torch.Tensor, name: str = "the image") -> dict[str, float]:
        h, w = image.shape[-2:]
        if min(h, w) < side:
            raise UserError(f"{name} is {w}x{h}; the judge needs at least {side}x{side} here")
        y, x = (h - side) // 2, (w - side) // 2
        return rate(image[:, y : y + side, x : x + side])

    return centre


def floors(ref: torch.Tensor, size: tuple[int, int]) -> dict[str, float]:
    """5% of white noise's distance: the smallest real-crop distance a ratio is taken over."""
    noise = distances(white_noise(ref, size, seed=7), ref)
    return {k: 0.05 * v for k, v in noise.items()}


def diversity(samples: list[torch.Tensor]) -> float:
    """Mean absolute pixel difference between all pairs of samples (same size)."""
    pairs = [
        (a.float() - b.float()).abs().mean()
        for i, a in enumerate(samples)
        for b in samples[i + 1 :]
    ]
    return float(torch.stack(pairs).mean())
