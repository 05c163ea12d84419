"""BatchNorm folding: the inference form of a conv followed by an eval-mode BatchNorm."""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def fold_batchnorm(
    weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d
) -> tuple[Tensor, Tensor]:
    """The (weight, bias) of one conv that equals ``bn(conv(x))`` with ``bn`` in eval mode.

    Convention:
        eval-mode BatchNorm is ``gamma (y - mu) / sqrt(var + eps) + beta``, a per-channel
        affine map that merges into the conv before it: ``w * g``, ``(b - mu) g + beta`` with
        ``g = gamma / sqrt(var + eps)`` (a conv without a bias has ``b = 0``).

    Args:
        weight: (C_out, C_in, k, k) conv weight.
        bias: (C_out,) conv bias, or None.
        bn: the BatchNorm2d after the conv, with its running statistics.

    Returns:
        (weight, bias), fp32, contiguous, on the CPU.
    """
    g = bn.weight.float().cpu() / torch.sqrt(bn.running_var.float().cpu() + bn.eps)
    w = (weight.detach().float().cpu() * g.view(-1, 1, 1, 1)).contiguous()
    b = torch.zeros_like(g) if bias is None else bias.detach().float().cpu()
    return w, (b - bn.running_mean.float().cpu()) * g + bn.bias.float().cpu()
