"""Gradient-domain blending of a pasted fill into the pixels around it (Perez, Gangnet and
Blake 2003, "Poisson image editing", seamless cloning).

Copied blocks (``optimize.quilting``) are chosen to agree with the kept pixels around a hole,
but a photo's light drifts: where the hole's edge meets them, the blocks are a little
brighter or darker than the ring, and the edge shows as a hard line (a brick wall's seam
ratio 1.84; docs/decisions.md, session 17). Seamless cloning keeps the blocks' gradients
inside the hole and the kept pixels' values on its edge. With the blocks' own values on the
ring (``ghost``: what the block held where it overlapped kept pixels), the solution is the
blocks plus a correction ``d`` that is harmonic in the hole and equals kept - ghost on the
ring: the mismatch at the edge, spread smoothly over the hole.

Convention: images (C, H, W) float; masks (H, W) bool, True = fill.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Conjugate gradients stop when the residual is this fraction of the right-hand side's
# norm. From zero they needed ~N iterations for an N px hole (a 1024 px expand: 158 s), so
# a hole of more than COARSE_PIXELS pixels starts from the membrane solved at half size
# (recursively), whose smooth part is right and only the ring's detail is left to solve.
TOLERANCE = 1e-5
MAX_ITERATIONS = 4000
COARSE_PIXELS = 4096


def membrane(offset: torch.Tensor, fill: torch.Tensor, reach: float | None = None) -> torch.Tensor:
    """The harmonic interpolation of ``offset`` into the hole, or with ``reach`` its screened
    form, which fades within about ``reach`` px of the hole's edge.

    Args:
        offset: (C, H, W); read only on the pixels outside ``fill`` next to it; nan there:
            no value (that neighbour is left out, as the canvas's edge is).
        fill: (H, W) bool, the hole.
        reach: None, or the screened Poisson equation's length in px: (L + 1/reach^2) d = 0
            in the hole, whose solution decays as exp(-distance / reach) from the edge.

    Returns:
        (C, H, W) ``d``: on ``fill``, the solution of the 5-point Laplace equation (screened
        with ``reach``) with ``d = offset`` on the hole's 4-neighbours outside it that have a
        value (elsewhere the hole's edge is free: Neumann); 0 outside the hole. A part of the
        hole that touches no value gets 0.
    """
    c, h, w = offset.shape
    inside = fill.to(offset.dtype)
    given = (~offset[:1].isnan() & ~fill).to(offset.dtype)  # (1, H, W): the ring's values
    ring = torch.nan_to_num(offset) * given

    def neighbours(z: torch.Tensor) -> torch.Tensor:  # sum over the 4 neighbours, 0 beyond
        # shifted slices, not a depthwise 3x3 convolution: 16-27x faster on a 1228 x 880
        # canvas here, and CG calls it thousands of times (session 30)
        p = F.pad(z, (1, 1, 1, 1))
        return p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]

    degree = neighbours((inside + given).expand(c, -1, -1))  # the neighbours in the system
    screen = 0.0 if reach is None else 1 / reach**2

    def laplacian(z: torch.Tensor) -> torch.Tensor:  # the hole's rows of the system
        return ((degree + screen) * z - neighbours(z * inside)) * inside

    b = neighbours(ring) * inside
    # a screened system is well conditioned (condition number at most 1 + 8 reach^2): CG
    # converges from zero in about reach * sqrt(8) * log(1 / TOLERANCE) iterations
    coarse = reach is None and int(fill.sum()) > COARSE_PIXELS
    d = _coarse_start(offset, fill) if coarse else torch.zeros_like(b)
    r = b - laplacian(d)
    p = r.clone()
    rs = (r * r).sum()
    limit = TOLERANCE**2 * float((b * b).sum())
    for _ in range(MAX_ITERATIONS):
        if float(rs) <= limit or float(rs) == 0:
            break
        ap = laplacian(p)
        step = rs / (p * ap).sum().clamp_min(1e-30)
        d += step * p
        r -= step * ap
        rs, previous = (r * r).sum(), rs
        p = r + (rs / previous) * p
    return d


def _coarse_start(offset: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """The membrane of the problem halved (2x2 cells: a cell with ring values gets their
    mean, one with hole pixels only is hole), upsampled bilinearly onto the hole."""
    c, h, w = offset.shape
    pad = (0, w % 2, 0, h % 2)
    given = (~offset[:1].isnan() & ~fill).to(offset.dtype)
    values = F.pad(torch.nan_to_num(offset) * given, pad)
    given = F.pad(given, pad)
    hole = F.pad(fill[None].float(), pad)
    count = F.avg_pool2d(given[None], 2)[0] * 4
    mean = F.avg_pool2d(values[None], 2)[0] * 4 / count.clamp_min(1)
    coarse_fill = (F.max_pool2d(hole[None], 2)[0, 0] > 0) & (count[0] == 0)
    coarse = torch.where(count > 0, mean, torch.full_like(mean, float("nan")))
    d = membrane(coarse, coarse_fill)
    field = torch.where(coarse_fill, d, torch.nan_to_num(coarse))
    up = F.interpolate(field[None], scale_factor=2, mode="bilinear", align_corners=False)[0]
    return up[:, :h, :w] * fill.to(offset.dtype)
