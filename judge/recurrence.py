"""Recurrence: how much of an image is a copy of another part of the same image.

The judge's other measures look at one square at a time (``bench.race.tiled_judge``: squares
of half the exemplar's short side), so an output pieced from the exemplar's own regions,
pasted again and again, scores as well as a real crop: every square *is* a real crop. The
eye sees the repeats at once (the same cluster of cells six times across a 1024 px
synthesis; a quilt whose rows cycle). This measure looks across the whole image: for squares
on a grid, the best normalised cross-correlation with any window of the image that does not
overlap the square. A real texture's squares have look-alikes (a lattice's next tile, a
similar stone) but not copies; a synthesis that repeats has copies, correlation near 1.

``recurrence_judge`` (``recurrence_ratio`` for one image) compares an image with its
exemplar: the mean of 1 - best correlation of the image's squares over the exemplar's own.
1: the image repeats itself as little as the exemplar does; 0: it is made of exact copies.
An image larger than its exemplar has more windows to find a look-alike in, so its ratio
runs a little under 1 even when it is new material (a fresh 1024 px sample of the
procedural cells' process: 0.85 against a 256 px exemplar).

Convention: images are (3, H, W) float tensors in [0, 1]; squares are ``side`` px.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from data.errors import UserError

GRID = 4  # squares on a GRID x GRID grid
SIDE = 1 / 4  # a square's side, as a fraction of the exemplar's short side


def _window_sums(x: torch.Tensor, side: int) -> torch.Tensor:
    """(C, H, W) -> (H - side + 1, W - side + 1): the sum over channels and over every
    ``side`` x ``side`` window (integral image)."""
    c = F.pad(x.sum(0), (1, 0, 1, 0)).cumsum(-1).cumsum(-2)
    return c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]


def best_matches(x: torch.Tensor, side: int, grid: int = GRID) -> torch.Tensor:
    """(grid^2,) the best normalised cross-correlation of each of ``grid`` x ``grid`` squares
    of ``x`` (3, H, W), spread evenly over it, with a window of ``x`` that does not overlap
    it. The correlation is over all three channels at once, each window's mean removed; in
    [-1, 1], 1 for an exact copy (up to brightness and contrast)."""
    h, w = x.shape[-2:]
    if min(h, w) < 2 * side:
        raise UserError(f"recurrence needs an image of at least {2 * side} px a side, not {w}x{h}")
    x = x.double()
    n = x.shape[0] * side * side
    sums, squares = _window_sums(x, side), _window_sums(x * x, side)
    spread = (squares - sums * sums / n).clamp_min(1e-12).sqrt()  # each window's norm
    spectrum = torch.fft.rfft2(x)
    rows = torch.arange(h - side + 1)[:, None]
    cols = torch.arange(w - side + 1)[None]
    best = []
    for i in range(grid):
        for j in range(grid):
            y, z = round((i + 0.5) * (h - side) / grid), round((j + 0.5) * (w - side) / grid)
            square = x[:, y : y + side, z : z + side]
            square = square - square.mean()
            # correlation at every offset through the FFT (the image taken as periodic; the
            # offsets kept are those whose window lies inside it)
            corr = torch.fft.irfft2(spectrum * torch.fft.rfft2(square, s=(h, w)).conj(), s=(h, w))
            corr = corr.sum(0)[: h - side + 1, : w - side + 1]
            ncc = corr / (square.pow(2).sum().sqrt().clamp_min(1e-12) * spread)
            overlaps = ((rows - y).abs() < side) & ((cols - z).abs() < side)
            best.append(ncc.masked_fill(overlaps, -1).max())
    return torch.stack(best).float()


def recurrence_judge(exemplar: torch.Tensor, grid: int = GRID) -> Callable[[torch.Tensor], float]:
    """``rate(x)``: how little ``x`` (3, H, W) repeats itself beside ``exemplar`` (3, h, w),
    the mean of 1 - ``best_matches`` of ``x`` over the exemplar's (computed once, here),
    squares of SIDE of the exemplar's short side. 1: as little as the exemplar; 0: exact
    copies. Higher is better."""
    side = max(8, round(SIDE * min(exemplar.shape[-2:])))
    own = (1 - best_matches(exemplar, side, grid)).mean().clamp_min(1e-6)

    def rate(x: torch.Tensor) -> float:
        return float((1 - best_matches(x, side, grid)).mean() / own)

    return rate


def recurrence_ratio(x: torch.Tensor, exemplar: torch.Tensor, grid: int = GRID) -> float:
    """``recurrence_judge(exemplar, grid)(x)``, for one image."""
    return recurrence_judge(exemplar, grid)(x)
