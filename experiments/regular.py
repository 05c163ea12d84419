"""Photo-like regular exemplars made in code: a brick wall, a tiled floor, a plain weave.

    python -m experiments.regular OUTDIR [--height 384] [--width 512] [--seed 0] [--overwrite]

Issue 13 is checked on photos of bricks, tiles, weaves and grids, and ../shared/exemplars
holds none. These stand in for them: unlike ``data.procedural`` they are *not* periodic
(a crop of a wall, as a photo is), so the engine treats them as photos (no wrap-around),
and their elements vary a little in size, colour and position, with grain and uneven light.
Each writes OUTDIR/{bricks,tiles,weave}.png; the images are for experiments, not for tests
of quality.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
import typer

from data.errors import run_cli
from data.images import save_image

app = typer.Typer(add_completion=False)


def smooth_noise(h: int, w: int, cell: int, g: torch.Generator) -> torch.Tensor:
    """(h, w) unit-variance noise smooth over about ``cell`` px (bicubic from a coarse grid)."""
    coarse = torch.randn(1, 1, h // cell + 2, w // cell + 2, generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0, 0]


def _box(yy, xx, top, left, height, width) -> torch.Tensor:
    return ((yy >= top) & (yy < top + height) & (xx >= left) & (xx < left + width)).float()


def bricks(h: int = 384, w: int = 512, seed: int = 0, brick=(24, 64), mortar: int = 5):
    """(3, h, w) running-bond brick wall: bricks ``brick`` = (height, length) px, lengths and
    row heights jittered, each brick its own red-brown, pale mortar ``mortar`` px wide."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    img = torch.tensor([0.72, 0.70, 0.65]).view(3, 1, 1) * (0.9 + 0.1 * smooth_noise(h, w, 3, g))
    top, row = 0.0, 0
    while top < h:
        height = brick[0] + float(torch.randn(1, generator=g))
        left = -brick[1] * (row % 2) / 2 - 4 * float(torch.rand(1, generator=g))
        while left < w:
            length = brick[1] + 3 * float(torch.randn(1, generator=g))
            tone = 1 + 0.12 * float(torch.randn(1, generator=g))
            colour = torch.tensor([0.62, 0.30, 0.22]) * tone + 0.04 * torch.randn(3, generator=g)
            half = mortar / 2
            inside = _box(yy, xx, top + half, left + half, height - mortar, length - mortar)
            img = img * (1 - inside) + colour.view(3, 1, 1) * inside
            left += length
        top, row = top + height, row + 1
    grain = 0.06 * smooth_noise(h, w, 2, g) + 0.04 * torch.randn(h, w, generator=g)
    return ((img + grain) * (1 + 0.08 * smooth_noise(h, w, 128, g))).clamp(0, 1)


def tiles(h: int = 384, w: int = 512, seed: int = 0, tile: int = 48, grout: int = 4):
    """(3, h, w) tiles of ``tile`` px in grey-pastel tones, dark grout ``grout`` px wide, each
    tile a little lighter on its right."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    img = torch.tensor([0.35, 0.33, 0.30]).view(3, 1, 1).repeat(1, h, w)
    for row in range(-1, h // tile + 2):
        for col in range(-1, w // tile + 2):
            top, left = row * (tile + 0.3), col * tile  # rows a little taller than columns
            tone = 1 + 0.05 * float(torch.randn(1, generator=g))
            colour = torch.tensor([0.80, 0.82, 0.85]) * tone + 0.02 * torch.randn(3, generator=g)
            shade = 1 + 0.04 * ((xx - left) / tile - 0.5)
            inside = _box(yy, xx, top + grout / 2, left + grout / 2, tile - grout, tile - grout)
            img = img * (1 - inside) + colour.view(3, 1, 1) * shade * inside
    grain = 0.03 * smooth_noise(h, w, 2, g) + 0.02 * torch.randn(h, w, generator=g)
    return ((img + grain) * (1 + 0.06 * smooth_noise(h, w, 160, g))).clamp(0, 1)


def weave(h: int = 384, w: int = 512, seed: int = 0, thread: int = 16):
    """(3, h, w) plain weave: pale warp over dark weft on alternate squares of ``thread`` px,
    each thread shaded as a cylinder, the grid bent by a smooth 1.5 px displacement."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    x = (xx + 1.5 * smooth_noise(h, w, 40, g)) / thread
    y = (yy + 1.5 * smooth_noise(h, w, 40, g)) / thread
    fx, fy = x - x.floor(), y - y.floor()
    warp_up = ((x.floor() + y.floor()) % 2 == 0).float()
    across, along = torch.sin(math.pi * fx), torch.sin(math.pi * fy)
    warp = torch.tensor([0.75, 0.65, 0.45]).view(3, 1, 1) * (0.5 + 0.5 * across.sqrt())
    weft = torch.tensor([0.45, 0.35, 0.25]).view(3, 1, 1) * (0.5 + 0.5 * along.sqrt())
    img = warp_up * warp * (0.6 + 0.4 * along) + (1 - warp_up) * weft * (0.6 + 0.4 * across)
    return (img + 0.03 * torch.randn(h, w, generator=g)).clamp(0, 1)


KINDS = {"bricks": bricks, "tiles": tiles, "weave": weave}


@app.command()
def main(
    outdir: Annotated[Path, typer.Argument(help="folder for bricks.png, tiles.png, weave.png")],
    height: Annotated[int, typer.Option(help="px")] = 384,
    width: Annotated[int, typer.Option(help="px")] = 512,
    seed: Annotated[int, typer.Option()] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace existing files")] = False,
) -> None:
    """Write the three regular exemplars."""

    def write() -> None:
        outdir.mkdir(parents=True, exist_ok=True)
        for name, make in KINDS.items():
            save_image(make(height, width, seed), outdir / f"{name}.png", overwrite=overwrite)
            print(f"wrote {outdir / name}.png")

    run_cli(write)


if __name__ == "__main__":
    app()
