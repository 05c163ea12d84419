"""Sliced Wasserstein distance between the pixel patches of two images (Elnekave and Weiss
2022, "Generating natural images with direct patch distribution matching", GPDM).

Each p x p x C patch is a vector; its distribution is compared through 1-D projections on
random unit directions, which a convolution computes for every patch at once. No trained
network is involved, so nothing here depends on a backbone.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from losses.sliced import resample_sorted


def pyramid_scales(side: int, coarsest: int, factor: float) -> list[float]:
    """Scales ``factor**k``, coarsest first, ending at 1, the first taking ``side`` to about
    ``coarsest`` px (one scale, 1, when ``side <= coarsest``)."""
    count = 1 + max(0, math.floor(math.log(coarsest / side) / math.log(factor) + 1e-9))
    return [factor**k for k in reversed(range(count))]


def scaled(size: tuple[int, int], scale: float, minimum: int) -> tuple[int, int]:
    return tuple(max(minimum, round(s * scale)) for s in size)


def downscaled(img: torch.Tensor, scale: float, minimum: int) -> torch.Tensor:
    """(B, C, H, W) resized by ``scale`` (antialiased bilinear; each side at least
    ``minimum``), or ``img`` itself at scale 1. Differentiable."""
    if scale >= 1:
        return img
    size = scaled(tuple(img.shape[-2:]), scale, minimum)
    return F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)


def patch_directions(
    channels: int, patch: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(count, channels, patch, patch) random directions of unit norm, drawn on the CPU."""
    d = torch.randn(count, channels * patch * patch, generator=generator)
    return F.normalize(d, dim=1).view(count, channels, patch, patch)


def project_patches(img: torch.Tensor, directions: torch.Tensor, circular: bool) -> torch.Tensor:
    """(B, C, H, W) image -> (B, D, N) projections of its patches on ``directions``.

    Patches lie wholly inside the image (N = (H - p + 1)(W - p + 1)), or, with ``circular``,
    wrap around it (N = H W: a periodic image has no border).
    """
    p = directions.shape[-1]
    if circular:
        img = F.pad(img, (0, p - 1, 0, p - 1), mode="circular")
    return F.conv2d(img, directions.to(img)).flatten(2)


def sorted_target(
    exemplars: list[torch.Tensor], directions: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(1, D, count) quantiles of the exemplars' pooled patch projections.

    Args:
        exemplars: (1, C, H, W) images; their patches are pooled into one distribution.
        count: number of quantiles wanted (the output's patch count).
        generator: draws a random subset when the exemplars hold more than 2 x ``count``
            patches (sorting is the cost; a subset of that size keeps the quantiles).
    """
    with torch.no_grad():
        proj = torch.cat([project_patches(u, directions, False) for u in exemplars], dim=-1)
        n = proj.shape[-1]
        if n > 2 * count:
            proj = proj[..., torch.randperm(n, generator=generator)[: 2 * count].to(proj.device)]
        # NumPy's sort is ~5x torch's on the CPU (vectorised quicksort); no gradient is needed.
        if proj.device.type == "cpu":
            values = torch.from_numpy(np.sort(proj.float().numpy(), axis=-1))
        else:
            values = proj.float().sort(dim=-1).values
        return resample_sorted(values, count)


def patch_sliced_wasserstein(
    img: torch.Tensor,
    exemplars: list[torch.Tensor],
    directions: torch.Tensor,
    circular: bool,
    generator: torch.Generator,
    max_patches: int | None = None,
) -> torch.Tensor:
    """Mean squared difference between sorted patch projections of ``img`` and the exemplars'.

    Args:
        img: (1, C, H, W) output, differentiable.
        exemplars: (1, C, h, w) exemplars at the same scale.
        directions: (D, C, p, p) from ``patch_directions``.
        circular: the output's patches wrap around (tileable output).
        generator: for the exemplars' patch subset (and the output's).
        max_patches: compare a random subset of this many of the output's patches (sorting
            is the cost of a step; a subset is an unbiased sample of the distribution).

    Returns:
        Scalar float32 loss.
    """
    ours = project_patches(img, directions, circular).float()
    n = ours.shape[-1]
    if max_patches is not None and n > max_patches:
        ours = ours[..., torch.randperm(n, generator=generator)[:max_patches].to(ours.device)]
    ours = ours.sort(dim=-1).values
    theirs = sorted_target(exemplars, directions, ours.shape[-1], generator).to(ours)
    return (ours - theirs).pow(2).mean()


class PatchPyramidLoss:
    """The patch objective of a whole image at once, for training a generator: the sliced
    Wasserstein distance of patches at every scale of the pyramid, averaged.

    Called like ``TextureLoss`` (``loss(x, crop=None, generator=g)`` -> dict with ``total``),
    on (B, 3, H, W) images in [0, 1]; ``generator`` draws the directions and subsets (a fixed
    one when None, so that evaluations are comparable).

    Args:
        exemplars: (3, h, w) images; their patches are pooled.
        cfg: a config with the ``PatchFields``.
        circular: the images' patches wrap around (periodic training).
    """

    def __init__(self, exemplars: list[torch.Tensor], cfg, circular: bool = False):
        self.cfg, self.circular = cfg, circular
        side = min(min(u.shape[-2:]) for u in exemplars)
        self.scales = pyramid_scales(side, cfg.coarsest, cfg.pyramid_factor)
        self.targets = [
            [downscaled(u[None].float(), s, cfg.patch_size) for u in exemplars] for s in self.scales
        ]

    def __call__(self, x: torch.Tensor, crop=None, generator: torch.Generator | None = None):
        cfg = self.cfg
        g = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        terms = {}
        for k, (s, targets) in enumerate(zip(self.scales, self.targets, strict=True)):
            view = downscaled(x.float(), s, cfg.patch_size)
            directions = patch_directions(x.shape[1], cfg.patch_size, cfg.projections, g)
            values = [
                patch_sliced_wasserstein(
                    view[i : i + 1], targets, directions, self.circular, g, cfg.max_patches or None
                )
                for i in range(view.shape[0])
            ]
            terms[f"patches/scale{k}"] = torch.stack(values).mean()
        terms["total"] = torch.stack(list(terms.values())).mean()
        return terms
