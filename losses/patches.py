"""Sliced Wasserstein distance between the pixel patches of two images (Elnekave and Weiss
2022, "Generating natural images with direct patch distribution matching", GPDM).

Each p x p x C patch is a vector; its distribution is compared through 1-D projections on
random unit directions, which a convolution computes for every patch at once. No trained
network is involved, so nothing here depends on a backbone.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from losses.nearest import (
    NEAREST_DIMS,
    NEAREST_STRIDE,
    PatchIndex,
    patch_count,
    project_to_nearest,
    sampled_patches,
)
from losses.sliced import resample_sorted

# Without a DirectionBank, the exemplar's quantiles come from TARGET_SAMPLE x the output's
# patch count, drawn afresh each step: fewer made the output grainier (honeycomb, judge's
# highfreq 8.4 at 1x, 3.4 at 2x). Above GATHER_ABOVE x that many exemplar patches, they are
# gathered one by one instead of convolving the whole exemplar.
TARGET_SAMPLE = 2
GATHER_ABOVE = 8


def pyramid_scales(side: int, coarsest: int, factor: float) -> list[float]:
    """Scales ``factor**k``, coarsest first, ending at 1, the first taking ``side`` to about
    ``coarsest`` px (one scale, 1, when ``side <= coarsest``)."""
    count = 1 + max(0, math.floor(math.log(coarsest / side) / math.log(factor) + 1e-9))
    return [factor**k for k in reversed(range(count))]


def scaled(size: tuple[int, int], scale: float, minimum: int) -> tuple[int, int]:
    return tuple(max(minimum, round(s * scale)) for s in size)


def downscaled(
    img: torch.Tensor, scale: float, minimum: int, periodic: bool = False
) -> torch.Tensor:
    """(B, C, H, W) resized by ``scale`` (antialiased bilinear; each side at least
    ``minimum``), or ``img`` itself at scale 1. Differentiable. ``periodic``: ``img`` tiles,
    and the filter reads across its edges (the result tiles too)."""
    if scale >= 1:
        return img
    size = scaled(tuple(img.shape[-2:]), scale, minimum)
    if not periodic:
        return F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
    # 3 x 3 copies resized to 3 x 3 times the size have the same scale; their centre block
    # is the image's, with its neighbours' pixels under the filter at its edges.
    h, w = size
    big = F.interpolate(
        img.repeat(1, 1, 3, 3), size=(3 * h, 3 * w), mode="bilinear", antialias=True,
        align_corners=False,
    )  # fmt: skip
    return big[..., h : 2 * h, w : 2 * w]


# An exemplar wraps (tiles seamlessly) when, across each pair of its opposite edges, the mean
# squared jump is at most WRAP_SEAM times that between neighbouring rows (columns) inside it,
# and the median absolute jump at most WRAP_SEAM_MEDIAN times theirs. One seam is a single row
# of samples, so each measure alone is noisy: the squared one on a few dots crossing it
# (procedural dots up to 4), the median on pixel grain (fur and wood crops down to 1.55). Both
# together passed 66 of 75 procedural exemplars (96-384 px, 5 seeds each) and none of 1359
# photos and their crops (64-256 px; session 14).
WRAP_SEAM = 2.0
WRAP_SEAM_MEDIAN = 1.4
# exemplar_wraps (synthesis and training): ``auto`` treats the exemplars as periodic where
# ``tiles`` says they tile, ``on`` and ``off`` always and never.
EXEMPLAR_WRAPS = ("auto", "on", "off")


def exemplars_wrap(mode: str, exemplars: list[torch.Tensor]) -> bool:
    """Whether (C, H, W) ``exemplars`` are treated as periodic under ``exemplar_wraps``
    ``mode``: ``on``, or ``auto`` where every one ``tiles``."""
    if mode != "auto":
        return mode == "on"
    return all(tiles(u) for u in exemplars)


def seam_ratios(u: torch.Tensor) -> tuple[float, float]:
    """(C, H, W) image -> the jump across its opposite edges (last row to first, last column
    to first) over the jump between neighbouring rows (columns), the larger over the two axes:
    (mean squared, median absolute). ~1 for an image that tiles, well above for a photo."""
    squared, median = [], []
    for axis in (-2, -1):
        inside = torch.diff(u.float(), dim=axis)
        seam = (u.select(axis, 0) - u.select(axis, -1)).float()
        squared.append(float(seam.pow(2).mean() / inside.pow(2).mean().clamp_min(1e-12)))
        median.append(float(seam.abs().median() / inside.abs().median().clamp_min(1e-6)))
    return max(squared), max(median)


def tiles(u: torch.Tensor) -> bool:
    """Whether (C, H, W) ``u`` tiles seamlessly (``WRAP_SEAM``, ``WRAP_SEAM_MEDIAN``)."""
    squared, median = seam_ratios(u)
    return squared <= WRAP_SEAM and median <= WRAP_SEAM_MEDIAN


def wrapped(img: torch.Tensor, patch: int) -> torch.Tensor:
    """(1, C, H, W) periodic image -> (1, C, H + p - 1, W + p - 1), extended by its own first
    rows and columns: its inner p x p patches are all H W patches of the periodic image,
    those across its edges included."""
    return F.pad(img, (0, patch - 1, 0, patch - 1), mode="circular")


def patch_directions(
    channels: int, patch: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(count, channels, patch, patch) random directions of unit norm, drawn on the CPU."""
    d = torch.randn(count, channels * patch * patch, generator=generator)
    return F.normalize(d, dim=1).view(count, channels, patch, patch)


def project_patches(img: torch.Tensor, directions: torch.Tensor, circular: bool) -> torch.Tensor:
    """(B, C, H, W) image -> (B, D, N) projections of its patches on ``directions``.

    Patches lie wholly inside the image (N = (H - p + 1)(W - p + 1)), or, with ``circular``,
    wrap around it (N = H W: a periodic image has no border).
    """
    p = directions.shape[-1]
    if circular:
        img = F.pad(img, (0, p - 1, 0, p - 1), mode="circular")
    return F.conv2d(img, directions.to(img)).flatten(2)


def project_sampled_patches(
    img: torch.Tensor, directions: torch.Tensor, circular: bool, count: int, generator, region=None
) -> torch.Tensor:
    """(1, C, H, W) image -> (1, D, N) projections of the patches on a grid of stride s at a
    random offset, s the smallest stride that keeps N at most ``count`` (but at most p);
    every patch when s = 1. Differentiable. With ``region`` ((1, 1, H, W) bool), only the
    patches with a pixel in it (s then from their count).

    A strided grid, not scattered patches: the strided convolution costs what its N patches
    cost, where gathering scattered patches costs ~5x more per patch. And a grid, not blocks
    or rows of patches: with s <= p every pixel lies in a sampled patch at every step. With
    rows or blocks most pixels went without a gradient at most steps, and Adam turned that
    into horizontal streaks (rows) or grain (blocks) at 512 px.
    """
    p = directions.shape[-1]
    if circular:
        img = F.pad(img, (0, p - 1, 0, p - 1), mode="circular")
    touched = None
    if region is not None:
        region = (
            F.pad(region.float(), (0, p - 1, 0, p - 1), mode="circular") if circular else region
        )
        touched = F.max_pool2d(region.float(), p, stride=1)[0, 0] > 0  # (rows, cols)
    rows, cols = img.shape[-2] - p + 1, img.shape[-1] - p + 1
    n = rows * cols if touched is None else int(touched.sum())
    stride = min(p, math.ceil(math.sqrt(n / max(1, count))))
    dy, dx = torch.randint(stride, (2,), generator=generator).tolist() if stride > 1 else (0, 0)
    proj = F.conv2d(img[..., dy:, dx:], directions.to(img), stride=stride)
    if touched is not None:
        return proj[..., touched[dy::stride, dx::stride]]
    return proj.flatten(2)


def project_random_patches(
    img: torch.Tensor, directions: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(1, C, H, W) image -> (1, D, count) projections of ``count`` patches drawn
    independently (with replacement), inside the image, or of every patch when the image
    has at most ``count``. Not differentiable.

    Independent draws, not rows or a grid: a target's quantiles from correlated patches
    are noisier, and that noise shows in the output as grain. (The patch engine uses a
    ``DirectionBank`` instead; this is the fresh per-step target of ``PatchPyramidLoss``.)
    """
    c, p = img.shape[1], directions.shape[-1]
    rows, cols = img.shape[-2] - p + 1, img.shape[-1] - p + 1
    with torch.no_grad():
        if rows * cols <= GATHER_ABOVE * count:
            proj = project_patches(img, directions, False)
            if rows * cols <= count:
                return proj
            pick = torch.randint(rows * cols, (count,), generator=generator)
            return proj[..., pick.to(proj.device)]
        width = img.shape[-1]
        # Flat offsets of a patch's C x p x p pixels from its top-left corner, in the order
        # of a convolution weight's (c, dy, dx), so that the directions apply unchanged.
        dy, dx = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        offsets = torch.arange(c).view(c, 1) * img.shape[-2] * width + (dy * width + dx).view(1, -1)
        corners = torch.randint(rows * cols, (count,), generator=generator)
        corners = (corners // cols) * width + corners % cols
        index = (corners.view(-1, 1) + offsets.view(1, -1).flatten()).to(img.device)
        patches = img.reshape(-1)[index]  # (count, C p p)
        return (patches @ directions.reshape(len(directions), -1).to(img).T).T[None]


def sorted_target(
    exemplars: list[torch.Tensor], directions: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(1, D, count) quantiles of the exemplars' pooled patch projections.

    Args:
        exemplars: (1, C, H, W) images; their patches are pooled (each contributes in
            proportion to its patch count).
        count: number of quantiles wanted (the output's patch count).
        generator: draws ``TARGET_SAMPLE`` x ``count`` random patches (sorting is the cost;
            a fresh sample each step, its quantiles interpolated to ``count``).
    """
    p = directions.shape[-1]
    sizes = [patch_count(u, p) for u in exemplars]
    want = TARGET_SAMPLE * count
    proj = torch.cat(
        [
            project_random_patches(u, directions, max(1, round(want * n / sum(sizes))), generator)
            for u, n in zip(exemplars, sizes, strict=True)
        ],
        dim=-1,
    )
    # NumPy's sort is ~3x torch's on the CPU (vectorised quicksort); no gradient is needed.
    if proj.device.type == "cpu":
        values = torch.from_numpy(np.sort(proj.float().numpy(), axis=-1))
    else:
        values = proj.float().sort(dim=-1).values
    return resample_sorted(values, count)


def argsort_rows(values: torch.Tensor) -> torch.Tensor:
    """(..., N) float values -> (..., N) int64 indices that sort each row, ascending.

    On the CPU, each float32 is mapped to an unsigned integer of the same order (IEEE bits:
    negatives flipped whole, positives with the sign bit set), its index packed into the low
    32 bits, and the 64-bit keys sorted by NumPy's vectorised sort: 1.6x its argsort, which
    is itself ~1.7x torch's sort here (64 rows of 65536).
    """
    if values.device.type != "cpu":
        return values.argsort(dim=-1)
    bits = values.detach().float().contiguous().numpy().view(np.uint32)
    keys = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)
    keys = (keys << np.uint64(32)) | np.arange(bits.shape[-1], dtype=np.uint64)
    keys.sort(axis=-1)
    return torch.from_numpy((keys & np.uint64(0xFFFFFFFF)).astype(np.int64))


def matched_sorted(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1, D, N) values, (1, D, N) sorted target -> (1, D, N) the target value of each value's
    rank: (values - matched)^2 has the value and gradient of (sort(values) - target)^2
    without a differentiable sort."""
    return torch.empty_like(target).scatter_(-1, argsort_rows(values), target)


def patch_sliced_wasserstein(
    img: torch.Tensor,
    exemplars: list[torch.Tensor],
    directions: torch.Tensor,
    circular: bool,
    generator: torch.Generator,
    max_patches: int | None = None,
    quantiles: torch.Tensor | None = None,
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared difference between sorted patch projections of ``img`` and the exemplars'.

    Args:
        img: (1, C, H, W) output, differentiable.
        exemplars: (1, C, h, w) exemplars at the same scale.
        directions: (D, C, p, p) from ``patch_directions``.
        circular: the output's patches wrap around (tileable output).
        generator: for the exemplars' patch sample (and the output's).
        max_patches: compare this many of the output's patches at random positions (sorting
            is the cost of a step; a sample is an unbiased view of the distribution).
        quantiles: (1, D, Q) the exemplars' sorted projections on ``directions``, computed
            beforehand (``exemplar_quantiles``); default: from a fresh sample of patches.
        region: (1, 1, H, W) bool: compare only the output's patches with a pixel in it
            (a repair's hole: its patches must take the exemplars' whole distribution).

    Returns:
        Scalar float32 loss.
    """
    if max_patches is None and region is None:
        ours = project_patches(img, directions, circular).float()
    else:
        count = max_patches or img.shape[-2] * img.shape[-1]
        ours = project_sampled_patches(img, directions, circular, count, generator, region)
        ours = ours.float()
    if quantiles is None:
        theirs = sorted_target(exemplars, directions, ours.shape[-1], generator)
    else:
        theirs = resample_sorted(quantiles, ours.shape[-1])
    return (ours - matched_sorted(ours, theirs.to(ours))).pow(2).mean()


def colour_distance(img: torch.Tensor, exemplars: list[torch.Tensor], count: int = 64) -> float:
    """How far the colours of (1, C, H, W) ``img`` are from the (1, C, h, w) exemplars', as a
    share of the exemplars' colour variance: the sliced Wasserstein distance of the two pixel
    distributions on ``count`` fixed directions (the same every call), over the mean variance
    of the exemplars' pixels along them (0: the same distribution; a flat image of the mean
    colour: 1)."""
    g = torch.Generator().manual_seed(0)
    d = F.normalize(torch.randn(count, img.shape[1], generator=g), dim=1).to(img.device)
    ours = (d @ img.detach().float().flatten(2)[0]).sort(1).values  # (count, N)
    theirs = (d @ torch.cat([u.float().flatten(2)[0] for u in exemplars], 1)).sort(1).values
    k = min(ours.shape[1], theirs.shape[1], 4096)  # matched quantile levels
    at = lambda n: torch.linspace(0, n - 1, k, device=img.device).round().long()  # noqa: E731
    gap = (ours[:, at(ours.shape[1])] - theirs[:, at(theirs.shape[1])]).pow(2).mean()
    return float(gap / theirs.var(1).mean().clamp_min(1e-12))


# The exemplars' quantiles (``exemplar_quantiles``) are those of all their patches up to
# QUANTILE_PATCHES of them, else of a fixed random sample of that many. A 2456 x 1760 photo
# has 4.3M patches: sorting their projections took 52 s a bank of 256 directions (5.3 s
# sampled), and a 512 px output of it 776 s (423 s). The quantiles of half a million are off by
# about a thousandth of the distribution, finer than the output's own 65536 patches resolve.
# 2^19 holds every patch of each photo in ../shared/exemplars (metal_plate: 315k), so their
# outputs are unchanged (docs/decisions.md, session 20).
QUANTILE_PATCHES = 2**19


def quantile_sample(
    exemplars: list[torch.Tensor],
    patch: int,
    valid: list[torch.Tensor | None] | None = None,
    limit: int = QUANTILE_PATCHES,
) -> torch.Tensor | None:
    """(limit, C p p): the fixed sample of the exemplars' patches whose quantiles stand for
    theirs where they hold more than ``limit`` (``sampled_patches``); None where they do not
    (their quantiles are exact). ``valid`` as ``exemplar_quantiles``'."""
    valid = valid or [None] * len(exemplars)
    counted = sum(
        patch_count(u, patch) if v is None else int(v.sum())
        for u, v in zip(exemplars, valid, strict=True)
    )
    return sampled_patches(exemplars, patch, limit, valid) if counted > limit else None


def exemplar_quantiles(
    exemplars: list[torch.Tensor],
    directions: torch.Tensor,
    count: int,
    chunk: int = 64,
    valid: list[torch.Tensor | None] | None = None,
    limit: int = QUANTILE_PATCHES,
    sample: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1, D, min(count, N)) quantiles of the N patches of the exemplars on ``directions``:
    all of them (exact) where N is at most ``limit``, else ``limit`` of them
    (``quantile_sample``, or ``sample`` where it is given: a ``DirectionBank`` gathers it
    once); ``chunk`` directions at a time to bound memory. ``valid``: per exemplar, None (all
    its patches) or a (P,) bool over its P inner patches, row-major, of the ones to count (a
    repaired image's patches that lie wholly in its known pixels)."""
    valid = valid or [None] * len(exemplars)
    if sample is None:
        sample = quantile_sample(exemplars, directions.shape[-1], valid, limit)
    out = []
    with torch.no_grad():
        for d in torch.split(directions, chunk):
            if sample is not None:
                proj = (d.reshape(len(d), -1).to(sample) @ sample.T)[None]
            else:
                proj = torch.cat(
                    [
                        q if v is None else q[..., v]
                        for q, v in zip(
                            (project_patches(u, d, False) for u in exemplars), valid, strict=True
                        )
                    ],
                    dim=-1,
                )
            if proj.device.type == "cpu":
                values = torch.from_numpy(np.sort(proj.float().numpy(), axis=-1))
            else:
                values = proj.float().sort(dim=-1).values
            out.append(resample_sorted(values, min(count, values.shape[-1])).to(directions.device))
    return torch.cat(out, dim=1)


class DirectionBank:
    """Random patch directions with the exemplars' exact quantiles on them (a large
    exemplar's: those of its ``quantile_sample``, gathered once for all banks), drawn in
    banks: each step takes ``projections`` of the bank's ``size`` at random, and a new bank is
    drawn every ``refresh`` steps. Sorting all the exemplar's patches once per bank costs less
    than sorting a fresh sample every step, and its quantiles carry no sampling noise.

    Args:
        exemplars: (1, C, h, w) images at one scale; their patches are pooled.
        patch: patch side p.
        size, refresh: directions in a bank; steps between banks.
        quantiles: quantiles kept per direction (at most the exemplars' patch count).
        valid: the patches counted, per exemplar (``exemplar_quantiles``); None = all.
        sample: (N, C p p) patches whose quantiles are the target instead of the exemplars'
            (a repair's conditional target, ``optimize.editing``); None: the exemplars'.
    """

    def __init__(
        self, exemplars, patch: int, size: int, refresh: int, quantiles: int, valid=None,
        sample: torch.Tensor | None = None,
    ):  # fmt: skip
        self.exemplars, self.patch, self.size, self.valid = exemplars, patch, size, valid
        self.refresh, self.count, self.steps = refresh, quantiles, 0
        self.directions = self.quantiles = None
        if sample is None:  # the same for every bank
            sample = quantile_sample(exemplars, patch, valid)
        self.sample = sample

    def draw(self, projections: int, generator: torch.Generator):
        """-> (projections, C, p, p) directions and their (1, projections, Q) quantiles."""
        if self.steps % self.refresh == 0:
            c = self.exemplars[0].shape[1]
            self.directions = patch_directions(c, self.patch, self.size, generator)
            self.directions = self.directions.to(self.exemplars[0].device)
            self.quantiles = exemplar_quantiles(
                self.exemplars, self.directions, self.count, valid=self.valid, sample=self.sample
            )
        self.steps += 1
        pick = torch.randperm(self.size, generator=generator)[:projections]
        return self.directions[pick.to(self.directions.device)], self.quantiles[:, pick]


# The training term's search holds at most this many exemplar patches a scale: all of a
# photo's ~270k fine patches cost 5 s an image (16384: 0.28 s). A scale with more patches gets
# no term: the projection onto a random subset is a blur (the nearest of a subset is farther,
# and the overlapping matches average), which pulled the generator's fine scales smooth
# (session 11); the sliced distance draws the grain there.
NEAREST_KEYS = 16384


class PatchPyramidLoss:
    """The patch objective of a whole image at once, for training a generator: the sliced
    Wasserstein distance of patches at every scale of the pyramid, averaged.

    Called like ``TextureLoss`` (``loss(x, crop=None, generator=g)`` -> dict with ``total``),
    on (B, 3, H, W) images in [0, 1]; ``generator`` draws the directions and subsets (a fixed
    one when None, so that evaluations are comparable).

    With ``nearest_weight``, each scale also pulls the image towards its nearest-patch
    projection (``losses.nearest``, held constant): Kwatra et al.'s texture energy, the
    differentiable form of the projections that close walls in optimize mode. A network
    cannot be projected; it can be trained to output images that are their own projection.

    Args:
        exemplars: (3, h, w) images; their patches are pooled.
        cfg: a config with the ``PatchFields``.
        circular: the images' patches wrap around (periodic training).
        nearest_weight: weight of the nearest-patch term (0 = none), averaged over the scales
            with at most ``NEAREST_KEYS`` exemplar patches.
        wraps: the exemplars tile (``exemplars_wrap``): their patches across their edges
            count too.
    """

    def __init__(
        self,
        exemplars: list[torch.Tensor],
        cfg,
        circular: bool = False,
        nearest_weight=0.0,
        wraps: bool = False,
    ):
        self.cfg, self.circular, self.nearest_weight = cfg, circular, nearest_weight
        side = min(min(u.shape[-2:]) for u in exemplars)
        self.scales = pyramid_scales(side, cfg.coarsest, cfg.pyramid_factor)
        p = cfg.patch_size
        # a periodic exemplar's pyramid is filtered across its edges, and its patches across
        # them are among the targets (as in optimize.patches): at the coarsest scales they
        # are most of its patches
        self.targets = [
            [downscaled(u[None].float(), s, p, wraps) for u in exemplars] for s in self.scales
        ]
        if wraps:
            self.targets = [[wrapped(t, p) for t in level] for level in self.targets]
        self.indexes = {}  # scale -> PatchIndex, at the scales whose patches it holds all of
        if nearest_weight:
            for k, targets in enumerate(self.targets):
                count = sum(patch_count(t, cfg.patch_size) for t in targets)
                if count <= NEAREST_KEYS:
                    self.indexes[k] = PatchIndex(targets, cfg.patch_size, NEAREST_DIMS)

    def __call__(self, x: torch.Tensor, crop=None, generator: torch.Generator | None = None):
        cfg = self.cfg
        g = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        terms = {}
        for k, (s, targets) in enumerate(zip(self.scales, self.targets, strict=True)):
            view = downscaled(x.float(), s, cfg.patch_size)
            directions = patch_directions(x.shape[1], cfg.patch_size, cfg.projections, g)
            values = [
                patch_sliced_wasserstein(
                    view[i : i + 1], targets, directions, self.circular, g, cfg.max_patches or None
                )
                for i in range(view.shape[0])
            ]
            terms[f"patches/scale{k}"] = torch.stack(values).mean()
        total = torch.stack(list(terms.values())).mean()
        if self.indexes:
            nearest = torch.stack([self._nearest(x, k) for k in self.indexes]).mean()
            terms["nearest"] = nearest
            total = total + self.nearest_weight * nearest
        terms["total"] = total
        return terms

    def _nearest(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Mean squared distance of ``x``'s view at scale ``k`` to its projection onto the
        exemplars' patches (stride ``NEAREST_STRIDE``), the projection held constant."""
        p = self.cfg.patch_size
        view = downscaled(x.float(), self.scales[k], p)
        with torch.no_grad():
            target = torch.cat([
                project_to_nearest(v[None], self.indexes[k], min(NEAREST_STRIDE, p), self.circular)
                for v in view
            ])  # fmt: skip
        return (view - target).pow(2).mean()
