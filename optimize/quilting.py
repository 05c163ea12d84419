"""A large hole's start: blocks of the kept pixels copied in (image quilting, Efros and Freeman
2001, placed by the pixels already there as in Criminisi et al. 2004's exemplar fill).

The patch editor grows a fill from noise, scale by scale, with 7 px patches; a hole far from
every kept pixel has no layout to grow from at the coarse scales (its kept ring is too thin
to learn from there), and its middle came out as mush (docs/decisions.md, sessions 12-14).
Copied blocks carry the layout: each block is a ``block`` x ``block`` square of a source that
lies wholly in its valid pixels, chosen where it best agrees (least squares) with the pixels
already known in its window (kept, or pasted by earlier blocks); the editor then refines the
seams between blocks at full scale.

Convention: images (C, H, W) float in [0, 1]; masks (H, W) bool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Among the candidate blocks, one is drawn at random from those whose error is within
# TOLERANCE of the best (Efros and Freeman's 0.1), so that two seeds differ.
TOLERANCE = 0.1
OVERLAP = 1 / 4  # of the block side: how far each block reaches into its neighbours


def correlate(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Sum over channels of the valid cross-correlation of ``image`` (C, H, W) with
    ``kernel`` (C, b, b): (H - b + 1, W - b + 1), by FFT."""
    h, w = image.shape[-2:]
    b = kernel.shape[-1]
    spectrum = torch.fft.rfft2(image) * torch.fft.rfft2(kernel, s=(h, w)).conj()
    return torch.fft.irfft2(spectrum.sum(0), s=(h, w))[: h - b + 1, : w - b + 1]


def block_side(valid: list[torch.Tensor], fill: torch.Tensor, smallest: int) -> int | None:
    """The largest block side, halving from a quarter of the canvas's short side (at most the
    hole's extent) down to ``smallest``, that the sources hold at least 16 whole blocks of;
    None if none does."""
    rows, cols = torch.nonzero(fill, as_tuple=True)
    extent = int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1
    side = min(min(fill.shape) // 4, extent)
    while side >= smallest:
        if sum(int(whole_blocks(v, side).sum()) for v in valid) >= 16:
            return side
        side //= 2
    return None


def whole_blocks(valid: torch.Tensor, side: int) -> torch.Tensor:
    """(H, W) bool valid pixels -> (H - side + 1, W - side + 1) bool: the blocks' top-left
    corners whose ``side`` x ``side`` block lies wholly in valid pixels."""
    if min(valid.shape) < side:
        return torch.zeros(0, 0, dtype=torch.bool)
    holes = F.max_pool2d((~valid).float()[None, None], side, stride=1)[0, 0]
    return holes == 0


def quilt(
    canvas: torch.Tensor,
    fill: torch.Tensor,
    sources: list[torch.Tensor],
    valid: list[torch.Tensor],
    side: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Fill ``canvas`` (C, H, W) where ``fill`` (H, W) is set with ``side`` x ``side`` blocks
    of ``sources`` (each (C, h, w), with (h, w) bool ``valid`` pixels that may be copied).

    Blocks step over the hole's bounding box in raster order, each reaching OVERLAP of its
    side into the known pixels around it (the kept ring included), and each is the source
    block with the least squared difference there (one of those within TOLERANCE of it).
    A block replaces the pixels pasted before it on its side of the least-error cuts through
    its left and top overlaps (``_cut_side``); kept pixels are never written.

    Returns (C, H, W), the filled canvas (a new tensor).
    """
    out = canvas.clone()
    known = ~fill
    h, w = fill.shape
    overlap = max(1, round(side * OVERLAP))
    stride = side - overlap
    rows, cols = torch.nonzero(fill, as_tuple=True)
    top = max(0, min(int(rows.min()) - overlap, h - side))
    left = max(0, min(int(cols.min()) - overlap, w - side))
    # the last blocks reach OVERLAP into the kept pixels beyond the hole too
    ys = _starts(top, int(rows.max()) + 1 + overlap, side, stride, h)
    xs = _starts(left, int(cols.max()) + 1 + overlap, side, stride, w)
    # each source with its squares and where its whole blocks start, if it has any
    usable = [(u, u.pow(2), ok) for u, v in zip(sources, valid, strict=True)
              if (ok := whole_blocks(v, side)).any()]  # fmt: skip
    for y in ys:
        for x in xs:
            window = (slice(y, y + side), slice(x, x + side))
            todo = fill[window] & ~known[window]
            if not todo.any():
                continue
            k = known[window].to(canvas.dtype)
            view = out[(slice(None), *window)]
            block = _pick(view, k, usable, generator)
            take = todo | (fill[window] & _cut_side((block - view).pow(2).sum(0) * k, overlap))
            view.copy_(torch.where(take, block, view))
            known[window] |= todo
    return out


def _pick(target, weight, usable, generator) -> torch.Tensor:
    """A (C, b, b) block of the ``usable`` sources ((source, its squares, where its whole
    blocks start) each), drawn among those whose squared difference from ``target``
    (C, b, b), weighted by ``weight`` (b, b; 0 where unknown), is within TOLERANCE of the
    least."""
    side = weight.shape[-1]
    errors = []
    for u, u2, ok in usable:
        # sum of weight (source - target)^2, less the target's own term
        err = correlate(u2, weight.expand_as(target)) - 2 * correlate(u, weight * target)
        errors.append(err.masked_fill(~ok, float("inf")))
    least = min(float(e.min()) for e in errors)
    limit = least + TOLERANCE * max(least + float((weight * target.pow(2)).sum()), 1e-12)
    picks = [torch.nonzero(e <= limit) for e in errors]
    n = int(torch.randint(sum(len(p) for p in picks), (1,), generator=generator))
    for (u, _, _), p in zip(usable, picks, strict=True):
        if n < len(p):
            y, x = (int(v) for v in p[n])
            return u[:, y : y + side, x : x + side]
        n -= len(p)
    raise AssertionError("unreachable: n < the number of picks")


def _cut_side(error: torch.Tensor, overlap: int) -> torch.Tensor:
    """(b, b) squared differences between a new block and the pixels under it (0 where none)
    -> (b, b) bool, True on the new block's side of the least-error cuts through the left
    and the top ``overlap`` bands (Efros and Freeman's minimum error boundary cut): the seam
    between blocks runs where they agree."""
    return _cut(error, overlap) & _cut(error.T, overlap).T


def _cut(error: torch.Tensor, overlap: int) -> torch.Tensor:
    """True right of the least-cost top-to-bottom path through the first ``overlap`` columns
    of ``error`` (b, b), each step moving at most one column (dynamic programming)."""
    band = error[:, :overlap]
    cost = band.clone()
    big = torch.tensor([float("inf")])
    for i in range(1, len(band)):
        up = cost[i - 1]
        left = torch.cat([big, up[:-1]])
        right = torch.cat([up[1:], big])
        cost[i] += torch.minimum(up, torch.minimum(left, right))
    path = torch.empty(len(band), dtype=torch.long)
    path[-1] = int(cost[-1].argmin())
    for i in range(len(band) - 2, -1, -1):
        j = int(path[i + 1])
        lo, hi = max(0, j - 1), min(overlap, j + 2)
        path[i] = lo + int(cost[i, lo:hi].argmin())
    cols = torch.arange(error.shape[1])
    return cols[None, :] > path[:, None]


def _starts(first: int, end: int, side: int, stride: int, limit: int) -> list[int]:
    """Block starts from ``first`` by ``stride`` until a block reaches ``end``, each clamped
    so that the block fits in ``limit``."""
    starts, y = [], first
    while True:
        starts.append(min(y, limit - side))
        if y + side >= end or y >= limit - side:
            return starts
        y += stride
