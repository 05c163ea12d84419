"""Gaussian pyramid with a fixed 5-tap binomial kernel."""

import torch
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def blur_downsample(x: torch.Tensor, circular: bool = False) -> torch.Tensor:
    """Blur with the separable 5-tap binomial kernel (sigma ~ 1), then keep every 2nd pixel.

    Args:
        x: (B, C, H, W).
        circular: wrap around the borders (for periodic, tileable images);
            otherwise the borders are reflected.

    Returns:
        (B, C, ceil(H / 2), ceil(W / 2)).
    """
    b, c, h, w = x.shape
    mode = "circular" if circular else "reflect"
    k = _BINOMIAL.to(x)
    # Reflect padding needs at least 3 pixels; smaller maps fall back to replicate.
    if not circular and min(h, w) < 3:
        mode = "replicate"
    x = F.pad(x, (2, 2, 2, 2), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    x = F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    return x[:, :, ::2, ::2]


def gaussian_pyramid(x: torch.Tensor, octaves: int, circular: bool = False) -> list[torch.Tensor]:
    """Octave 0 is ``x``; octave s+1 is ``blur_downsample`` of octave s.

    Args:
        x: (B, C, H, W).
        octaves: number of levels returned (>= 1).
        circular: periodic borders (see :func:`blur_downsample`).

    Returns:
        ``octaves`` tensors; level s has shape (B, C, ceil(H / 2^s), ceil(W / 2^s)).
    """
    levels = [x]
    for _ in range(octaves - 1):
        levels.append(blur_downsample(levels[-1], circular))
    return levels
