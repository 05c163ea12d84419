"""A judge of a repair or expand's fill by distance from the kept pixels: where the fill's
patches stop looking like the kept ones.

The seam ratio (``optimize.editing.seam_ratio``) sees the one-pixel step across the hole's
edge. It misses what the blend of copied blocks leaves where the edge cut an element: a
daisy's white, or a disc's red, spread as a glow that fades over tens of pixels away from
the edge (a daisies photo expanded 2x: seam 0.37, below an intact photo's own, with a
visible white frame; docs/decisions.md, session 22). A glow, a fog or a smear is made of
patches that the kept pixels do not hold; a straight cut through an element is too.

So: per band of distance from the kept pixels into the fill (``BANDS``, Chebyshev px), the
mean squared distance from each fill pixel's p x p patch to its nearest patch of the kept
pixels (``losses.nearest.PatchIndex``, searched in principal components as the engine does),
over the same mean for the true pixels there (the intact image a hole was cut from, or the
photo an expand's crop was cut from). Real surroundings score 1 in every band by
construction; the worst band's ratio is the score. It rewards copying (a copied block
scores below 1 away from its seams): a detector of patches that should not be there, not a
measure of novelty. It is blind to a step of light alone (a brick wall's blocks pasted
without the blend: 0.95, seam 1.81), which the seam ratio sees.

Convention: images (C, H, W) float in [0, 1]; masks (H, W) bool, True = fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from losses.nearest import NEAREST_DIMS, PatchIndex, sampled_patches

PATCH = 7
BANDS = ((1, 4), (4, 8), (8, 16), (16, 32), (32, 64))  # px from the nearest kept pixel
KEYS = 2**16  # kept patches searched (a fixed random sample where there are more)
QUERIES = 2**13  # fill patches scored per band (a fixed random sample)


@dataclass
class EdgeScore:
    """``ratios[k]``: band k's mean nearest-kept-patch distance over the true pixels' (nan
    where the fill has no pixel in the band); ``worst``: their maximum."""

    ratios: list[float]
    worst: float


def distance_bands(fill: torch.Tensor) -> list[torch.Tensor]:
    """(H, W) bool fill -> per ``BANDS`` entry (a, b), an (H, W) bool mask of the fill
    pixels whose Chebyshev distance to the nearest kept pixel is in [a, b), leaving out
    those within PATCH // 2 of the canvas's border (their patches would hang off it)."""
    kept = (~fill).float()[None, None]
    h, w = fill.shape
    r = PATCH // 2
    inner = torch.zeros_like(fill)
    inner[r : h - r, r : w - r] = True

    def within(d: int) -> torch.Tensor:  # pixels within d of a kept pixel
        return F.max_pool2d(kept, 2 * d + 1, 1, d)[0, 0] > 0

    return [fill & inner & within(b - 1) & ~within(a - 1) for a, b in BANDS]


def band_distances(image: torch.Tensor, bands: list[torch.Tensor], index: PatchIndex):
    """Mean squared distance (per coordinate) from ``image``'s patches centred on each
    band's pixels (a fixed sample of at most QUERIES) to their nearest indexed patch."""
    r = PATCH // 2
    out = []
    for band in bands:
        # a pixel at least r from the border centres the inner patch whose corner is r up-left
        corners = band[r : band.shape[0] - r, r : band.shape[1] - r].flatten()
        if not corners.any():
            out.append(float("nan"))
            continue
        patches = sampled_patches([image[None]], PATCH, QUERIES, [corners])  # (M, C p p)
        nearest = index.patches[index.nearest(patches)]
        out.append(float((patches - nearest).pow(2).mean()))
    return out


def edge_score(result: torch.Tensor, truth: torch.Tensor, fill: torch.Tensor) -> EdgeScore:
    """Score ``result`` (C, H, W), a fill of ``fill`` (H, W), against ``truth`` (C, H, W),
    the true pixels (only its kept ones index the patches; module docstring)."""
    result, truth = result.float().cpu(), truth.float().cpu()
    kept = ~fill
    whole = F.avg_pool2d(kept.float()[None, None], PATCH, 1)[0, 0] > 1 - 1e-6  # (h-p+1, w-p+1)
    index = PatchIndex([truth[None]], PATCH, NEAREST_DIMS, KEYS, [whole.flatten()])
    bands = distance_bands(fill)
    ours, real = band_distances(result, bands, index), band_distances(truth, bands, index)
    ratios = [a / max(b, 1e-12) for a, b in zip(ours, real, strict=True)]
    return EdgeScore(ratios, max((v for v in ratios if v == v), default=float("nan")))
