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
# norm; a 256 px hole converges in a few hundred iterations.
TOLERANCE = 1e-5
MAX_ITERATIONS = 4000


def membrane(offset: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """The harmonic interpolation of ``offset`` into the hole.

    Args:
        offset: (C, H, W); read only on the pixels outside ``fill`` next to it (nan there
            counts as 0: no correction from that neighbour).
        fill: (H, W) bool, the hole.

    Returns:
        (C, H, W) ``d``: on ``fill``, the solution of the 5-point Laplace equation with
        ``d = offset`` on the hole's 4-neighbours outside it (the canvas's edge is free:
        Neumann); 0 elsewhere. A hole that touches no kept pixel gets 0.
    """
    c, h, w = offset.shape
    inside = fill.to(offset.dtype)
    ring = torch.nan_to_num(offset) * (1 - inside)
    cross = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=offset.dtype)
    cross = cross.view(1, 1, 3, 3).expand(c, 1, 3, 3)

    def neighbours(z: torch.Tensor) -> torch.Tensor:  # sum over the 4 neighbours, 0 beyond
        return F.conv2d(F.pad(z[None], (1, 1, 1, 1)), cross, groups=c)[0]

    degree = neighbours(torch.ones_like(offset))  # 4, or fewer at the canvas's edge

    def laplacian(z: torch.Tensor) -> torch.Tensor:  # the hole's rows of the system
        return (degree * z - neighbours(z * inside)) * inside

    b = neighbours(ring) * inside
    d = torch.zeros_like(ring)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum()
    limit = TOLERANCE**2 * float(rs)
    for _ in range(MAX_ITERATIONS):
        if float(rs) <= limit or float(rs) == 0:
            break
        ap = laplacian(p)
        step = rs / (p * ap).sum()
        d += step * p
        r -= step * ap
        rs, previous = (r * r).sum(), rs
        p = r + (rs / previous) * p
    return d
