"""Multi-scale patch discriminator (PatchGAN, Isola et al. 2017; pix2pix-HD's multi-scale form).

Each scale's network judges the overlapping patches of one downsampling of an image
(the image itself, its half size, ...): three 4x4 stride-2 convs (64, 128, 256 channels),
then two 3x3 convs to one logit a patch. Every conv is spectrally normalised (Miyato et al.
2018), which bounds how sharply the discriminator can separate real from generated patches;
with one the discriminator won within ~200 steps and the generator collapsed
(docs/decisions.md, sessions 27-28).

The receptive field is 54 px at full size and 108 px at half size: each logit judges an
element (a disc, a cell, a stitch) together with its neighbours, which the Gram statistics do
not constrain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (1, 2)  # average-pooling factor of each scale's input
WIDTH = 64  # channels of the first conv; doubled by each stride-2 conv


def _sn(conv: nn.Conv2d) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(conv)


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) -> (B, 1, ~H/8, ~W/8) patch logits (real > 0 > generated)."""

    def __init__(self, channels: int, width: int = WIDTH):
        super().__init__()
        widths = [channels, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [_sn(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
        layers += [_sn(nn.Conv2d(widths[-1], widths[-1], 3, 1, 1)), nn.LeakyReLU(0.2)]
        layers += [_sn(nn.Conv2d(widths[-1], 1, 3, 1, 1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """One ``PatchDiscriminator`` per factor in ``scales``, each on ``avg_pool2d(x, factor)``.

    Args:
        mean: (C,) the exemplar's channel means; std: its overall standard deviation. Inputs
            are standardised with them (buffers, saved with the weights), so that the first
            conv sees zero-mean, unit-scale patches whatever the material's colours.
        scales: average-pooling factors, finest first.

    Convention:
        x: (B, C, H, W) in [0, 1], H and W at least 8 x the largest factor. Returns one
        (B, 1, h_s, w_s) logit map a scale.
    """

    def __init__(self, mean: torch.Tensor, std: float, scales=SCALES, width: int = WIDTH):
        super().__init__()
        self.scales = tuple(scales)
        self.heads = nn.ModuleList(PatchDiscriminator(mean.numel(), width) for _ in self.scales)
        self.register_buffer("mean", mean.detach().float().reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", torch.tensor(float(max(std, 1e-3))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        pooled = [F.avg_pool2d(x, s) if s > 1 else x for s in self.scales]
        return [head(p) for head, p in zip(self.heads, pooled, strict=True)]


def hinge_discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminator (Lim and Ye 2017), summed over scales: the mean over
    patches of relu(1 - real) + relu(1 + fake): 2 per scale at chance (all logits 0)."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True))


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """The generator's hinge term: minus the mean patch logit, summed over scales."""
    return -sum(f.mean() for f in fake)


def r1_penalty(real: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): the mean over the batch of the squared norm of the
    gradient of the summed real logits with respect to the real images ``real``
    ((B, C, H, W), ``requires_grad``), differentiable for the discriminator's step."""
    (grad,) = torch.autograd.grad(sum(r.sum() for r in logits), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
