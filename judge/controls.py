"""Control images made from an exemplar: what a measure of texture quality must rank.

A real crop must score about 1 (as close as a real crop), white noise and shuffled blocks far
above it. Convention: (3, H, W) float tensors in [0, 1], RGB.
"""

from __future__ import annotations

import torch


def real_crops(ref: torch.Tensor, size: tuple[int, int], count: int, seed: int = 0):
    """``count`` random (3, *size) crops of ``ref`` (size must fit inside it)."""
    g = torch.Generator().manual_seed(seed)
    h, w = ref.shape[-2:]
    ys = torch.randint(0, h - size[0] + 1, (count,), generator=g).tolist()
    xs = torch.randint(0, w - size[1] + 1, (count,), generator=g).tolist()
    return [ref[:, y : y + size[0], x : x + size[1]] for y, x in zip(ys, xs, strict=True)]


def white_noise(ref: torch.Tensor, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Gaussian white noise with the exemplar's per-channel mean and standard deviation."""
    g = torch.Generator().manual_seed(seed)
    mean, std = ref.mean((1, 2), keepdim=True), ref.std((1, 2), keepdim=True)
    return (mean + std * torch.randn(3, *size, generator=g)).clamp(0, 1)


def block_shuffled(x: torch.Tensor, block: int, seed: int) -> torch.Tensor:
    """``x`` cut into ``block`` x ``block`` tiles put back in random order."""
    h, w = (x.shape[1] // block) * block, (x.shape[2] // block) * block
    tiles = x[:, :h, :w].unfold(1, block, block).unfold(2, block, block)  # (3, nh, nw, b, b)
    nh, nw = tiles.shape[1:3]
    order = torch.randperm(nh * nw, generator=torch.Generator().manual_seed(seed))
    tiles = tiles.reshape(3, nh * nw, block, block)[:, order].reshape(3, nh, nw, block, block)
    out = x.clone()
    out[:, :h, :w] = tiles.permute(0, 1, 3, 2, 4).reshape(3, h, w)
    return out


def shuffled_blocks(ref: torch.Tensor, size: tuple[int, int], block: int, seed: int = 0):
    """A real crop cut into ``block`` x ``block`` tiles put back in random order."""
    return block_shuffled(real_crops(ref, size, 1, seed)[0], block, seed + 1)
