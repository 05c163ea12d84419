"""The torch device a config's ``device`` names."""

from __future__ import annotations

import torch

from data.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; anything else must be usable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
