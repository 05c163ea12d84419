"""Reading a material stack (issue 17): an albedo and its aligned maps (normal, height, ...),
as one multi-channel image plus the layout that splits it again.

Convention: a stack is a (C, H, W) float tensor in [0, 1], the maps' channels concatenated
in the order given, albedo first (3 channels); a grey map is 1 channel, a colour one 3. The
layout is a list of ``{"name", "channels", "bits"}`` dicts in that order, JSON-able, so a
checkpoint can record it and a renderer split its output by it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from configs.editing import map_output, parse_maps
from data.errors import UserError
from data.images import load_image
from data.masks import image_format

ALBEDO = "albedo"


def load_stack(albedo, items: list[str], log=print) -> tuple[torch.Tensor, list[dict], list[str]]:
    """The albedo file and the ``NAME=FILE`` maps ``items`` name, as one stack.

    Args:
        albedo: the albedo (exemplar) image file.
        items: ``["normal=n.png", ...]`` (``configs.editing.parse_maps``: known names, once).

    Returns:
        (stack (C, H, W) in [0, 1], layout, sources ``["albedo=a.png", "normal=n.png", ...]``).

    Raises:
        UserError: an unreadable file, an unknown or repeated name, or a map whose size is
            not the albedo's (maps must be aligned pixel for pixel).
    """
    files = {ALBEDO: Path(albedo), **parse_maps(items)}
    images, layout = [], []
    for name, path in files.items():
        img, note = load_image(path)
        log(f"{name}: {note}")
        if images and img.shape[-2:] != images[0].shape[-2:]:
            (h, w), (ha, wa) = img.shape[-2:], images[0].shape[-2:]
            raise UserError(
                f"--map {name}={path}: the map is {w}x{h}, the albedo {wa}x{ha} (the maps differ "
                "in size); give maps of the albedo's size, aligned with it pixel for pixel"
            )
        bits, grey = image_format(path)
        grey = grey and name != ALBEDO  # the albedo stays RGB (a grey albedo is expanded)
        images.append(img[:1] if grey else img)
        layout.append({"name": name, "channels": 1 if grey else 3, "bits": bits})
    return torch.cat(images), layout, [f"{n}={p}" for n, p in files.items()]


def channel_counts(layout: list[dict]) -> list[int]:
    return [m["channels"] for m in layout]


def split_stack(x: torch.Tensor, layout: list[dict]) -> dict[str, torch.Tensor]:
    """(..., C, H, W) stack -> name -> (..., c, H, W) map, by ``layout``."""
    chunks = torch.split(x, channel_counts(layout), dim=-3)
    return {m["name"]: chunk for m, chunk in zip(layout, chunks, strict=True)}


def stack_outputs(path: Path, layout: list[dict]) -> dict[str, Path]:
    """name -> output file: the albedo at ``path``, each map at ``path``'s stem + ``_NAME``."""
    return {m["name"]: path if m["name"] == ALBEDO else map_output(path, m["name"]) for m in layout}
