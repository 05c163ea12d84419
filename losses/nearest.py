"""Nearest-neighbour patch projection (Kwatra, Essa, Bobick and Kwatra 2005, "Texture
optimization for example-based synthesis").

Every patch of the output on a grid of stride ``s`` is replaced by the exemplar patch nearest
to it (Euclidean, over all of the exemplar's p x p x C patches), and each pixel becomes the
mean of the replacements that cover it. Repeated, this moves the output to a fixed point
made of exemplar patches that agree where they overlap: continuous walls, straight edges and
elements of the exemplar's size, which a match of patch *distributions* (``losses.patches``)
does not force. It also copies: use it where a patch spans a large part of the exemplar
(the layout), and let the distribution match draw the detail.

Convention: images are (1, C, H, W) float tensors; patches are flattened C-major, as
``torch.nn.functional.unfold`` gives them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data.symmetry import symmetry, undone

# Floats in one block of the distance matrix (4 MB): small enough that the argmin reads it
# back from cache; 64 MB blocks went through memory and took 1.5x as long (session 9).
DISTANCES = 2**20
# Output patches on a grid of this stride, compared in this many principal components of the
# exemplar's patches (docs/decisions.md, session 6: as good as the exact stride-2 search).
NEAREST_STRIDE = 4
NEAREST_DIMS = 32
# A robust projection's squared distances are floored at this (a pixel's colour off by 0.01
# in each channel): an exact match's weight stays finite.
ROBUST_FLOOR = 1e-4


def patch_count(image: torch.Tensor, patch: int) -> int:
    """Number of ``patch`` x ``patch`` patches that lie wholly inside a (..., h, w) image."""
    return max(0, image.shape[-2] - patch + 1) * max(0, image.shape[-1] - patch + 1)


def sampled_patches(
    exemplars: list[torch.Tensor],
    patch: int,
    count: int,
    valid: list[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """(count, C p p): a fixed random sample (seed 0, no patch twice) of the pooled inner
    ``patch`` x ``patch`` patches of (1, C, h, w) ``exemplars``, flattened in a convolution
    weight's (c, dy, dx) order (``F.unfold``'s); all of them, in order, where they are at most
    ``count``. ``valid``: per exemplar, None (all its patches) or a (P,) bool over its P inner
    patches, row-major, of the ones to count."""
    valid = valid or [None] * len(exemplars)
    corners = []  # per exemplar: the flat index of each counted patch's top-left pixel
    for u, v in zip(exemplars, valid, strict=True):
        cols = u.shape[-1] - patch + 1
        flat = torch.arange(patch_count(u, patch)) if v is None else torch.nonzero(v.cpu())[:, 0]
        corners.append((flat // cols) * u.shape[-1] + flat % cols)
    sizes = [len(c) for c in corners]
    pick = torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(0))[:count]
    pick = pick.sort().values
    out, first = [], 0
    for u, c, n in zip(exemplars, corners, sizes, strict=True):
        mine = pick[(pick >= first) & (pick < first + n)] - first
        first += n
        channels, h, w = u.shape[-3:]
        flat, start = u.reshape(-1), c[mine].to(u.device)
        rows = torch.empty(len(start), channels, patch, patch, dtype=u.dtype, device=u.device)
        # one patch row at a time: an index of every pixel of half a million patches at
        # once is 0.6 GB of int64
        for k in range(channels):
            for dy in range(patch):
                at = start + (k * h * w + dy * w)
                rows[:, k, dy] = flat[at[:, None] + torch.arange(patch, device=u.device)]
        out.append(rows.flatten(1))
    return torch.cat(out)


class PatchIndex:
    """All p x p patches of one or more exemplars, for nearest-neighbour search.

    With ``dims``, patches are compared in the span of the exemplar patches' ``dims``
    principal components instead of all C p^2 coordinates: neighbouring pixels make patches
    highly correlated, so the nearest patch rarely changes, and the search costs
    ``dims / (C p^2)`` of the exact one.

    Args:
        exemplars: (1, C, h, w) images at one scale; their patches are pooled.
        patch: patch side p.
        dims: principal components searched in (None or >= C p^2: exact search).
        limit: keep at most this many patches, a fixed random subset (None = all).
        valid: per exemplar, None (all its patches) or a (P,) bool over its P patches,
            row-major, of those to keep (a repaired image's patches in its known pixels).
    """

    def __init__(
        self,
        exemplars: list[torch.Tensor],
        patch: int,
        dims: int | None = None,
        limit: int | None = None,
        valid: list[torch.Tensor | None] | None = None,
    ):
        self.patch = patch
        # gathered, not unfolded: a 12-megapixel photo's 7 x 7 patches unfolded take 7 GB
        everything = sum(patch_count(u, patch) for u in exemplars)
        exemplars = [u.float() for u in exemplars]
        self.patches = sampled_patches(exemplars, patch, limit or everything, valid)  # (N, C p p)
        self.basis = None
        keys = self.patches
        if dims is not None and dims < keys.shape[1]:
            # the scatter matrix without a centred copy of the patches (large patches are big)
            mean = keys.mean(0)
            scatter = keys.T @ keys - keys.shape[0] * torch.outer(mean, mean)
            _, vectors = torch.linalg.eigh(scatter)  # ascending eigenvalues
            self.basis = vectors[:, -dims:].contiguous()  # (C p p, dims)
            keys = keys @ self.basis
        self.keys = keys.contiguous()  # (N, dims or C p p)
        self.norms = self.keys.pow(2).sum(1)  # (N,)

    def nearest(self, queries: torch.Tensor) -> torch.Tensor:
        """(M, C p p) patches -> (M,) index of each one's nearest exemplar patch."""
        if self.basis is not None:
            queries = queries @ self.basis
        out = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
        chunk = max(1, DISTANCES // self.keys.shape[0])
        for i in range(0, queries.shape[0], chunk):
            # |q - e|^2 without |q|^2, which does not change the argmin
            d = torch.addmm(self.norms[None], queries[i : i + chunk], self.keys.T, alpha=-2)
            out[i : i + chunk] = d.argmin(1)
        return out


def nearest_weighted(
    queries: torch.Tensor, weights: torch.Tensor, patches: torch.Tensor
) -> torch.Tensor:
    """Exact nearest patches under a per-query weighting of the coordinates:
    argmin_n sum_i w_i (q_i - e_ni)^2, for (M, D) ``queries``, (M, D) ``weights`` >= 0 and
    (N, D) ``patches`` -> (M,) indices. The weights differ per query, so no shared basis
    (``PatchIndex``'s principal components) applies: all D coordinates are compared."""
    squares = patches.pow(2).T  # (D, N)
    out = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    chunk = max(1, DISTANCES // patches.shape[0])
    for i in range(0, queries.shape[0], chunk):
        q, w = queries[i : i + chunk], weights[i : i + chunk]
        # sum w e^2 - 2 sum w q e, without sum w q^2, which does not change the argmin
        d = torch.addmm(w @ squares, w * q, patches.T, alpha=-2)
        out[i : i + chunk] = d.argmin(1)
    return out


def project_boundary(
    img: torch.Tensor, fill: torch.Tensor, patches: torch.Tensor, patch: int, stride: int,
    fill_weight: float,
) -> torch.Tensor:  # fmt: skip
    """Continue the kept pixels into the hole: every patch (on a grid of ``stride``) that
    holds both kept and filled pixels is matched to the exemplar patch nearest to it with
    its filled pixels weighted ``fill_weight`` and its kept ones 1 (``nearest_weighted``), so
    that the match is chosen by what lies beside the hole; each filled pixel covered by such
    patches becomes the mean of their matches, the others are returned as they were.
    Wexler, Shechtman and Irani 2007 weight a patch's pixels by their confidence the same way.

    Args:
        img: (1, C, H, W) image.
        fill: (1, 1, H, W) bool, True where pixels are synthesised.
        patches: (N, C p p) exemplar patches, C-major as ``F.unfold`` gives them.
        patch: p.
        stride: grid stride (1 <= stride <= p).
        fill_weight: weight of a filled pixel in the match (0: kept pixels only).

    Returns:
        (1, C, H, W), equal to ``img`` outside the boundary band of the hole.
    """
    c, (h, w) = img.shape[1], img.shape[-2:]
    queries = F.unfold(img.float(), patch, stride=stride)[0].T  # (M, C p p)
    filled = F.unfold(fill.float(), patch, stride=stride)[0].T  # (M, p p)
    count = filled.sum(1)
    mixed = (count > 0) & (count < patch * patch)
    if not mixed.any():
        return img
    weights = torch.where(filled[mixed] > 0, fill_weight, 1.0).repeat(1, c)
    matched = torch.zeros_like(queries)
    matched[mixed] = patches[nearest_weighted(queries[mixed], weights, patches)]
    total = F.fold(matched.T[None], (h, w), patch, stride=stride)
    cover = F.fold(
        mixed[:, None].float().expand(-1, patch * patch).T[None], (h, w), patch, stride=stride
    )
    inside = (cover > 0) & fill
    return torch.where(inside, total / cover.clamp_min(1), img.float()).to(img.dtype)


def _wrap_add(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1, C, H', W') with H' >= h, W' >= w -> (1, C, h, w), the rows and columns beyond
    h and w added back from the top and left (a periodic image's overhang)."""
    x = x.clone()
    x[..., : x.shape[-2] - h, :] += x[..., h:, :]
    x = x[..., :h, :]
    x[..., : x.shape[-1] - w] += x[..., w:]
    return x[..., :w]


def project_to_nearest(
    img: torch.Tensor,
    index: PatchIndex,
    stride: int,
    circular: bool,
    robust: float | None = None,
    turns: torch.Tensor | None = None,
) -> torch.Tensor:
    """One projection step: (1, C, H, W) -> (1, C, H, W), each pixel the mean of the nearest
    exemplar patches of the grid patches that cover it (not differentiable).

    With ``robust`` = r in (0, 2), the mean is weighted: a patch's match by its distance to
    it to the power r - 2 (the distance the root mean square over its coordinates), the
    weights of one reweighted least-squares step of Kwatra et al.'s robust energy
    sum ||x_p - z_p||^r. Where the matches of overlapping patches disagree, the one that fits
    best wins instead of all of them averaging to a smear.

    Args:
        img: the output, H and W at least p.
        index: the exemplars' patches.
        stride: grid stride s (1 <= s <= p): patches at 0, s, 2s, ..., so every pixel lies
            in one. Where H - p or W - p is not a multiple of s, the image is first extended
            by reflection past its bottom and right edges (a canvas margin belongs there).
        circular: patches wrap around the image (a tileable output).
        turns: (H, W) long in 0-7: each grid patch (by the pixel at its centre) is matched
            to the exemplar turned and mirrored by that ``data.symmetry.symmetry``: the
            patch is turned back, matched, and its match turned (None: all 0).
    """
    p = index.patch
    h, w = img.shape[-2:]
    if circular:
        ph = (h - 1) // stride * stride + p - h
        pw = (w - 1) // stride * stride + p - w
        img = F.pad(img, (0, pw, 0, ph), mode="circular")
    else:
        ph, pw = (-(h - p)) % stride, (-(w - p)) % stride
        img = F.pad(img, (0, pw, 0, ph), mode="reflect")
    size = img.shape[-2:]
    queries = F.unfold(img.float(), p, stride=stride)  # (1, C p p, M)
    if turns is None:
        matched = index.patches[index.nearest(queries[0].T)].T[None]
    else:
        mode = "circular" if circular else "replicate"
        grid = F.pad(turns[None, None].float(), (0, pw, 0, ph), mode=mode)[0, 0].long()
        # each grid patch's centre pixel, in unfold's order (rows of patches, row-major)
        rows, cols = (size[0] - p) // stride + 1, (size[1] - p) // stride + 1
        c = p // 2
        centre = grid[c : c + stride * rows : stride, c : c + stride * cols : stride].flatten()
        shaped = queries[0].T.reshape(-1, img.shape[1], p, p)
        matched = torch.empty_like(shaped)
        for k in centre.unique().tolist():
            chosen = centre == k
            back = undone(shaped[chosen], k).reshape(int(chosen.sum()), -1)
            found = index.patches[index.nearest(back)].reshape(-1, img.shape[1], p, p)
            matched[chosen] = symmetry(found, k)
        matched = matched.reshape(shaped.shape[0], -1).T[None]
    weight = torch.ones_like(matched[:, :1])  # (1, 1, M)
    if robust is not None:
        if not 0 < robust < 2:
            raise ValueError(f"robust must be in (0, 2), not {robust}")
        square = (matched - queries).pow(2).mean(1, keepdim=True)
        weight = (square + ROBUST_FLOOR).pow((robust - 2) / 2)
    total = F.fold(matched * weight, size, p, stride=stride)
    count = F.fold(weight.expand(-1, p * p, -1), size, p, stride=stride)
    if circular:
        total, count = _wrap_add(total, h, w), _wrap_add(count, h, w)
    return (total / count)[..., :h, :w].to(img.dtype)
