"""Fixed filters shared by the judge's measures: opponent colour and a Gabor bank."""

from __future__ import annotations

import math

import torch


def opponent(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB -> (3, H, W) luminance, red-green, blue-yellow."""
    r, g, b = x
    return torch.stack([0.299 * r + 0.587 * g + 0.114 * b, r - g, 0.5 * (r + g) - b])


def gabor_bank(orientations: int = 4, wavelength: float = 4.0, size: int = 9) -> torch.Tensor:
    """(2 * orientations, 1, size, size) even and odd zero-mean Gabor kernels, unit L1 norm."""
    r = torch.arange(size, dtype=torch.float32) - size // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    sigma = 0.56 * wavelength  # about one octave of bandwidth
    kernels = []
    for k in range(orientations):
        theta = math.pi * k / orientations
        u = x * math.cos(theta) + y * math.sin(theta)
        envelope = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
        for phase in (torch.cos, torch.sin):
            g = envelope * phase(2 * math.pi * u / wavelength)
            g = g - envelope * (g.sum() / envelope.sum())  # no response to flat areas
            kernels.append(g / g.abs().sum())
    return torch.stack(kernels)[:, None]
