"""Folder-per-class image collections: scan, load (skipping corrupt files), split, crop.

Layout::

    ROOT/bark/001.jpg, ROOT/bark/002.png, ...   one sub-folder per class, any image format
    ROOT/knit/...                                 and size (read by data.images.load_image)

Class names are the sub-folder names, sorted; hidden files and folders are ignored. A file
that cannot be read is reported in one line and skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from data.errors import UserError
from data.images import load_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def scan_classes(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(file, class index)]) of a folder-per-class collection.

    Raises:
        UserError: ``root`` missing, or fewer than two class folders holding images.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory; give a folder with one sub-folder per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes, items = [], []
    for folder in folders:
        files = image_files(folder)
        if files:
            items += [(f, len(classes)) for f in files]
            classes.append(folder.name)
    if len(classes) < 2:
        raise UserError(
            f"{root}: found {len(classes)} class folder(s) with images; a classifier needs at "
            "least 2 (ROOT/CLASS/image.jpg)"
        )
    return classes, items


def source_photo(path: Path) -> str:
    """The photo a crop was cut from: ``bark_0007.png`` -> ``bark`` (data.prepare's naming);
    any other file is its own source."""
    match = re.fullmatch(r"(.+)_\d{4}", path.stem)
    return match[1] if match else path.name


def split(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic per-class split: (train, held-out).

    Crops of one photo look alike, so a class whose files come from two or more source photos
    (:func:`source_photo`) is split by photo: held-out accuracy then measures photos the
    network has not seen. Otherwise files are split. Every class keeps at least one training
    unit, and holds out at least one when it has two or more and ``val_fraction`` > 0.
    """
    if not 0 <= val_fraction < 1:
        raise UserError("--val-fraction must be in [0, 1)")
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in sorted({y for _, y in items}):
        groups: dict[str, list] = {}
        for item in items:
            if item[1] == label:
                groups.setdefault(source_photo(item[0]), []).append(item)
        units = list(groups.values()) if len(groups) >= 2 else [[it] for it in groups.popitem()[1]]
        order = torch.randperm(len(units), generator=g).tolist()
        n_val = round(len(units) * val_fraction)
        if val_fraction > 0 and len(units) >= 2:
            n_val = min(max(n_val, 1), len(units) - 1)
        val += [it for i in order[:n_val] for it in units[i]]
        train += [it for i in order[n_val:] for it in units[i]]
    return train, val


@dataclass
class LoadedImage:
    image: torch.Tensor  # (3, H, W) float in [0, 1], smaller side >= the crop side
    label: int
    path: Path


def load_items(items: list[tuple[Path, int]], min_side: int, log=print) -> list[LoadedImage]:
    """Read every image; corrupt or unreadable files are reported and skipped, images with a
    side below ``min_side`` are upscaled (bilinear) so that a crop fits, with a note."""
    import torch.nn.functional as F

    loaded = []
    for path, label in items:
        try:
            img, _ = load_image(path)
        except UserError as e:
            log(f"skipped: {e}")
            continue
        h, w = img.shape[-2:]
        if min(h, w) < min_side:
            factor = min_side / min(h, w)
            size = (max(min_side, round(h * factor)), max(min_side, round(w * factor)))
            img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            log(f"note: {path} is {w}x{h}, upscaled to {size[1]}x{size[0]} for {min_side} px crops")
        loaded.append(LoadedImage(img, label, path))
    return loaded


class CropDataset(torch.utils.data.Dataset):
    """Random ``crop`` x ``crop`` views with random horizontal/vertical flips (training), or
    one centre crop per image (evaluation, ``train=False``).

    An epoch has ``repeats`` views per image. Items: (x (3, crop, crop) in [0, 1], label).
    """

    def __init__(self, images: list[LoadedImage], crop: int, train: bool, repeats: int = 1):
        self.images, self.crop, self.train, self.repeats = images, crop, train, repeats

    def __len__(self) -> int:
        return len(self.images) * (self.repeats if self.train else 1)

    def __getitem__(self, index: int):
        item = self.images[index % len(self.images)]
        img, c = item.image, self.crop
        h, w = img.shape[-2:]
        if self.train:
            y = int(torch.randint(0, h - c + 1, ()))
            x = int(torch.randint(0, w - c + 1, ()))
            img = img[:, y : y + c, x : x + c]
            if torch.rand(()) < 0.5:
                img = img.flip(2)
            if torch.rand(()) < 0.5:
                img = img.flip(1)
        else:
            y, x = (h - c) // 2, (w - c) // 2
            img = img[:, y : y + c, x : x + c]
        return img.contiguous(), item.label


def channel_stats(images: list[LoadedImage]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, shift) that standardise the collection: ``(x - mean) / std`` per RGB channel."""
    pixels = torch.cat([im.image.flatten(1) for im in images], 1)  # (3, N)
    mean, std = pixels.mean(1), pixels.std(1).clamp_min(1e-3)
    return tuple((1 / std).tolist()), tuple((-mean / std).tolist())
