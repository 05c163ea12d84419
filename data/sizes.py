"""Parsing output sizes given on the command line."""

from __future__ import annotations

import re

from data.errors import UserError

MAX_SIDE = 32768
_SIZE = re.compile(r"(\d+)(?:\s*[xX×]\s*(\d+))?")


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WIDTHxHEIGHT`` (or one number for a square) into ``(height, width)``.

    Convention: the text is width first, as image tools print sizes (``1024x512`` is a wide
    image); the result is height first, as tensors are shaped ``(C, H, W)``.

    Args:
        text: e.g. ``"1024x512"``, ``"1024X512"``, ``"512"``; surrounding spaces are ignored.

    Returns:
        ``(height, width)``, each in ``[1, MAX_SIDE]``.

    Raises:
        UserError: malformed text, a zero side, or a side above ``MAX_SIDE``.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise UserError(
            f"bad size {text!r}: expected WIDTHxHEIGHT like 1024x512, or one number like 512"
        )
    width = int(match[1])
    height = int(match[2]) if match[2] is not None else width
    if width < 1 or height < 1:
        raise UserError(f"bad size {text!r}: width and height must be at least 1 pixel")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise UserError(f"size {text!r} is too large: at most {MAX_SIDE} pixels a side")
    return height, width
