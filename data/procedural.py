"""Procedural exemplars: textures made in code, free to redistribute, for demos and tests.

python -m data.procedural cells exemplar.png [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import math

import torch

from data.errors import UserError

CELL_ROWS = 16  # rows of cells() computed at once


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32),
        torch.arange(size, dtype=torch.float32),
        indexing="ij",
    )
    return y, x


def cells(size: int = 256, seed: int = 0) -> torch.Tensor:
    """Periodic Voronoi cells with earthy colours, dark mortar and per-cell shading."""
    g = torch.Generator().manual_seed(seed)
    n = max(4, (size // 24) ** 2)
    centers = torch.rand(n, 2, generator=g) * size
    colours = torch.tensor([0.55, 0.35, 0.25]) + 0.15 * torch.randn(n, 3, generator=g)
    img = torch.empty(3, size, size)
    x = torch.arange(size, dtype=torch.float32)
    # A band of rows at a time: the distances of every pixel to every centre take
    # rows x size x n floats (the whole image at once: 7 GB at 1024 px, killed for memory).
    for top in range(0, size, CELL_ROWS):
        y = torch.arange(top, min(size, top + CELL_ROWS), dtype=torch.float32)
        yy, xx = torch.meshgrid(y, x, indexing="ij")
        d = None
        for dy in (-size, 0, size):  # periodic: distances to the 9 copies of each centre
            across = (yy[..., None] - centers[:, 0] - dy) ** 2
            for dx in (-size, 0, size):
                e = across + (xx[..., None] - centers[:, 1] - dx) ** 2
                d = e if d is None else torch.minimum(d, e)
        two = d.sqrt().topk(2, dim=-1, largest=False)  # (rows, size, 2)
        idx, gap = two.indices[..., 0], two.values[..., 1] - two.values[..., 0]
        band = colours[idx].permute(2, 0, 1)  # (3, rows, W)
        band = band * (0.75 + 0.25 * (1 - two.values[..., 0] / 20).clamp(0, 1))
        img[:, top : top + len(y)] = band * (gap / 3).clamp(0.25, 1)
    img = img + 0.03 * torch.randn(3, size, size, generator=g)
    return img.clamp(0, 1)


def dots(size: int = 256, seed: int = 0) -> torch.Tensor:
    """Red and white dots of varied radius on a blue-grey ground."""
    g = torch.Generator().manual_seed(seed)
    img = torch.tensor([0.25, 0.3, 0.4]).view(3, 1, 1).repeat(1, size, size)
    y, x = _grid(size)
    for _ in range(size * size // 600):
        cy, cx = (torch.rand(2, generator=g) * size).tolist()
        r = 3 + 5 * float(torch.rand(1, generator=g))
        dy = (y - cy + size / 2) % size - size / 2
        dx = (x - cx + size / 2) % size - size / 2
        mask = ((dy**2 + dx**2).sqrt() < r).float()
        colour = (
            torch.tensor([0.85, 0.15, 0.1])
            if torch.rand(1, generator=g) < 0.6
            else torch.tensor([0.95, 0.92, 0.85])
        )
        img = img * (1 - mask) + colour.view(3, 1, 1) * mask
    return (img + 0.02 * torch.randn(3, size, size, generator=g)).clamp(0, 1)


def stripes(size: int = 256, seed: int = 0) -> torch.Tensor:
    """Wavy, slightly irregular diagonal stripes (a periodic pattern with large structure)."""
    g = torch.Generator().manual_seed(seed)
    y, x = _grid(size)
    k = 2 * math.pi / size
    phase = (
        6 * k * (x + y) + 0.8 * torch.sin(2 * k * y + float(torch.rand(1, generator=g)) * 6)
    ).sin()
    a = torch.tensor([0.9, 0.8, 0.55]).view(3, 1, 1)
    b = torch.tensor([0.3, 0.2, 0.15]).view(3, 1, 1)
    t = (phase * 3).clamp(-1, 1) * 0.5 + 0.5
    img = a * t + b * (1 - t)
    return (img + 0.04 * torch.randn(3, size, size, generator=g)).clamp(0, 1)


KINDS = {"cells": cells, "dots": dots, "stripes": stripes}


def make(kind: str, size: int = 256, seed: int = 0) -> torch.Tensor:
    """(3, size, size) float image in [0, 1]; every kind is periodic (tiles seamlessly)."""
    if kind not in KINDS:
        raise UserError(f"unknown procedural texture '{kind}'; choose one of {', '.join(KINDS)}")
    if not 16 <= size <= 4096:
        raise UserError("procedural texture size must be between 16 and 4096")
    return KINDS[kind](size, seed)


def main() -> None:
    from data.errors import run_cli
    from data.images import save_image

    parser = argparse.ArgumentParser(description="Write a procedural exemplar PNG.")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("output")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    def run():
        save_image(make(args.kind, args.size, args.seed), args.output, overwrite=args.overwrite)
        print(f"wrote {args.output}")

    run_cli(run)


if __name__ == "__main__":
    main()
