"""``synth.py --mode generate``: textures from a trained generator, each variation streamed to
a PNG with its sidecar. The objective and architecture come from the checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from cli.console import numbered, progress_bar
from configs import GenerateConfig
from data.errors import UserError
from data.images import check_output_path
from data.sizes import parse_size
from data.stacks import stack_outputs


def run_generate(cfg: GenerateConfig, output: Path, overwrite: bool, progress: bool) -> None:
    """Check everything, then write each variation (seed + i) with progress."""
    from cli.memory import check_fits, generate_estimate
    from generator.checkpoints import load_generator
    from generator.render import BLOCK, canvas_size, prepare, write_texture
    from models.devices import resolve_device, resolve_precision

    # 1. The checkpoint and the sizes it allows.
    if cfg.checkpoint is None:
        raise UserError("--mode generate needs --checkpoint OUTDIR/final (made by train.py)")
    model, meta = load_generator(cfg.checkpoint)
    image_size = meta["config"]["image_size"]
    size = parse_size(cfg.size) if cfg.size else (image_size, image_size)
    seamless = meta["config"]["tile"] if cfg.tile is None else cfg.tile
    canvas_size(model, size, seamless)

    # 2. Every output path before any computation (a material stack's maps too).
    outputs = [numbered(Path(output), i, cfg.variations) for i in range(cfg.variations)]
    layout = meta["info"].get("stack") or []
    for path in outputs:
        for each in [path, *stack_outputs(path, layout).values()]:
            check_output_path(each, overwrite)

    # 3. One streamed pass per variation (seed + i), blocks of BLOCK px with their halo, if
    # one block and one band of rows fit in memory.
    device = resolve_device(cfg.device)
    model = prepare(model, device)
    precision, why = resolve_precision(cfg.precision, torch.device(device))
    if cfg.precision != "fp32":
        print(f"precision: {precision} ({why})")
    advice = f"give a narrower --size (one band of {BLOCK} rows is held at a time)"
    check_fits(generate_estimate(model, size, BLOCK, cfg.bits), device, advice)
    with progress_bar(progress, loss=False) as bar:
        for i, path in enumerate(outputs):
            task = bar.add_task(path.name, total=None)
            on_block = lambda done, total, task=task: bar.update(task, completed=done, total=total)  # noqa: E731
            seed = cfg.seed + i
            info = write_texture(
                model, meta, path, size, seed, seamless, cfg.bits, overwrite,
                on_block=on_block, precision=precision,
            )  # fmt: skip
            maps = f"; maps {', '.join(m['name'] for m in layout[1:])}" if layout else ""
            bar.console.print(
                f"wrote {path} ({size[1]}x{size[0]}, seed {seed}, {info['seconds']:.1f} s{maps})"
            )
