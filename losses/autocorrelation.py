"""Spatial autocorrelation of feature maps: the long-range statistic of Gonthier, Gousseau and
Ladjal 2022 ("High resolution neural texture synthesis with long range constraints") and Sendik
and Cohen-Or 2017 ("Deep correlations for texture synthesis").

A Gram matrix averages over positions, so it cannot tell a row of bricks from the same bricks
scattered; the autocorrelation of each channel over shifts keeps where features recur.
"""

from __future__ import annotations

import torch


def autocorrelation(
    features: torch.Tensor, shift: int, mean: torch.Tensor | None = None, circular: bool = False
) -> torch.Tensor:
    """Per-channel autocorrelation for every shift in ``[-shift, shift]^2``.

    Args:
        features: (B, C, H, W) feature maps.
        shift: largest shift, in feature pixels; clipped to ``H - 1`` and ``W - 1`` (to
            ``(H - 1) // 2`` and ``(W - 1) // 2`` when circular).
        mean: (C,) values subtracted from each channel first (the exemplar's channel means,
            so that the statistic is about where features are, not their overall level);
            None subtracts nothing.
        circular: the maps are periodic (tile mode): shifts wrap around; otherwise each shift
            averages only over the positions where the map and its shifted copy overlap.

    Returns:
        (B, C, 2 ky + 1, 2 kx + 1) float32 with ky, kx the clipped shifts; entry
        ``[b, c, ky + dy, kx + dx]`` is ``mean_p f_c(p) f_c(p + (dy, dx)) / C``. Dividing by the
        overlap makes maps of different sizes comparable, as the normalised Gram does.
    """
    b, c, h, w = features.shape
    f = features.float()
    if mean is not None:
        f = f - mean.view(1, c, 1, 1).float()
    # A periodic map repeats after half its size; a linear one has no overlap past its size.
    ky, kx = (
        (min(shift, (h - 1) // 2), min(shift, (w - 1) // 2))
        if circular
        else (
            min(shift, h - 1),
            min(shift, w - 1),
        )
    )
    # Zero-padding by the largest shift turns the FFT's circular correlation into the linear
    # one for every shift kept.
    grid = (h, w) if circular else (h + ky, w + kx)
    spec = torch.fft.rfft2(f, s=grid)
    corr = torch.fft.irfft2(spec * spec.conj(), s=grid)  # [.., dy, dx] = sum_p f(p + d) f(p)
    corr = torch.roll(corr, shifts=(ky, kx), dims=(-2, -1))[..., : 2 * ky + 1, : 2 * kx + 1]
    if circular:
        return corr / (h * w * c)
    dy = torch.arange(-ky, ky + 1, device=f.device, dtype=f.dtype)
    dx = torch.arange(-kx, kx + 1, device=f.device, dtype=f.dtype)
    overlap = (h - dy.abs())[:, None] * (w - dx.abs())[None, :]
    return corr / (overlap * c)


def centre_window(a: torch.Tensor, ky: int, kx: int) -> torch.Tensor:
    """The central (2 ky + 1, 2 kx + 1) shifts of an autocorrelation (..., 2 Ky + 1, 2 Kx + 1)."""
    cy, cx = (a.shape[-2] - 1) // 2, (a.shape[-1] - 1) // 2
    return a[..., cy - ky : cy + ky + 1, cx - kx : cx + kx + 1]
