"""Evening out a photo's light before synthesis: a highlight, a vignette or a lamp's falloff
is not part of the material, and copied into a texture it shows as blotches, or as a
gradient that steps where the texture tiles.

Convention: images (C, H, W) float in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

# SynthConfig.even_light: ``on`` evens the exemplars' light, ``off`` keeps it; ``auto`` evens
# it where the engine quilts a synthesis from exemplars' blocks and the light varies by
# LIGHT_SPREAD or more (optimize.patches), and keeps it where kept pixels must match (repair,
# expand), the target's light is the point (remake), or channels are not colours (material
# stacks: a normal map's "light" is a slope).
EVEN_LIGHT = ("auto", "on", "off")
# ``auto`` evens the light where ``light_spread`` is at least this: the light measured over a
# quarter of the exemplar's short side (SPREAD_SCALE), which a material's own variation
# (cells of different colours, a cable panel, a field of flowers) hardly reaches. There, the
# photos lit unevenly spread 0.16-0.25 (wood, fur, blue_metal); waves 0.106, whose dark water
# beside its foam is the material's (evened, the output lost the water's dark mass to
# mid-grey foam); daisies 0.074, honeycomb 0.070, knit 0.040, the rest 0.01-0.03; the
# procedural textures of 128 px and more 0.06 at most (an exemplar of 64 px holds too few
# cells to tell: 0.09).
LIGHT_SPREAD = 0.12
SPREAD_SCALE = 1 / 4
# The light divided out is each channel's blur over this fraction of the short side (a
# Gaussian's sigma): half the side of a quarter-size block (the quilt's until session 35;
# optimize.patches.START_BLOCK is now a third), so that texture up to a quarter of the
# exemplar is kept (a 48 px tile lattice loses under 1e-8 of its contrast). Evened over a
# quarter, blue_metal still quilted to 0.45 mean grey (0.52).
# A smooth field instead (the exponential of a quadratic in x and y fitted to the log) kept
# more of what is material, but left blue_metal's highlight band, which then showed as one
# flat grey block in the quilt, and wood's bleached patches (structure 1.11 against 0.96).
LIGHT_SCALE = 1 / 8


def light_spread(u: torch.Tensor) -> float:
    """(C, h, w) in [0, 1] -> how much the light of ``u`` varies: the standard deviation of
    its brightness blurred over SPREAD_SCALE of its short side, over its mean."""
    light = _blur(u.mean(0, keepdim=True), SPREAD_SCALE * min(u.shape[-2:]))
    return float(light.std() / light.mean())


def even_light(u: torch.Tensor) -> torch.Tensor:
    """(C, h, w) in [0, 1] -> (C, h, w): ``u`` with its light evened out, each channel divided
    by its own light (its blur over LIGHT_SCALE of the short side) and multiplied by that
    light's mean. Per channel, because light changes colour too: blue_metal's highlight is
    white where its shade is saturated blue, and evened in brightness only, the output was a
    patchwork of grey and saturated blue.

    Quilted from a photo whose light varies, blocks only agree with blocks lit alike, so the
    quilt drifted into the photo's largest evenly lit part and stayed there: blue_metal (mean
    grey 0.52) quilted to 0.32, fur (0.34) to 0.22; refined, the output was a patchwork of lit
    and shaded blotches. Evened, the quilts keep their means within 0.03 (docs/decisions.md,
    session 19).
    """
    light = _blur(u, LIGHT_SCALE * min(u.shape[-2:]))
    return (u * (light.mean((1, 2), keepdim=True) / light)).clamp(0, 1).to(u.dtype)


def _blur(u: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, h, w) -> (C, h, w) float64, at least 1/255: ``u`` blurred by a Gaussian of ``sigma``
    px, reflected at the edges; taken where ``sigma`` is about 4 px and brought back
    bilinearly (what is measured is smooth)."""
    h, w = u.shape[-2:]
    step = max(1.0, sigma / 4)
    size = (max(1, round(h / step)), max(1, round(w / step)))
    small = F.interpolate(u[None].double(), size=size, mode="bilinear", antialias=True)
    radius = min(round(3 * sigma / step), min(size) - 1)
    if radius >= 1:
        small = TF.gaussian_blur(small, 2 * radius + 1, sigma / step)
    return F.interpolate(small, size=(h, w), mode="bilinear")[0].clamp_min(1 / 255)
