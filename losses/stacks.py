"""The generator's objectives on material stacks (albedo plus aligned maps, ``data.stacks``),
such that a map that drifts from its albedo costs something.

- ``features``: ``StackFeatures`` runs the 3-channel backbone on each map separately (a
  grey map repeated to 3 channels) and concatenates the maps' features along the channels.
  The Gram matrix of that concatenation holds each map's own Gram on its diagonal and the
  cross-map Grams ``F_albedo F_height^T / (N M)`` off it: how albedo features co-occur with
  height features at the same positions. Shifting a map against the albedo leaves the
  diagonal blocks unchanged but decorrelates the cross blocks, so alignment is in the
  objective. Sliced Wasserstein directions mix all maps' channels too; the spectrum term's
  phase is common to every channel of the stack.
- ``patches``: ``WeightedStack`` scales each map by 1/sqrt(its channels) before the patch
  pyramid, whose patches and projection directions then span every map at once (as the
  patch engine's ``optimize.stacks``), and an RGB map and a grey one count equally.
"""

from __future__ import annotations

import torch
from torch import nn


def as_rgb(x: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """(B, C, H, W) stack -> (M B, 3, H, W): each map's samples in turn, grey ones repeated."""
    maps = torch.split(x, channels, 1)
    return torch.cat([m.expand(-1, 3, -1, -1) if m.shape[1] == 1 else m for m in maps])


class StackFeatures(nn.Module):
    """A 3-channel feature extractor applied to each map of a stack.

    Args:
        backbone: a ``models.backbones.FeatureExtractor`` (frozen).
        channels: channels of each map, albedo first (1 or 3 each).

    Call: ``features(x)`` with x (B, sum(channels), H, W) in [0, 1] returns {layer: (B, M N_l,
    h, w)}, M = len(channels): the maps' features side by side, albedo's first. One backbone
    pass on the M B images, so a stack costs M times an albedo.
    """

    def __init__(self, backbone: nn.Module, channels: list[int]):
        super().__init__()
        self.backbone, self.channels = backbone, list(channels)
        self.layers = list(backbone.layers)
        self.description = (
            f"{backbone.description}; on each of {len(channels)} maps, joint Gram across maps"
        )

    def min_input_size(self) -> int:
        return self.backbone.min_input_size()

    def rescale_(self, images: list[torch.Tensor]) -> None:
        """Gatys' rescaling on every map of the (1, C, H, W) stacks ``images``."""
        self.backbone.rescale_([m[None] for u in images for m in as_rgb(u, self.channels)])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        feats = self.backbone(as_rgb(x, self.channels))
        return {name: torch.cat(f.split(b), 1) for name, f in feats.items()}


def map_weights(channels: list[int]) -> torch.Tensor:
    """(1, C, 1, 1): 1/sqrt(c) on each of a map's c channels."""
    return torch.tensor([c**-0.5 for c in channels for _ in range(c)]).view(1, -1, 1, 1)


class WeightedStack:
    """An image objective (``PatchPyramidLoss``, built on the weighted exemplar stacks) called
    on stacks weighted by ``map_weights``; called like the objective it wraps."""

    def __init__(self, objective, channels: list[int]):
        self.objective, self.weights = objective, map_weights(channels)

    def __call__(self, x: torch.Tensor, crop=None, generator=None):
        return self.objective(x * self.weights.to(x), crop=crop, generator=generator)
