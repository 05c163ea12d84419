"""Multi-scale fully convolutional texture generator (Ulyanov et al. 2016, 2017).

Noise at K scales; each scale's noise passes a 3x3 conv unit; the coarser scale's features
are upsampled x2 (nearest) and concatenated with it; a join block (3x3, 3x3, 1x1 units)
mixes them; a final 1x1 conv gives RGB in [0, 1] (see ``OUTPUTS``), or the channels of a
material stack (albedo plus aligned maps, rendered together). Channels shrink towards
the fine scales, where the pixels are: the full-resolution scale costs ~4k multiply-adds a
pixel.

Every conv pads circularly: the generator has no image borders, so it cannot learn a frame
where a border-blind objective (valid-mode backbone convs) does not look; its textures are
periodic with the size of the noise canvas (see docs/generator.md).

Variants live in ``GENERATORS`` (name -> constructor arguments); CLI choices come from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.batchnorm import fold_batchnorm as fold_conv_batchnorm

OUTPUTS = ("sigmoid", "clamp")
GENERATORS: dict[str, dict] = {
    # channels: join-block width per scale, coarsest first; len(channels) = number of scales K
    "tiny": dict(channels=(16, 12, 8), branch=4, noise=2),  # tests
    "small": dict(channels=(48, 40, 32, 24, 16, 8), branch=8, noise=3),
    "base": dict(channels=(64, 64, 48, 32, 24, 16), branch=8, noise=3),
}


class Unit(nn.Module):
    """Unpadded conv, then BatchNorm (training form) or a bias (folded form), then LeakyReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=not norm)
        self.norm = nn.BatchNorm2d(cout) if norm else nn.Identity()
        self.kernel = kernel

    def forward(self, x: torch.Tensor, wrap: bool) -> torch.Tensor:
        """x: (B, cin, h, w) -> (B, cout, h, w) if ``wrap`` (circular padding), else the valid
        part (h - 2, w - 2) for a 3x3 kernel."""
        if self.kernel == 3 and wrap:
            x = F.pad(x, (1, 1, 1, 1), mode="circular")
        return F.leaky_relu(self.norm(self.conv(x)), 0.2, inplace=True)


class TextureGenerator(nn.Module):
    """G(noise pyramid) -> texture.

    Args:
        channels: join-block width per scale, coarsest first (K = len(channels) scales).
        branch: channels of each scale's noise branch.
        noise: noise channels per scale.
        output: how the final 1x1 conv's value y becomes RGB in [0, 1]: ``sigmoid`` (y), or
            ``clamp`` (0.5 + y clamped; in training a clamped value keeps the gradients that
            move it back into range, so saturated colours such as a white ground stay
            reachable and never drift away).
        norm: BatchNorm after each conv (training form); ``fold_batchnorm`` returns the
            norm-free inference form whose every layer is a local operator.
        out_channels: output channels: 3 (RGB), or a material stack's (albedo RGB first,
            then each map's 1 or 3: ``data.stacks``); one 1x1 conv gives them all, so every
            map of a pixel comes from the same features.

    Convention:
        Scale 0 is the coarsest, at 1/2^(K-1) of the output resolution; scale K-1 is the
        output resolution. An (H, W) canvas needs H and W to be multiples of
        ``multiple = 2^(K-1)``; ``generator.render`` crops larger canvases for other sizes.
    """

    def __init__(
        self,
        channels: tuple[int, ...],
        branch: int = 8,
        noise: int = 3,
        output: str = "sigmoid",
        norm: bool = True,
        out_channels: int = 3,
    ):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.arch = dict(
            channels=tuple(channels),
            branch=branch,
            noise=noise,
            output=output,
            out_channels=out_channels,
        )
        self.output = output
        self.channels, self.noise_channels = tuple(channels), noise
        self.noise_units = nn.ModuleList(Unit(noise, branch, 3, norm) for _ in channels)
        self.join_blocks = nn.ModuleList()
        previous = 0
        for c in channels:
            self.join_blocks.append(
                nn.ModuleList(
                    [Unit(previous + branch, c, 3, norm), Unit(c, c, 3, norm), Unit(c, c, 1, norm)]
                )
            )
            previous = c
        self.out_channels = out_channels
        self.to_rgb = nn.Conv2d(channels[-1], out_channels, 1)
        if norm:
            # Noise enters at the coarsest scale only, at first: each finer scale's noise gain
            # (its BatchNorm weight) starts at zero and grows as far as the loss asks. Started
            # at one, the fine noise reached the output as speckle the loss barely sees, and
            # the coarse layout trained slower (docs/generator.md, "Fine noise starts off").
            for unit in self.noise_units[1:]:
                nn.init.zeros_(unit.norm.weight)

    @property
    def scales(self) -> int:
        return len(self.channels)

    @property
    def multiple(self) -> int:
        return 2 ** (self.scales - 1)

    def forward(self, noises: list[torch.Tensor]) -> torch.Tensor:
        """Whole-canvas forward: a periodic texture.

        Args:
            noises: K tensors, coarsest first; scale i is (B, noise, H / 2^(K-1-i), W / 2^(K-1-i)).

        Returns:
            (B, out_channels, H, W) in [0, 1].
        """
        x = None
        for z, unit, block in zip(noises, self.noise_units, self.join_blocks, strict=True):
            z = unit(z, wrap=True)
            x = z if x is None else torch.cat([F.interpolate(x, scale_factor=2.0), z], 1)
            for u in block:
                x = u(x, wrap=True)
        return self.rgb(x)

    @torch.no_grad()
    def start_at_colour(self, rgb: torch.Tensor) -> None:
        """Set the output bias so that zero features give this (out_channels,) colour in
        [0, 1]: training starts at the exemplar's mean colour instead of grey."""
        rgb = rgb.to(self.to_rgb.bias).clamp(0.02, 0.98)
        self.to_rgb.bias.copy_(torch.logit(rgb) if self.output == "sigmoid" else rgb - 0.5)

    def rgb(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) finest-scale features -> (B, out_channels, h, w) in [0, 1]."""
        y = self.to_rgb(features)
        if self.output == "sigmoid":
            return torch.sigmoid(y)
        y = y + 0.5
        return _ClampInward.apply(y) if self.training else y.clamp(0.0, 1.0)


def clamp_inward(y: torch.Tensor) -> torch.Tensor:
    """``y`` clamped to [0, 1], its gradient passed where descent moves it back in
    (``_ClampInward``): a trained output that saturates can recover."""
    return _ClampInward.apply(y)


class _ClampInward(torch.autograd.Function):
    """Clamp to [0, 1]; backward passes a clamped value's gradient only when descent moves it
    back into the range. A plain clamp gives saturated values no gradient, so regions stuck
    at white never recover; passing every gradient straight through let them drift outwards
    without bound (26% of the values above 2, up to 23, after 1500 steps at lr 1e-2), and
    the loss rose again as the drifted regions could no longer follow."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(y)
        return y.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        outward = ((y > 1) & (grad < 0)) | ((y < 0) & (grad > 0))
        return grad.masked_fill(outward, 0.0)


def build_generator(
    name: str, output: str = "sigmoid", norm: bool = True, out_channels: int = 3
) -> TextureGenerator:
    """A registered variant (see ``GENERATORS``) with the given ``output`` (see ``OUTPUTS``)
    and ``out_channels`` (3, or a material stack's)."""
    return TextureGenerator(**GENERATORS[name], output=output, norm=norm, out_channels=out_channels)


@torch.no_grad()
def fold_batchnorm(model: TextureGenerator) -> TextureGenerator:
    """The inference form of a trained generator: each BatchNorm's running statistics folded
    into the conv before it (``models.batchnorm.fold_batchnorm``).

    Returns a new norm-free ``TextureGenerator`` on the CPU in fp32 that equals ``model.eval()``.
    """
    folded = TextureGenerator(**model.arch, norm=False)
    src = dict(model.named_modules())
    for name, unit in folded.named_modules():
        if isinstance(unit, Unit):
            trained = src[name]
            weight, bias = fold_conv_batchnorm(trained.conv.weight, trained.conv.bias, trained.norm)
            unit.conv.weight.copy_(weight)
            unit.conv.bias.copy_(bias)
    folded.to_rgb.load_state_dict(
        {k: v.float().cpu() for k, v in model.to_rgb.state_dict().items()}
    )
    return folded.eval()
