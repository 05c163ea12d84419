"""Textures from a trained generator at any size, computed in blocks with a receptive-field halo.

Python API::

    model, meta = load_generator("runs/knit/final")
    img = generate(model, size=(1024, 2048), seed=3)              # (3, 1024, 2048) in [0, 1]
    write_texture(model, meta, "big.png", size=(16384, 16384), seed=3)  # bounded memory

Convention:
    Every value the network computes depends only on nearby noise, and noise is a function
    of (seed, scale, channel, y, x) (``models.noise``). A block of the output is therefore
    computed from the noise of its region grown by the receptive field, scale by scale:
    a 3x3 conv needs one more pixel on each side, the x2 upsampling half the region at the
    coarser scale. At image borders the same zero padding as in training is applied, so the
    blocks equal the whole-image forward (up to float rounding). ``seamless``: noise
    coordinates wrap around and no padding is applied anywhere: a periodic texture.
    An (H, W) output that is not a multiple of ``model.multiple`` is the top-left crop of
    the next larger multiple.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data.errors import UserError
from data.images import check_output_path
from data.sidecar import file_sha256
from engines.checkpoints import load_generator
from engines.png_writer import PngStream, write_sidecar
from models.generator import TextureGenerator
from models.noise import hash_noise

__all__ = ["generate", "load_generator", "render_bands", "write_texture"]

Region = tuple[int, int, int, int]  # (y0, y1, x0, x1) in pixels of one scale


def _grow(r: Region, n: int, size: tuple[int, int], seamless: bool) -> Region:
    y0, y1, x0, x1 = r[0] - n, r[1] + n, r[2] - n, r[3] + n
    if seamless:
        return y0, y1, x0, x1
    return max(y0, 0), min(y1, size[0]), max(x0, 0), min(x1, size[1])


def _crop(x: torch.Tensor, have: Region, want: Region) -> torch.Tensor:
    return x[..., want[0] - have[0] : want[1] - have[0], want[2] - have[2] : want[3] - have[2]]


def _apply(unit, x: torch.Tensor, r: Region, size, seamless: bool, mode: str):
    """One unit on region ``r``: pad only where ``r`` touches an image border."""
    if unit.kernel == 1:
        return unit(x, (0, 0, 0, 0), mode), r
    top, bottom = r[0] == 0 and not seamless, r[1] == size[0] and not seamless
    left, right = r[2] == 0 and not seamless, r[3] == size[1] and not seamless
    x = unit(x, (int(left), int(right), int(top), int(bottom)), mode)
    return x, (r[0] + (not top), r[1] - (not bottom), r[2] + (not left), r[3] - (not right))


def _features(model: TextureGenerator, i: int, want: Region, sizes, seed: int, seamless: bool):
    """(1, C_i, h, w) join-block output of scale i (0 = coarsest) over region ``want``."""
    size, block = sizes[i], model.join_blocks[i]
    need = _grow(want, sum(u.kernel == 3 for u in block), size, seamless)
    z_region = _grow(need, 1, size, seamless)
    rows = torch.arange(z_region[0], z_region[1]) % size[0]
    cols = torch.arange(z_region[2], z_region[3]) % size[1]
    device = model.to_rgb.weight.device
    z = hash_noise(seed, i, model.noise_channels, rows, cols, device)[None]
    z, zr = _apply(model.noise_units[i], z, z_region, size, seamless, model.padding)
    x = _crop(z, zr, need)
    if i > 0:
        coarse = (need[0] // 2, -(-need[1] // 2), need[2] // 2, -(-need[3] // 2))
        up = F.interpolate(_features(model, i - 1, coarse, sizes, seed, seamless), scale_factor=2.0)
        x = torch.cat([_crop(up, tuple(2 * c for c in coarse), need), x], 1)
    r = need
    for unit in block:
        x, r = _apply(unit, x, r, size, seamless, model.padding)
    return _crop(x, r, want)


def _virtual_size(model: TextureGenerator, size: tuple[int, int], seamless: bool) -> tuple[int, int]:
    m = model.multiple
    if seamless and (size[0] % m or size[1] % m):
        raise UserError(
            f"seamless output needs a size that is a multiple of {m} (this generator's coarsest "
            f"scale), e.g. {math.ceil(size[1] / m) * m}x{math.ceil(size[0] / m) * m}"
        )
    return math.ceil(size[0] / m) * m, math.ceil(size[1] / m) * m


@torch.inference_mode()
def render_bands(model, size, seed, seamless=False, block=1024, on_block=None):
    """Yield the texture as horizontal bands of ``block`` rows, top to bottom.

    Args:
        model: an eval-mode generator (``load_generator`` or ``fold_batchnorm``).
        size: (H, W) of the output, each >= 1.
        seed: the texture's seed.
        seamless: periodic output (wraps without a seam when tiled).
        block: side of the square blocks computed at once (memory ~ 0.5 KB x block^2).
        on_block: ``on_block(done, total)`` after each block.

    Yields:
        (3, h, W) float32 CPU tensors in [0, 1].
    """
    virtual = _virtual_size(model, size, seamless)
    k = model.scales
    sizes = [(virtual[0] >> (k - 1 - i), virtual[1] >> (k - 1 - i)) for i in range(k)]
    ys, xs = range(0, size[0], block), range(0, size[1], block)
    done = 0
    for y in ys:
        band = torch.empty(3, min(block, size[0] - y), size[1])
        for x in xs:
            region = (y, min(y + block, size[0]), x, min(x + block, size[1]))
            feats = _features(model, k - 1, region, sizes, seed, seamless)
            band[:, :, x : region[3]] = torch.sigmoid(model.to_rgb(feats))[0].float().cpu()
            done += 1
            if on_block is not None:
                on_block(done, len(ys) * len(xs))
        yield band


def prepare(model: TextureGenerator, device: str | torch.device = "cpu") -> TextureGenerator:
    """Eval mode on ``device``; channels-last on the CPU, where it makes convs ~2x faster."""
    model = model.eval().to(device)
    if torch.device(device).type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def generate(model, size, seed=0, seamless=False, block=1024) -> torch.Tensor:
    """The whole texture as one (3, H, W) float32 tensor in [0, 1] (12 bytes a pixel)."""
    return torch.cat(list(render_bands(model, size, seed, seamless, block)), 1)


def write_texture(
    model, meta, path, size, seed=0, seamless=False, bits=8, overwrite=False, block=1024, on_block=None
) -> dict:
    """Write a generated texture as PNG plus JSON sidecar, streaming bands (bounded memory).

    Args:
        model, meta: from ``load_generator``.
        path: ``.png`` output; refused if it exists and ``overwrite`` is false.
        size: (H, W).
        bits: 8 or 16.

    Returns:
        The sidecar dict that was written.
    """
    path = check_output_path(path, overwrite)
    levels, dtype = (255, np.uint8) if bits == 8 else (65535, np.uint16)
    start = time.perf_counter()
    with PngStream(path, size, bits) as png:
        for band in render_bands(model, size, seed, seamless, block, on_block):
            png.write(band.mul_(levels).round_().permute(1, 2, 0).numpy().astype(dtype))
    sidecar = {
        "mode": "generate",
        "checkpoint": meta["path"],
        "checkpoint_sha256": file_sha256(meta["path"]),
        "config": meta["config"],
        "training": meta["info"],
        "generator": meta["arch"],
        "seed": seed,
        "seamless": seamless,
        "size": {"height": size[0], "width": size[1]},
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_sidecar(path, sidecar)
    return sidecar
