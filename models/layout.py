"""The layout painter: a network that paints a texture's detail over its layout.

Texture-Networks generators trained from noise on this CPU drew red_dots' discs as blobs and
honeycomb's cells as fragments at any objective or share (docs/decisions.md, sessions 11-31).
Here the layout is not learnt: it is the exemplar itself, quilted at 1/``factor`` of the
output's size (``generator.layout``), and the network only learns to paint the full-size
texture over such a layout, trained on pairs of the exemplar's crops and their own
1/``factor`` copies (a reconstruction, so its samples keep the layout they are given).

Convention:
    Convolutions are valid (no padding): the output over a region depends on the layout over
    that region grown by ``HALO`` layout pixels a side and on noise that is a function of
    (seed, level, channel, y, x) (``models.noise.hash_noise``), so blocks of an output equal
    the whole canvas computed at once. Level 0 is the layout's scale, level ``levels`` the
    output's; each level doubles the side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.generator import clamp_inward
from models.noise import hash_noise

NOISE = 2  # noise channels fed at every level
HALO = 8  # layout pixels a side that an output region needs (the receptive field is < 6)
FACTORS = (2, 4, 8)
WIDTH = 32  # feature channels of a trained painter


class LayoutPainter(nn.Module):
    """(B, C, h + 2 HALO, w + 2 HALO) layout -> (B, C, h f, w f) texture in [0, 1].

    Args:
        factor: the output's side over the layout's (2, 4 or 8).
        width: feature channels at every level.
        channels: C, the texture's channels (3, or a material stack's).
        source_size: (h, w) of ``source``, the exemplar at 1/``factor`` that layouts are
            quilted from; a buffer, so the checkpoint carries it.
    """

    def __init__(self, factor: int, width: int, channels: int, source_size: tuple[int, int]):
        super().__init__()
        if factor not in FACTORS:
            raise ValueError(f"factor must be one of {FACTORS}")
        self.arch = {"kind": "layout", "factor": factor, "width": width, "channels": channels,
                     "source_size": list(source_size)}  # fmt: skip
        self.factor, self.levels = factor, int(math.log2(factor))
        self.out_channels = channels
        self.multiple = factor  # an output side is a whole number of layout pixels
        self.register_buffer("source", torch.zeros(channels, *source_size))
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.head = nn.Sequential(
            nn.Conv2d(channels + NOISE, width, 3), act(),
            nn.Conv2d(width, width, 3), act(),
            nn.Conv2d(width, width, 3), act(),
        )  # fmt: skip
        self.ups = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width + NOISE, width, 3), act(), nn.Conv2d(width, width, 3), act()
            )
            for _ in range(self.levels)
        )  # fmt: skip
        self.to_rgb = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.to_rgb.weight)  # starts as the layout's bilinear enlargement
        nn.init.zeros_(self.to_rgb.bias)

    def noise_sizes(self, side: tuple[int, int]) -> list[tuple[int, int]]:
        """(H, W) of each level's noise for a layout input of ``side`` (halo included)."""
        return [(side[0] << i, side[1] << i) for i in range(self.levels + 1)]

    def forward(self, layout: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:
        """``layout`` (B, C, h + 2 HALO, w + 2 HALO) in [0, 1] and ``noises`` (B, NOISE, ...)
        of ``noise_sizes`` -> (B, C, h factor, w factor) in [0, 1]."""
        return self.paint(layout, self.features(layout, noises))

    def features(self, layout: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:
        """The last level's features, (B, width, ...) covering the output and a margin."""
        y = self.head(torch.cat([layout, noises[0].to(layout.dtype)], 1))
        for up, noise in zip(self.ups, noises[1:], strict=True):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            y = up(torch.cat([y, _centre(noise, y.shape[-2:]).to(y.dtype)], 1))
        return y

    def paint(self, layout: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The output: the layout enlarged (bilinear) plus the detail drawn from ``features``."""
        h = (layout.shape[-2] - 2 * HALO) * self.factor
        w = (layout.shape[-1] - 2 * HALO) * self.factor
        base = F.interpolate(layout, scale_factor=self.factor, mode="bilinear", align_corners=False)
        y = _centre(base, (h, w)) + self.to_rgb(_centre(features, (h, w)))
        # a plain clamp gave a painter gone white no gradient: red_dots' loss jumped from
        # 0.0034 to 0.12 at step 1300 of 3000 and stayed there (session 32)
        return clamp_inward(y) if self.training else y.clamp(0, 1)


def _centre(x: torch.Tensor, size) -> torch.Tensor:
    """The centred (..., size[0], size[1]) crop of ``x``; its margins must be even."""
    dy, dx = x.shape[-2] - size[0], x.shape[-1] - size[1]
    return x[..., dy // 2 : dy // 2 + size[0], dx // 2 : dx // 2 + size[1]]


def region_noise(
    model: LayoutPainter, seed: int, origin: tuple[int, int], side: tuple[int, int],
    canvas: tuple[int, int], device="cpu",
) -> list[torch.Tensor]:  # fmt: skip
    """(1, NOISE, H_i, W_i) noise of each level for a layout input of ``side`` whose top-left
    is ``origin`` (layout pixels, may be negative) on a periodic layout ``canvas``."""
    out = []
    for i, (h, w) in enumerate(model.noise_sizes(side)):
        rows = (torch.arange(h) + (origin[0] << i)) % (canvas[0] << i)
        cols = (torch.arange(w) + (origin[1] << i)) % (canvas[1] << i)
        out.append(hash_noise(seed, i, NOISE, rows, cols, device)[None])
    return out
