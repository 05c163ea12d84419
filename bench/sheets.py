"""Contact sheets: the exemplar and each method's output side by side, labelled (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> 8-bit RGB image."""
    array = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def contact_sheet(tiles: list[tuple[str, torch.Tensor]], path: Path, side: int = 256) -> Path:
    """Write one row of ``side`` px tiles, each with its label underneath, as a PNG.

    Args:
        tiles: (label, (3, H, W) image in [0, 1]) pairs, left to right. Each image is scaled
            (Lanczos) so that its longer side is ``side``; nothing is cropped.
        path: output PNG (parent folders are created).
    """
    label_h, gap = 18, 4
    sheet = Image.new("RGB", (len(tiles) * (side + gap) + gap, side + label_h + 2 * gap), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(tiles):
        im = to_pil(img)
        scale = side / max(im.size)
        im = im.resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))),
            Image.Resampling.LANCZOS,
        )
        x0 = gap + i * (side + gap)
        sheet.paste(im, (x0, gap))
        draw.text((x0 + 2, gap + side + 3), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
