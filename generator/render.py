"""Textures from a trained generator at any size, computed in blocks with a receptive-field halo.

Python API::

    model, meta = load_generator("runs/knit/final")
    img = generate(model, size=(1024, 2048), seed=3)              # (3, 1024, 2048) in [0, 1]
    write_texture(model, meta, "big.png", size=(16384, 16384), seed=3)  # bounded memory

A material stack's generator (``train.py --map``) renders every map in the same pass: its
output channels are the stack's (``data.stacks``), and ``write_texture`` streams each map to
its own PNG (big.png, big_normal.png, ...), so the maps stay aligned pixel for pixel.

Convention:
    The generator is trained on periodic canvases (circular padding everywhere), so it is a
    local operator on an infinite periodic plane of noise, and noise is a function of
    (seed, scale, channel, y, x) with coordinates taken modulo the canvas (``models.noise``).
    A block of the output is computed, without any padding, from the noise of its region
    grown by the receptive field scale by scale (a 3x3 conv needs one more pixel a side, the
    x2 upsampling half the region at the coarser scale): blocks equal the whole-canvas
    forward up to float rounding (~1e-7). The canvas is the output size rounded up to a
    multiple of ``model.multiple`` and the output is its top-left crop; a ``seamless``
    output is a whole canvas, so it tiles without a seam.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.nn.functional as F

from data.errors import UserError
from data.images import PngStream, check_output_path, quantise
from data.sidecar import file_sha256
from data.stacks import ALBEDO, split_stack, stack_outputs
from generator.checkpoints import load_generator
from generator.layout import layout_bands
from models.generator import TextureGenerator
from models.layout import LayoutPainter
from models.noise import hash_noise

__all__ = ["generate", "load_generator", "render_bands", "render_region", "write_texture"]

Region = tuple[int, int, int, int]  # (y0, y1, x0, x1) in pixels of one scale
BLOCK = 1024  # side of the square blocks computed at once (~1 GB peak for `small`)


def _grow(r: Region, n: int) -> Region:
    return r[0] - n, r[1] + n, r[2] - n, r[3] + n


def _crop(x: torch.Tensor, have: Region, want: Region) -> torch.Tensor:
    return x[..., want[0] - have[0] : want[1] - have[0], want[2] - have[2] : want[3] - have[2]]


def _features(model: TextureGenerator, i: int, want: Region, sizes, seed: int) -> torch.Tensor:
    """(1, C_i, h, w) join-block output of scale i (0 = coarsest) over region ``want``."""
    block = model.join_blocks[i]
    need = _grow(want, sum(u.kernel == 3 for u in block))  # each unpadded 3x3 trims 1 px a side
    rows = torch.arange(need[0] - 1, need[1] + 1) % sizes[i][0]  # noise wraps: a periodic canvas
    cols = torch.arange(need[2] - 1, need[3] + 1) % sizes[i][1]
    device = model.to_rgb.weight.device
    z = hash_noise(seed, i, model.noise_channels, rows, cols, device)[None]
    x = model.noise_units[i](z, wrap=False)  # region ``need``
    if i > 0:
        coarse = (need[0] // 2, -(-need[1] // 2), need[2] // 2, -(-need[3] // 2))
        up = F.interpolate(_features(model, i - 1, coarse, sizes, seed), scale_factor=2.0)
        x = torch.cat([_crop(up, tuple(2 * c for c in coarse), need), x], 1)
    for unit in block:
        x = unit(x, wrap=False)
    return x  # region ``want``


def canvas_size(model: TextureGenerator, size: tuple[int, int], seamless: bool) -> tuple[int, int]:
    """The periodic canvas an (H, W) output is the top-left crop of: the next multiple of
    ``model.multiple``; a seamless output must be a whole canvas."""
    m = model.multiple
    canvas = (math.ceil(size[0] / m) * m, math.ceil(size[1] / m) * m)
    if seamless and canvas != tuple(size):
        raise UserError(
            f"seamless output needs a size that is a multiple of {m} (this generator's coarsest "
            f"scale), e.g. {canvas[1]}x{canvas[0]}"
        )
    return canvas


def scale_sizes(model: TextureGenerator, canvas: tuple[int, int]) -> list[tuple[int, int]]:
    """(H_i, W_i) of every scale, coarsest first, for a canvas of (H, W)."""
    k = model.scales
    return [(canvas[0] >> (k - 1 - i), canvas[1] >> (k - 1 - i)) for i in range(k)]


@torch.inference_mode()
def render_region(
    model, region: Region, canvas: tuple[int, int], seed: int, precision: str = "fp32"
) -> torch.Tensor:
    """(1, C, y1 - y0, x1 - x0) texture (C = ``model.out_channels``) over ``region`` =
    (y0, y1, x0, x1) of the periodic ``canvas`` (any integers: the texture repeats with the
    canvas size). ``precision`` "bf16": the layers before the output's 1x1 convolution run
    under bf16 autocast; that one stays fp32, since bf16's 8-bit mantissa near 1 would
    round the output to whole 8-bit levels."""
    sizes = scale_sizes(model, canvas)
    device = model.to_rgb.weight.device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        features = _features(model, model.scales - 1, region, sizes, seed)
    return model.rgb(features.float())


@torch.inference_mode()
def render_bands(model, size, seed, seamless=False, block=BLOCK, on_block=None, precision="fp32"):
    """Yield the texture as horizontal bands of ``block`` rows, top to bottom.

    Args:
        model: an eval-mode generator (``load_generator`` or ``fold_batchnorm``).
        size: (H, W) of the output, each >= 1.
        seed: the texture's seed.
        seamless: periodic output (wraps without a seam when tiled).
        block: side of the square blocks computed at once (1024: ~1 GB peak for `small`).
        on_block: ``on_block(done, total)`` after each block.
        precision: "fp32", or "bf16": the generator's layers under bf16 autocast
            (``render_region``; about 2x faster on a CPU with AVX-512 BF16).

    Yields:
        (C, h, W) float32 CPU tensors in [0, 1], C = ``model.out_channels``.
    """
    if isinstance(model, LayoutPainter):  # a painter of quilted layouts (generator.layout)
        yield from layout_bands(model, size, seed, seamless, block, on_block, precision)
        return
    canvas = canvas_size(model, size, seamless)
    ys, xs = range(0, size[0], block), range(0, size[1], block)
    done = 0
    for y in ys:
        band = torch.empty(model.out_channels, min(block, size[0] - y), size[1])
        for x in xs:
            region = (y, min(y + block, size[0]), x, min(x + block, size[1]))
            texture = render_region(model, region, canvas, seed, precision)
            band[:, :, x : region[3]] = texture[0].cpu()
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


def generate(model, size, seed=0, seamless=False, block=BLOCK, precision="fp32") -> torch.Tensor:
    """The whole texture as one (C, H, W) float32 tensor in [0, 1] (4 C bytes a pixel)."""
    return torch.cat(list(render_bands(model, size, seed, seamless, block, None, precision)), 1)


def write_texture(
    model,
    meta,
    path,
    size,
    seed=0,
    seamless=False,
    bits=8,
    overwrite=False,
    block=BLOCK,
    on_block=None,
    precision="fp32",
) -> dict:
    """Write a generated texture as PNG plus JSON sidecar, streaming bands (bounded memory).

    A material stack's checkpoint (``meta["info"]["stack"]``) writes each map beside ``path``
    (``data.stacks.stack_outputs``) from the same bands, a map read from a 16-bit file at 16
    bits; each sidecar names its map and lists them all.

    Args:
        model, meta: from ``load_generator``.
        path: ``.png`` output; refused if it (or a map's file) exists and ``overwrite`` is false.
        size: (H, W).
        bits: 8 or 16 (at least; a 16-bit map stays 16-bit).
        precision: "fp32" or "bf16" (``render_bands``).

    Returns:
        The sidecar dict written beside ``path``.
    """
    layout = meta["info"].get("stack") or [{"name": ALBEDO, "channels": 3, "bits": 8}]
    paths = {
        n: check_output_path(p, overwrite) for n, p in stack_outputs(Path(path), layout).items()
    }
    depth = {m["name"]: max(bits, m["bits"]) for m in layout}
    start = time.perf_counter()
    with ExitStack() as files:
        pngs = {
            m["name"]: files.enter_context(
                PngStream(paths[m["name"]], size, depth[m["name"]], channels=m["channels"])
            )
            for m in layout
        }
        for band in render_bands(model, size, seed, seamless, block, on_block, precision):
            for name, chunk in split_stack(band, layout).items():
                pngs[name].write(quantise(chunk, depth[name]))
        sidecar = {
            "mode": "generate",
            "checkpoint": meta["path"],
            "checkpoint_sha256": file_sha256(meta["path"]),
            "config": meta["config"],
            "training": meta["info"],
            "generator": meta["arch"],
            "seed": seed,
            "seamless": seamless,
            "precision": precision,
            "size": {"height": size[0], "width": size[1]},
            "seconds": round(time.perf_counter() - start, 3),
        }
        for name, png in pngs.items():
            stack = {"map": name, "bits": depth[name], "maps": layout} if len(layout) > 1 else {}
            png.sidecar = {**sidecar, **stack}
    return pngs[ALBEDO].sidecar
