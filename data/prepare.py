"""Cut large photos into square training crops, keeping class folders.

    python -m data.prepare SRC DST --crop 128 [--resize 512] [--max-per-image 30]

SRC is either a folder-per-class collection (SRC/CLASS/photo.jpg -> DST/CLASS/photo_0003.png)
or a flat folder of photos, where each photo becomes its own class named after the file
(SRC/bark.jpg -> DST/bark/bark_0003.png). Crops are cut on a grid (step ``--stride``, default
the crop side: no overlap) after an optional downscale so the shorter side is at most
``--resize``; ``--max-per-image`` keeps a seeded random subset. Unreadable files are reported
and skipped; existing crops are kept (rerunning finishes an interrupted run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from data.errors import UserError

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
Opt = typer.Option


def sources(src: Path) -> list[tuple[str, Path]]:
    """[(class name, photo)] of SRC: class sub-folders, or one class per photo of a flat folder."""
    from data.datasets import image_files

    if not src.is_dir():
        raise UserError(f"{src}: not a directory")
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    pairs = [(f.name, p) for f in folders for p in image_files(f)]
    if not pairs:
        pairs = [(p.stem, p) for p in image_files(src)]
    if not pairs:
        raise UserError(f"{src}: no images found (neither SRC/CLASS/*.jpg nor SRC/*.jpg)")
    return pairs


def crops_of(img, crop: int, stride: int, resize: int | None) -> list:
    """Grid crops (3, crop, crop) of a (3, H, W) image in [0, 1], after the optional downscale."""
    import torch.nn.functional as F

    h, w = img.shape[-2:]
    if resize and min(h, w) > resize:
        f = resize / min(h, w)
        size = (round(h * f), round(w * f))
        img = F.interpolate(img[None], size=size, mode="bilinear", antialias=True)[0]
        h, w = size
    return [
        img[:, y : y + crop, x : x + crop]
        for y in range(0, h - crop + 1, stride)
        for x in range(0, w - crop + 1, stride)
    ]


@app.command(help=__doc__)
def main(
    src: Annotated[Path, typer.Argument(help="Folder of class folders, or of photos.")],
    dst: Annotated[Path, typer.Argument(help="Output collection: DST/CLASS/*.png.")],
    crop: Annotated[int, Opt(help="Side of the square crops in pixels.")] = 128,
    stride: Annotated[int | None, Opt(help="Grid step (default: the crop side).")] = None,
    resize: Annotated[
        int | None, Opt(help="First downscale so the shorter side is at most this.")
    ] = None,
    max_per_image: Annotated[int, Opt(help="Keep at most N crops per photo (0 = all).")] = 0,
    seed: Annotated[int, Opt(help="Seed of the --max-per-image subset.")] = 0,
) -> None:
    from data.errors import run_cli

    run_cli(lambda: prepare(src, dst, crop, stride or crop, resize, max_per_image, seed))


def prepare(src, dst, crop, stride, resize, max_per_image, seed) -> dict[str, int]:
    """Write the crops; returns {class: number of crops in DST}."""
    import torch

    from data.images import load_image, save_image

    if crop < 16 or stride < 1 or (resize is not None and resize < crop):
        raise UserError("--crop must be >= 16, --stride >= 1 and --resize >= --crop")
    counts: dict[str, int] = {}
    g = torch.Generator().manual_seed(seed)
    for name, photo in sources(Path(src)):
        try:
            img, _ = load_image(photo)
        except UserError as e:
            print(f"skipped: {e}")
            continue
        pieces = crops_of(img, crop, stride, resize)
        if not pieces:
            print(f"skipped: {photo}: smaller than one {crop} px crop")
            continue
        keep = range(len(pieces))
        if 0 < max_per_image < len(pieces):
            keep = sorted(torch.randperm(len(pieces), generator=g)[:max_per_image].tolist())
        folder = Path(dst) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in keep:
            out = folder / f"{photo.stem}_{i:04d}.png"
            if not out.exists():
                save_image(pieces[i], out)
        counts[name] = len(list(folder.glob("*.png")))
        print(f"{photo} -> {folder}/ ({len(keep)} crops of {crop} px)")
    print(f"wrote {dst}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    app()
