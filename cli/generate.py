"""``synth.py --mode generate``: textures from a trained generator, each variation streamed to
a PNG with its sidecar. The objective and architecture come from the checkpoint. Given
exemplars, each sample is refined by the patch engine from the middle of its pyramid
(``refine_scale``) to full size, ``refine_steps`` Adam steps at each scale."""

from __future__ import annotations

from pathlib import Path

import torch

from cli.console import numbered, progress_bar
from configs import GenerateConfig
from data.errors import UserError
from data.images import check_output_path, save_image
from data.sidecar import file_sha256
from data.sizes import parse_size
from data.stacks import stack_outputs

# Adam steps of a refinement at each of its scales by default: at full size only, honeycomb's
# patch generator at 1024 px went from structure 2.76 and score 1.17 to 1.84 and 0.87 in 60 s
# (docs/decisions.md, session 15); entered at 0.56 (``GenerateConfig.refine_scale``), the
# features-and-patches generator's samples at 512 px from 2.39-3.04 to 1.34-1.59, against
# 1.71-2.31 at full size only (session 25).
REFINE_STEPS = 100
# Where a refinement enters the pyramid by default: from 0.32 (the first scale >= 0.25) the
# engine redraws shapes larger than a 7 px patch at 0.56 spans: red_dots' blobs became round
# discs (structure 2.14-2.33 -> 1.78-2.20 over four samples of two generators), knit 1.87 ->
# 1.73 (session 26). The sample then sets little more than where things are.
REFINE_SCALE = 0.25


def run_generate(
    cfg: GenerateConfig, output: Path, overwrite: bool, progress: bool, exemplars=()
) -> None:
    """Check everything, then write each variation (seed + i) with progress; with
    ``exemplars`` (paths), each sample refined against them (``refine_steps``)."""
    from cli.memory import check_fits, generate_estimate
    from generator.checkpoints import load_generator
    from generator.render import BLOCK, canvas_size, generate, prepare, write_texture
    from models.devices import resolve_device, resolve_precision

    # 1. The checkpoint and the sizes it allows.
    if cfg.checkpoint is None:
        raise UserError("--mode generate needs --checkpoint OUTDIR/final (made by train.py)")
    model, meta = load_generator(cfg.checkpoint)
    image_size = meta["config"]["image_size"]
    size = parse_size(cfg.size) if cfg.size else (image_size, image_size)
    seamless = meta["config"]["tile"] if cfg.tile is None else cfg.tile
    canvas_size(model, size, seamless)
    steps = cfg.refine_steps if cfg.refine_steps is not None else REFINE_STEPS * bool(exemplars)
    for flag, given in (("--refine-steps", steps), ("--refine-scale", cfg.refine_scale)):
        if given and not exemplars:
            raise UserError(
                f"{flag}: give the exemplar(s) to refine against "
                "(synth.py EXEMPLAR --mode generate --checkpoint ...)"
            )
    if exemplars and not steps:
        print("note: --refine-steps 0: the exemplars are not used")

    # 2. Every output path before any computation (a material stack's maps too).
    outputs = [numbered(Path(output), i, cfg.variations) for i in range(cfg.variations)]
    layout = meta["info"].get("stack") or []
    if steps and layout:
        raise UserError("--refine-steps: a material stack's checkpoint is not refined; give 0")
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
    # (Or, with exemplars, each whole sample refined by the patch engine from the middle of
    # its pyramid: the sample's layout, the exemplar's cells and grain.)
    if steps:
        engine = _refiner(exemplars, cfg, size, seamless, device)
        for i, path in enumerate(outputs):
            sample = generate(model, size, cfg.seed + i, seamless, precision=precision)
            _write_refined(engine, sample, meta, path, cfg, i, steps, overwrite, progress)
        return
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


def _refiner(exemplars, cfg: GenerateConfig, size: tuple[int, int], seamless: bool, device: str):
    """The default patch engine on ``exemplars``, with the output's tiling and bit depth,
    if an output of ``size`` (H, W) fits in memory."""
    from cli.memory import check_fits, optimize_advice, optimize_estimate
    from configs import synth_config
    from optimize.patches import PatchSynthesizer

    # the generator's sample is the start (no quilted blocks), drawn in the exemplars' own
    # light, which the generator learned: kept
    values = {"tile": seamless, "bits": cfg.bits, "device": str(device), "seed": cfg.seed,
              "start": "noise", "even_light": "off", "exemplar_turns": "off"}  # fmt: skip
    engine = PatchSynthesizer(exemplars, synth_config(None, values))
    if min(size) < engine.config.patch_size:
        raise UserError(f"output {size[1]}x{size[0]} is smaller than one patch")
    check_fits(optimize_estimate(engine, size), engine.device, optimize_advice(engine.config))
    return engine


def _write_refined(engine, sample, meta, path, cfg: GenerateConfig, i, steps, overwrite, progress):
    """Refine ``sample`` (3, H, W) from ``cfg.refine_scale`` to full size, ``steps`` Adam
    steps at each scale, write it and its sidecar (the engine's, with the checkpoint's);
    Ctrl-C writes the image reached."""
    seed = cfg.seed + i
    scale = cfg.refine_scale if cfg.refine_scale is not None else REFINE_SCALE
    levels = engine.levels_from(scale)
    with progress_bar(progress) as bar:
        task = bar.add_task(f"{path.name} refine", total=steps * len(levels), loss=None)
        done = lambda level, it, x, loss: bar.update(  # noqa: E731
            task, completed=(level - levels[0]) * steps + it, loss=loss
        )
        result = engine.synthesize(
            seed=seed, iterations=steps, init=sample, on_iter=done, init_scale=scale
        )
    sidecar = engine.metadata(result, seed)
    sidecar.update(
        mode="generate",
        checkpoint=meta["path"],
        checkpoint_sha256=file_sha256(meta["path"]),
        generator=meta["arch"],
        refine_steps=steps,
        refine_scale=scale,
        refine_scales=[round(engine.scales[k], 4) for k in levels],
    )
    save_image(result.image[0], path, bits=engine.config.bits, overwrite=overwrite, sidecar=sidecar)
    print(f"wrote {path} (sample refined {result.iterations} steps, {result.seconds:.1f} s)")
    if result.interrupted:
        print("interrupted: saved the image reached so far")
        raise SystemExit(130)
