"""The contact sheet of a batch: (exemplar | result) thumbnails with names, as one PNG."""

from __future__ import annotations

from pathlib import Path


def write_contact_sheet(items: list, path: Path, thumb: int = 128, columns: int = 4) -> None:
    """A PNG grid of (exemplar | result) pairs with the item name under each, atomically.

    ``items`` have ``name``, ``exemplar`` (a file or None: blank tile) and ``outputs`` (the
    first is shown); every image is scaled to fit a ``thumb`` px square.
    """
    import io

    from PIL import Image, ImageDraw, ImageOps

    LANCZOS = Image.Resampling.LANCZOS
    from data.sidecar import write_bytes_atomic

    def thumbnail(file: Path | None) -> Image.Image:
        tile = Image.new("RGB", (thumb, thumb), (255, 255, 255))
        if file is not None:
            try:
                with Image.open(file) as im:
                    im = ImageOps.contain(im.convert("RGB"), (thumb, thumb), LANCZOS)
                    tile.paste(im, ((thumb - im.width) // 2, (thumb - im.height) // 2))
            except (OSError, ValueError):
                pass  # an unreadable exemplar shows as a blank tile
        return tile

    label, pad = 16, 6
    cell_w, cell_h = 2 * thumb + 3 * pad, thumb + label + 2 * pad
    rows = -(-len(items) // columns)
    sheet = Image.new("RGB", (min(columns, len(items)) * cell_w, rows * cell_h), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    for k, item in enumerate(items):
        x, y = (k % columns) * cell_w, (k // columns) * cell_h
        sheet.paste(thumbnail(item.exemplar), (x + pad, y + pad))
        sheet.paste(thumbnail(item.outputs[0]), (x + 2 * pad + thumb, y + pad))
        draw.text((x + pad, y + pad + thumb + 2), item.name[:40], fill=(0, 0, 0))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
