"""What editing reads beside an image (issue 17): repair masks, the alpha channel as a mask,
and the bit depth and channel count of a file, so that an edit is written as its input was.

Convention: a mask is an (H, W) bool tensor, True where pixels are to be filled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from data.errors import UserError
from data.images import load_image

GREY_MODES = ("1", "L", "LA", "La", "I", "F")


def _rawmodes(im: Image.Image) -> set[str]:
    """The decoder raw modes of ``im``'s tiles (``RGB;16B`` for a 16-bit colour PNG)."""
    out = set()
    for tile in im.tile:
        args = tile[3]
        args = args[0] if isinstance(args, tuple) and args else args
        if isinstance(args, str):
            out.add(args)
    return out


def image_format(path: str | Path) -> tuple[int, bool]:
    """(bits, grey) of an image file: 16 for 16-bit (or wider) samples, else 8; whether it is
    grey (with or without alpha). The file is assumed readable (``load_image`` first)."""
    with Image.open(path) as im:
        raws = _rawmodes(im)
        sixteen = im.mode.startswith("I;16") or im.mode in ("I", "F")
        sixteen = sixteen or any("16" in r for r in raws)
        grey = im.mode in GREY_MODES or im.mode.startswith("I;16")
        grey = grey or any(r.startswith("LA;16") for r in raws)
    return (16 if sixteen else 8), grey


def load_fill_mask(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """A mask file -> (H, W) bool, True where it is white (mean of its channels above one
    half; transparency counts as white: ``load_image`` composites it over white).

    Raises:
        UserError: unreadable (``load_image``), or not of ``size`` (H, W).
    """
    img, _ = load_image(path)
    if tuple(img.shape[-2:]) != tuple(size):
        h, w = img.shape[-2:]
        raise UserError(
            f"{path}: the mask is {w}x{h}, the image {size[1]}x{size[0]}; give a mask of the "
            "image's size"
        )
    return img.mean(0) > 0.5


def alpha_fill_mask(path: str | Path) -> torch.Tensor | None:
    """(H, W) bool, True where the image at ``path`` is not fully opaque (its alpha below the
    maximum), or None if it has no alpha channel. The EXIF orientation is applied, as
    ``load_image`` does. A 16-bit alpha is read at 8 bits (Pillow's), so samples from 65280
    to 65534 count as opaque."""
    with Image.open(path) as im:
        has_alpha = "A" in im.getbands() or im.mode == "PA" or "transparency" in im.info
        if not has_alpha:
            return None
        im = ImageOps.exif_transpose(im)
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
    return torch.from_numpy(alpha < 255)
