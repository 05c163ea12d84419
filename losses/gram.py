"""Normalised Gram matrices (Snelgrove 2017, eq. 1 and 4)."""

import torch


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations normalised by channels and positions.

    Args:
        features: (B, C, H, W) feature maps.

    Returns:
        (B, C, C) float32 tensor ``F F^T / (C * H * W)`` with ``F`` the (C, H*W) view
        of each sample. Dividing by the number of positions makes images of different
        sizes comparable; dividing by C keeps layers of different widths on one scale.
        Always computed in fp32, whatever the dtype of ``features``.
    """
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w).float()
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)
