"""Whether an exemplar looks the same turned and mirrored (the eight symmetries of a square).

A texture whose elements lie at every angle and whose light comes from no one side (cells,
scattered discs, pebbles, flowers seen from above) is as much itself turned by 90 degrees or
mirrored. With ``--exemplar-turns auto`` the optimize engine then lays an output out from
the exemplar's turned and mirrored copies too (``optimize.patches``): grown from one
exemplar's few coarse patches, an output four times its side repeats the same clusters of
cells about ten times (``judge.recurrence``).

Read from the luminance's gradient directions, signed (a light from one side makes the
gradients point one way more than the other) and weighted by their magnitude, at three
scales: a texture whose histograms come out the same after each symmetry is taken as
symmetric. Grain, fibres and rows give peaks that a turn moves (wood 2.9, the procedural
stripes 4.7), light from one side an imbalance that a mirror swaps (fur 1.1, waves 0.8,
cells embossed from one side 0.85); cells, discs and flowers seen from above stay under
0.35 (docs/decisions.md, session 42). A second-order statistic: a chirality that keeps the
directions' histogram (a spiral) passes.

Convention: images (C, H, W) float in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from data.images import luminance

# The luminance is read at LONGEST px on its longer side at most, pooled by each of POOLS,
# into BINS gradient directions over the full turn.
LONGEST, POOLS, BINS = 256, (1, 2, 4), 36
# ``turn_distance`` at most this: the exemplar is taken as symmetric. The photos and
# procedural exemplars (session 42): cells 0.27, daisies 0.32, red_dots 0.33, dots 0.33
# under it (crops of 70% of the side: up to 0.53 for the procedural ones, whose few
# elements make noisier histograms, so some crops are not turned: the old behaviour);
# knit 0.45, metal_plate 0.68, honeycomb 0.70 (a hexagon turned by 90 degrees is not
# itself), waves 0.78, fur 1.14, blue_metal 2.05, wood 2.93, bricks 7.1 above it.
TURN_DISTANCE = 0.5


def symmetry(u: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` (0-7) of a square applied to ``u`` (..., H, W): k quarter turns for
    k < 4; k - 4 quarter turns, then mirrored left to right, for k >= 4 (0: ``u`` itself)."""
    turned = torch.rot90(u, k % 4, (-2, -1))
    return turned.flip(-1) if k >= 4 else turned


def undone(u: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of ``symmetry`` k: ``undone(symmetry(u, k), k)`` is ``u``."""
    if k >= 4:
        u = u.flip(-1)
    return torch.rot90(u, -(k % 4), (-2, -1))


def symmetries(u: torch.Tensor) -> list[torch.Tensor]:
    """The eight symmetries of a square applied to ``u`` (..., H, W), ``symmetry`` 0-7."""
    return [symmetry(u, k) for k in range(8)]


def direction_histograms(g: torch.Tensor) -> torch.Tensor:
    """(H, W) luminance -> (len(POOLS) * BINS,) histograms of its gradient directions, signed,
    weighted by magnitude, each pool's summing to 1 (all zeros for a flat image)."""
    hists = []
    for k in POOLS:
        p = F.avg_pool2d(g[None, None], k)[0, 0] if k > 1 else g
        gy, gx = p[1:, :-1] - p[:-1, :-1], p[:-1, 1:] - p[:-1, :-1]
        angle = torch.atan2(gy, gx)
        bins = ((angle + math.pi) / (2 * math.pi) * BINS).long().clamp(0, BINS - 1)
        h = torch.zeros(BINS).index_add_(0, bins.flatten(), (gx**2 + gy**2).sqrt().flatten())
        hists.append(h / h.sum().clamp_min(1e-12))
    return torch.cat(hists)


def turn_distance(u: torch.Tensor) -> float:
    """How much (C, H, W) image ``u`` changes under the symmetries of a square: the largest
    L1 distance between its ``direction_histograms`` and those of a turned or mirrored copy
    (0: the same under every one; at most 2 per pool)."""
    g = luminance(u.float(), LONGEST)[0]
    own = direction_histograms(g)
    return max(float((direction_histograms(t) - own).abs().sum()) for t in symmetries(g)[1:])


def symmetric(exemplars: list[torch.Tensor]) -> bool:
    """Whether every (C, H, W) exemplar looks the same turned and mirrored (TURN_DISTANCE)."""
    return all(turn_distance(u) <= TURN_DISTANCE for u in exemplars)
