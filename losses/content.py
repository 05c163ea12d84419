"""Content terms of a remake (issue 17): how far an output's layout is from a target's.

- ``feature_content``: Gatys, Ecker and Bethge 2016 ("Image style transfer using
  convolutional neural networks"), the squared error between the output's and the target's
  features at one deep layer, here divided by the target features' energy so that its weight
  is a share, as the per-term Gram and autocorrelation terms are.
- ``low_frequencies`` / ``pixel_content``: the patch engine's, without a network: the squared
  error between the output and the target once both are downscaled to a small size, so
  only their large layout is compared and the detail is left to the texture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_content(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) output features, (1, C, h, w) target features of the same layer and size
    -> scalar ``mean((F - T)^2) / mean(T^2)``, averaged over the batch (fp32)."""
    f, t = features.float(), target.float()
    return (f - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12)


def low_frequencies(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w) antialiased bilinear resize to ``size`` (h, w): the
    image's frequencies below about half of ``size``'s sampling rate. Differentiable."""
    return F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)


def pixel_content(x: torch.Tensor, target_low: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) output in [0, 1] and (1, C, h, w) ``low_frequencies`` of the target ->
    scalar mean squared error between the output's low frequencies and the target's."""
    return (low_frequencies(x, tuple(target_low.shape[-2:])) - target_low).pow(2).mean()
