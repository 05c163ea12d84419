"""Which of several candidate blocks an edit's fill pastes: the one that leaves the fill most
coherent with its sources (Wexler, Shechtman and Irani 2007: every patch of a fill should be
found in the source), judged at half scale.

Blocks are picked by their squared difference from the pixels already known in their window;
where the hole's edge cuts elements (discs on a plain ground), several candidates match that
strip about equally, and the one drawn at random often continued a disc with a different
one: a C-shaped disc, a crescent, a bite with a straight rim where the cut ran through it
(red_dots expanded, docs/decisions.md, session 31). Those shapes are incoherent at a scale
where one patch spans a disc's arc and what lies on both sides of it: a 7 px patch at half
scale spans 14 px. So each candidate is pasted on a copy of the window (with its cut) and
scored by the mean squared distance of the half-scale patches it changes, the known pixels
within MARGIN around the window included, to their nearest half-scale patch of the sources.

Convention: images (C, H, W) float in [0, 1]; masks (H, W) bool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losses.nearest import PatchIndex

SCALE = 1 / 2
PATCH = 7
MARGIN = 8  # px around a window whose patches also count: where a bite shows
KEYS = 2**15  # source patches searched (a fixed random sample where there are more)


def _half(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (C, round(H SCALE), round(W SCALE)), antialiased."""
    size = tuple(max(1, round(n * SCALE)) for n in x.shape[-2:])
    return F.interpolate(x[None], size, mode="bilinear", antialias=True, align_corners=False)[0]


def _whole(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool -> (h, w) bool: the pixels at ``size`` that only set pixels cover."""
    return F.interpolate(mask[None, None].float(), size, mode="area")[0, 0] > 1 - 1e-6


def _patches_in(mask: torch.Tensor) -> torch.Tensor:
    """(h, w) bool -> ((h - PATCH + 1) (w - PATCH + 1),) bool, row-major: the PATCH x PATCH
    patches whose pixels are all set (a max-pool: unfolded, a 4000 px photo's half-scale
    patches took 0.5 GB)."""
    return F.max_pool2d((~mask)[None, None].float(), PATCH, 1)[0, 0].flatten() == 0


class Coherence:
    """The half-scale patches of ``sources`` (each (C, h, w)) that lie wholly in their
    ``valid`` (h, w) bool pixels, and the score of a candidate paste against them."""

    def __init__(self, sources: list[torch.Tensor], valid: list[torch.Tensor]):
        images, whole = [], []
        for u, v in zip(sources, valid, strict=True):
            small = _half(u)
            if min(small.shape[-2:]) < PATCH:
                continue
            images.append(small[None])
            whole.append(_patches_in(_whole(v, small.shape[-2:])))
        self.index = None
        if any(w.any() for w in whole):
            self.index = PatchIndex(images, PATCH, None, KEYS, whole)

    def score(
        self,
        out: torch.Tensor,
        known: torch.Tensor,
        corner: tuple[int, int],
        block: torch.Tensor,
        take: torch.Tensor,
    ) -> float:
        """The mean squared distance to their nearest source patch of the half-scale patches
        that ``block`` (C, b, b) pasted at ``corner`` (y, x) of ``out`` (C, H, W) where
        ``take`` (b, b) is set would change, among those wholly known afterwards (``known``
        (H, W), before the paste) within MARGIN of the window; 0 where there are none."""
        if self.index is None:
            return 0.0
        (h, w), b, (y, x) = out.shape[-2:], block.shape[-1], corner
        y0, x0 = max(0, y - MARGIN), max(0, x - MARGIN)
        y1, x1 = min(h, y + b + MARGIN), min(w, x + b + MARGIN)
        inner = (slice(y - y0, y - y0 + b), slice(x - x0, x - x0 + b))
        trial = out[:, y0:y1, x0:x1].clone()
        trial[(slice(None), *inner)] = torch.where(take, block, trial[(slice(None), *inner)])
        after, new = known[y0:y1, x0:x1].clone(), torch.zeros_like(known[y0:y1, x0:x1])
        after[inner] |= take
        new[inner] = take
        # an odd corner puts the box's half-scale grid half a pixel off the sources'; the
        # same for every candidate of a window, so it does not change their order
        small = _half(trial)
        if min(small.shape[-2:]) < PATCH:
            return 0.0
        untouched = F.interpolate(new[None, None].float(), small.shape[-2:], mode="area") == 0
        counts = _patches_in(_whole(after, small.shape[-2:])) & ~_patches_in(untouched[0, 0])
        if not counts.any():
            return 0.0
        queries = F.unfold(small[None], PATCH)[0].T[counts]
        nearest = self.index.patches[self.index.nearest(queries)]
        return float((queries - nearest).pow(2).sum(1).mean())
