"""Total variation regulariser."""

import torch


def total_variation(x: torch.Tensor, circular: bool = False) -> torch.Tensor:
    """Mean squared difference between horizontal and vertical neighbours.

    Args:
        x: (B, C, H, W).
        circular: also count the pairs across the wrap (for tileable outputs).

    Returns:
        Scalar. Independent of the image size for a stationary texture.
    """
    if circular:
        dx = x - torch.roll(x, 1, dims=3)
        dy = x - torch.roll(x, 1, dims=2)
    else:
        dx = x[..., :, 1:] - x[..., :, :-1]
        dy = x[..., 1:, :] - x[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()
