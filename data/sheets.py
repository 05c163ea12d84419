"""Contact sheets: labelled thumbnails in a grid, one PNG (a batch's results, the benchmark's
methods side by side)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

from data.sidecar import write_bytes_atomic

Tile = Path | torch.Tensor | None  # an image file, a (3, H, W) image in [0, 1], or blank


def _thumbnail(tile: Tile, thumb: int) -> Image.Image:
    """``tile`` scaled (Lanczos, up or down) to fit a ``thumb`` px square, centred on white;
    an unreadable file shows as a blank tile."""
    square = Image.new("RGB", (thumb, thumb), (255, 255, 255))
    try:
        if isinstance(tile, torch.Tensor):
            array = (tile.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0)
            im = Image.fromarray(np.ascontiguousarray(array.cpu().numpy()), "RGB")
        elif tile is not None:
            with Image.open(tile) as opened:
                im = opened.convert("RGB")
        else:
            return square
    except (OSError, ValueError):
        return square
    im = ImageOps.contain(im, (thumb, thumb), Image.Resampling.LANCZOS)
    square.paste(im, ((thumb - im.width) // 2, (thumb - im.height) // 2))
    return square


def contact_sheet(
    cells: list[tuple[str, list[Tile]]], path: Path, thumb: int = 128, columns: int = 4
) -> Path:
    """Write a PNG grid of labelled cells atomically (parent folders are created).

    Args:
        cells: (label, tiles) per cell, left to right and top to bottom; a cell's tiles stand
            side by side (a batch item: exemplar | result), its label (cut to 40 characters)
            underneath.
        path: the output PNG.
        thumb: side of the square each tile is scaled to fit.
        columns: cells per row.
    """
    label, pad = 16, 6
    width = max(len(tiles) for _, tiles in cells)
    cell_w, cell_h = width * (thumb + pad) + 2 * pad, thumb + label + 2 * pad
    rows = -(-len(cells) // columns)
    sheet = Image.new("RGB", (min(columns, len(cells)) * cell_w, rows * cell_h), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    for k, (name, tiles) in enumerate(cells):
        x, y = (k % columns) * cell_w, (k // columns) * cell_h
        for i, tile in enumerate(tiles):
            sheet.paste(_thumbnail(tile, thumb), (x + pad + i * (thumb + pad), y + pad))
        draw.text((x + pad, y + pad + thumb + 2), name[:40], fill=(0, 0, 0))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path
