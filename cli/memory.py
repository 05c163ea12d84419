"""Peak-memory estimates of a synthesis run, checked before it allocates (issue 15, item 4).

An estimate is the memory the process holds now (exemplars loaded, backbone built) plus what
the run will add at its largest step, from the run's sizes:

- patches (optimize): at the finest scale, the projections of the output's sampled patches
  on ``projections`` directions (float32) and their gradients, those of every exemplar patch
  on a chunk of directions with their sorted copy, and Adam's state of the canvas;
- features (optimize): the backbone's activations of the output at every octave (kept for
  the backward pass, plus the gradients flowing back), measured per pixel by running the
  backbone once on a small image; and L-BFGS-B's float64 work arrays (``2 history + 9``
  copies of the image);
- generate: one block of the generator's activations and one band of rows.

Each term is multiplied by a factor calibrated against the peak resident memory of real runs
(docs/decisions.md, 2026-12-02 session 5): the estimates came within 1.05-1.47x of what the
runs added. The available memory is the smaller of /proc/meminfo's MemAvailable and the
cgroup's limit less its usage (a container's limit is what kills it); on CUDA, the free
device memory.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import torch

from data.errors import UserError

FLOAT32, FLOAT64 = 4, 8
# Calibration: measured peak RSS less the RSS before the run, over the modelled bytes, on this
# project's CPU machine (docs/decisions.md, 2026-12-02 session 5), rounded up.
PATCH_FACTOR = 3.0  # output projections: forward output, its gradient, sorting buffers
EXEMPLAR_FACTOR = 4.0  # exemplar projections: output, im2col buffer, concatenated and sorted copies
CANVAS_BYTES = 128  # a canvas pixel: image, gradient, Adam's moments, upsampling (54-309 measured)
PATCH_WORKSPACE = 550 * 2**20  # added by a patch run whatever its sizes (banks, kernels, allocator)
FEATURE_FACTOR = 1.75  # activations kept for backward, their gradients, autograd temporaries
GENERATE_FACTOR = 0.5  # one block: inference frees each layer's output, a sum over layers does not
BAND_COPIES = 3  # float copies of a band alive at once while it becomes PNG rows


def gib(n: float) -> str:
    """Bytes in GiB, or MiB below one GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc/self/status VmRSS; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cgroup_room() -> int | None:
    """The cgroup's memory limit less its usage (v2, then v1), or None without a limit."""
    for limit_file, usage_file in [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**62:  # v1 writes a huge number for "no limit"
            return int(limit) - usage
    return None


def available_bytes(device: torch.device) -> tuple[int, str] | None:
    """(bytes this run may still allocate, where that figure comes from), or None if the
    platform does not say (then nothing is refused)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {device}"
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except OSError:
        pass
    room = _cgroup_room()
    if room is not None:
        found.append((room, "the cgroup's limit less its usage"))
    return min(found) if found else None


def check_fits(needed: int, device: torch.device, advice: str) -> None:
    """Refuse a run whose estimated peak ``needed`` (bytes, on top of what the process holds
    now) exceeds the memory available on ``device``, with the figures and ``advice``."""
    room = available_bytes(device)
    if room is not None and needed > room[0]:
        raise UserError(
            f"this run needs about {gib(needed)} more memory than it holds now, and "
            f"{gib(room[0])} is available ({room[1]}); {advice}"
        )


def activation_bytes_per_pixel(module: torch.nn.Module, run, side: int) -> float:
    """Bytes of the outputs of every leaf module of ``module`` while ``run(side)`` runs (an
    input of ``side`` x ``side`` px), per input pixel."""
    total = [0]

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            run(side)
    finally:
        for h in handles:
            h.remove()
    return total[0] / side**2


def patches_estimate(
    cfg, exemplar_sides: list[tuple[int, int]], size: tuple[int, int], channels: int = 3
) -> int:
    """Bytes a patch-pyramid run adds at its finest scale (see the module docstring).

    Args:
        cfg: a SynthConfig with the patch fields.
        exemplar_sides: (H, W) of every exemplar.
        size: (H, W) of the output.
        channels: of the images (3; more for a material stack, optimize/stacks.py).
    """
    from losses.patches import QUANTILE_PATCHES, exemplar_quantiles

    p = cfg.patch_size
    margin = 0 if cfg.tile else 2 * (p - 1)
    height, width = size[0] + margin, size[1] + margin
    # The output's patches on the strided grid of losses.patches.project_sampled_patches.
    rows, cols = (height, width) if cfg.tile else (height - p + 1, width - p + 1)
    stride = max(1, min(p, math.isqrt(rows * cols // (cfg.max_patches or rows * cols))))
    patches = math.ceil(rows / stride) * math.ceil(cols / stride)
    ours = PATCH_FACTOR * cfg.projections * patches * FLOAT32
    # Every exemplar patch (at most a sample of QUANTILE_PATCHES, held whole), projected a
    # chunk of directions at a time and sorted.
    chunk = inspect.signature(exemplar_quantiles).parameters["chunk"].default
    counted = sum(h * w for h, w in exemplar_sides)
    sample = channels * p * p * QUANTILE_PATCHES * FLOAT32 if counted > QUANTILE_PATCHES else 0
    theirs = EXEMPLAR_FACTOR * chunk * min(counted, QUANTILE_PATCHES) * FLOAT32 + sample
    nearest = nearest_bytes(cfg, exemplar_sides, (height, width), channels)
    canvas = CANVAS_BYTES * channels / 3 * height * width
    return int(ours + theirs + nearest + canvas + PATCH_WORKSPACE)


def nearest_bytes(
    cfg, exemplar_sides: list[tuple[int, int]], canvas: tuple[int, int], channels: int = 3
) -> float:
    """Bytes of the nearest-patch projections (``losses.nearest``) at the scale that needs
    most: the finest one, or the finest with large patches (``optimize.patches.LARGE_SPAN``).
    The exemplar patches, the output's grid patches and their matches, and blocks of
    distances (each with its temporaries)."""
    from losses.nearest import DISTANCES, NEAREST_STRIDE
    from optimize.patches import LARGE_SPAN, NEAREST_KEYS, large_patches

    if not cfg.nearest_iterations:
        return 0.0
    short = min(min(side) for side in exemplar_sides)
    area = {cfg.patch_size: 1.0, max(large_patches(cfg.patch_size)): 1.0}
    area[max(area)] = min(0.25, (LARGE_SPAN * cfg.coarsest / short) ** 2)
    theirs = sum(h * w for h, w in exemplar_sides)
    ours = canvas[0] * canvas[1] / NEAREST_STRIDE**2
    # a search holds at most NEAREST_KEYS exemplar patches
    need = max(
        2 * channels * q * q * (min(theirs * a, NEAREST_KEYS) + ours * a) for q, a in area.items()
    )
    return (need + 3 * DISTANCES) * FLOAT32


def features_estimate(synth, size: tuple[int, int]) -> int:
    """Bytes a features-objective run (``optimize.features.TextureSynthesizer``) adds."""
    cfg, backbone = synth.config, synth.backbone
    side = max(64, backbone.min_input_size())

    def run(s):
        backbone(torch.zeros(1, 3, s, s, device=synth.device))

    per_pixel = activation_bytes_per_pixel(backbone, run, side)
    octaves = sum(4.0**-k for k in range(cfg.octaves))
    pixels = size[0] * size[1]
    activations = FEATURE_FACTOR * per_pixel * octaves * pixels
    lbfgs = (2 * cfg.history + 9) * 3 * pixels * FLOAT64
    return int(activations + lbfgs)


def optimize_estimate(synth, size: tuple[int, int]) -> int:
    """Bytes the per-image engine ``synth`` adds to make an (H, W) output."""
    from optimize.editing import PatchEditor

    if synth.config.objective == "patches":
        sides = [tuple(u.shape[-2:]) for u in synth.exemplars]
        channels = len(synth.exemplars[0])
        editor = isinstance(synth, PatchEditor)
        size = synth.window_size() if editor else size  # it synthesises around the hole
        need = patches_estimate(synth.config, sides, size, channels)
        if editor:
            need += boundary_bytes(synth.config, sides, channels)
        return need
    return features_estimate(synth, size)


def boundary_bytes(cfg, exemplar_sides: list[tuple[int, int]], channels: int = 3) -> int:
    """Bytes of an editor's boundary pass (``losses.nearest.project_boundary``): its exact
    search holds the exemplar patches (at most ``NEAREST_KEYS``) and their squares."""
    from optimize.patches import NEAREST_KEYS

    keys = min(NEAREST_KEYS, sum(h * w for h, w in exemplar_sides))
    return 2 * keys * channels * cfg.patch_size**2 * FLOAT32


def optimize_advice(cfg) -> str:
    if cfg.objective == "patches":
        return (
            "give a smaller --size or downscale the exemplar, or train a generator "
            "(train.py) and use --mode generate, which works in blocks"
        )
    return (
        "give a smaller --size, fewer --octaves, a smaller --history, shallower --layers, "
        "or train a generator (train.py) and use --mode generate, which works in blocks"
    )


def generate_estimate(model, size: tuple[int, int], block: int, bits: int) -> int:
    """Bytes ``generator.render.write_texture`` adds: one block, one band of rows."""
    from generator.layout import paint_region
    from generator.render import render_region
    from models.layout import LayoutPainter

    side = 2 * model.multiple

    def run(s):
        render_region(model, (0, s, 0, s), (s, s), 0)

    if isinstance(model, LayoutPainter):  # its halo is large beside 2 factors: a wider region
        side = 64 * model.factor

        def run(s):
            n = s // model.factor
            layout = model.source.new_zeros(model.out_channels, n, n)
            paint_region(model, layout, (0, n, 0, n), 0, False)

    per_pixel = activation_bytes_per_pixel(model, run, side)
    rows = min(block, size[0])
    blocks = GENERATE_FACTOR * per_pixel * rows * min(block, size[1])
    channels = model.out_channels  # 3, or a material stack's
    band = (BAND_COPIES * FLOAT32 + bits // 8) * channels * rows * size[1]
    return int(blocks + band)
