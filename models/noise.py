"""Counter-based noise: a pure function of (seed, scale, channel, y, x), so any crop is exact.

A tile of a 16384x16384 texture draws exactly the noise values the untiled run would, without
the full noise tensor ever existing. Values come from an integer hash (Wellons' ``lowbias32``)
of a row key and a column key; all arithmetic is int32 with wrap-around multiplication and
masked (logical) right shifts, which CPU and CUDA kernels implement identically.
"""

from __future__ import annotations

import torch

_M1 = 0x7FEB352D
_M2 = 0x846CA68B - (1 << 32)  # the same 32 bits as a signed int32
_GOLDEN = 0x9E3779B9


def _lowbias32(h: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit avalanche mix of an int32 tensor, in place."""
    h ^= (h >> 16) & 0xFFFF
    h *= _M1
    h ^= (h >> 15) & 0x1FFFF
    h *= _M2
    h ^= (h >> 16) & 0xFFFF
    return h


def _key(values: torch.Tensor, salt: int) -> torch.Tensor:
    """Hash of int64 coordinates ``values`` under a salt, as int32."""
    h = ((values * _GOLDEN + salt) & 0xFFFFFFFF).to(torch.int64)
    h = torch.where(h >= 1 << 31, h - (1 << 32), h).to(torch.int32)
    return _lowbias32(h)


def _salt(*parts: int) -> int:
    """Fold integers into one 32-bit salt (Python ints: exact, any size)."""
    h = 0x12345678
    for p in parts:
        h = (h ^ (p & 0xFFFFFFFF)) * 0x01000193 & 0xFFFFFFFF  # FNV-1a step
        h = (h ^ (h >> 15)) * _M1 & 0xFFFFFFFF
    return h


def hash_noise(
    seed: int,
    scale: int,
    channels: int,
    rows: torch.Tensor,
    cols: torch.Tensor,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Uniform noise in [-1, 1) at the given pixel coordinates.

    Args:
        seed: any integer (one texture per seed).
        scale: index of the generator scale (0 = finest); each scale has its own noise.
        channels: number of noise channels.
        rows: (h,) int64 row coordinates; callers wrap them (mod the height) for periodic noise.
        cols: (w,) int64 column coordinates.

    Returns:
        (channels, h, w) float32 in [-1, 1), with 2^-23 resolution. Equal coordinates give
        equal values whatever the crop, device or batch they are drawn in.
    """
    rows, cols = rows.to(device, torch.int64), cols.to(device, torch.int64)
    out = torch.empty(channels, len(rows), len(cols), device=device)
    for c in range(channels):
        hy = _key(rows, _salt(seed, scale, c, 1))
        hx = _key(cols, _salt(seed, scale, c, 2))
        h = _lowbias32(hy[:, None] ^ hx[None, :])  # (h, w)
        out[c] = ((h >> 8) & 0xFFFFFF).float()
    return out.mul_(2.0**-23).sub_(1.0)


def noise_pyramid(
    seeds: list[int], size: tuple[int, int], scales: int, channels: int, device="cpu"
) -> list[torch.Tensor]:
    """Whole-image noise for a generator with ``scales`` scales, coarsest first.

    Args:
        seeds: one seed per sample.
        size: (H, W) of the output, multiples of 2^(scales-1).

    Returns:
        ``scales`` tensors; scale i is (B, channels, H / 2^(scales-1-i), W / 2^(scales-1-i)).
    """
    out = []
    for i in range(scales):
        h, w = size[0] >> (scales - 1 - i), size[1] >> (scales - 1 - i)
        rows, cols = torch.arange(h), torch.arange(w)
        out.append(torch.stack([hash_noise(s, i, channels, rows, cols, device) for s in seeds]))
    return out


def derived_seed(*parts: int) -> int:
    """A 31-bit seed from integers such as (run seed, step, rank, sample): stateless streams."""
    return _salt(*parts, 0x5EED) & 0x7FFFFFFF
