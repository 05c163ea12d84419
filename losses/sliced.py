"""Sliced Wasserstein distance between feature distributions (Heitz, Vanhoey, Chambon, Belcour
2021, "A sliced Wasserstein loss for neural texture synthesis").

The Gram matrix matches second moments; the sliced distance matches the whole distribution of
feature vectors, through its 1-D projections on fixed random directions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_directions(channels: int, count: int, seed: int) -> torch.Tensor:
    """(channels, count) unit directions, drawn on the CPU from ``seed`` (same on every device)."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(channels, count, generator=g), dim=0)


def sorted_projections(features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features, (C, D) directions -> (B, D, H * W) sorted projections, float32."""
    b, c = features.shape[:2]
    proj = directions.T.to(features.device) @ features.reshape(b, c, -1).float()  # (B, D, N)
    return proj.sort(dim=-1).values


def resample_sorted(values: torch.Tensor, n: int) -> torch.Tensor:
    """(..., M) sorted values -> (..., n) by linear interpolation of the quantile function."""
    m = values.shape[-1]
    if m == n:
        return values
    return F.interpolate(
        values.reshape(-1, 1, m), size=n, mode="linear", align_corners=True
    ).reshape(*values.shape[:-1], n)


def sliced_wasserstein(
    features: torch.Tensor, target: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """Mean squared difference of sorted projections.

    Args:
        features: (B, C, H, W) features of the output.
        target: (1, D, M) sorted projections of the exemplar (``sorted_projections``); M may
            differ from H * W (quantiles are interpolated to the output's count).
        directions: (C, D) the directions the target was projected on.

    Returns:
        (B,) float32 losses.
    """
    ours = sorted_projections(features, directions)
    theirs = resample_sorted(target, ours.shape[-1]).to(ours)
    return (ours - theirs).pow(2).mean((1, 2))
