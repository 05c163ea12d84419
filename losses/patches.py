"""Sliced Wasserstein distance between the pixel patches of two images (Elnekave and Weiss
2022, "Generating natural images with direct patch distribution matching", GPDM).

Each p x p x C patch is a vector; its distribution is compared through 1-D projections on
random unit directions, which a convolution computes for every patch at once. No trained
network is involved, so nothing here depends on a backbone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from losses.sliced import resample_sorted


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


def sorted_target(
    exemplars: list[torch.Tensor], directions: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(1, D, count) quantiles of the exemplars' pooled patch projections.

    Args:
        exemplars: (1, C, H, W) images; their patches are pooled into one distribution.
        count: number of quantiles wanted (the output's patch count).
        generator: draws a random subset when the exemplars hold more than 2 x ``count``
            patches (sorting is the cost; a subset of that size keeps the quantiles).
    """
    with torch.no_grad():
        proj = torch.cat([project_patches(u, directions, False) for u in exemplars], dim=-1)
        n = proj.shape[-1]
        if n > 2 * count:
            proj = proj[..., torch.randperm(n, generator=generator)[: 2 * count].to(proj.device)]
        # NumPy's sort is ~5x torch's on the CPU (vectorised quicksort); no gradient is needed.
        if proj.device.type == "cpu":
            values = torch.from_numpy(np.sort(proj.float().numpy(), axis=-1))
        else:
            values = proj.float().sort(dim=-1).values
        return resample_sorted(values, count)


def patch_sliced_wasserstein(
    img: torch.Tensor,
    exemplars: list[torch.Tensor],
    directions: torch.Tensor,
    circular: bool,
    generator: torch.Generator,
    max_patches: int | None = None,
) -> torch.Tensor:
    """Mean squared difference between sorted patch projections of ``img`` and the exemplars'.

    Args:
        img: (1, C, H, W) output, differentiable.
        exemplars: (1, C, h, w) exemplars at the same scale.
        directions: (D, C, p, p) from ``patch_directions``.
        circular: the output's patches wrap around (tileable output).
        generator: for the exemplars' patch subset (and the output's).
        max_patches: compare a random subset of this many of the output's patches (sorting
            is the cost of a step; a subset is an unbiased sample of the distribution).

    Returns:
        Scalar float32 loss.
    """
    ours = project_patches(img, directions, circular).float()
    n = ours.shape[-1]
    if max_patches is not None and n > max_patches:
        ours = ours[..., torch.randperm(n, generator=generator)[:max_patches].to(ours.device)]
    ours = ours.sort(dim=-1).values
    theirs = sorted_target(exemplars, directions, ours.shape[-1], generator).to(ours)
    return (ours - theirs).pow(2).mean()
