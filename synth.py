"""Synthesize textures from one or more exemplar images.

\b
    python synth.py EXEMPLAR [EXEMPLAR ...] -o out.png [--config gatys2015] [--size 1024x512]
    python synth.py --mode generate --checkpoint runs/knit/final --size 4096x4096 -o big.png
    python synth.py knit.jpg --mode generate --checkpoint runs/knit/final -o refined.png
    python synth.py COLLECTION/ -o OUTDIR/   (batch: one output per image or class folder)
    python synth.py EXEMPLAR --remake TARGET.png -o out.png   (TARGET with EXEMPLAR's texture)

Modes: ``optimize`` (the pixels are optimised, no training: by default against the
exemplar's pixel patches, coarse to fine; with ``--objective features`` or a features preset
such as autocorr_pyramid, against a backbone's feature statistics by L-BFGS) and ``generate``
(one pass of a generator trained by train.py; its settings come from the checkpoint).
Every config field is an option; precedence is command line > --config preset/file >
defaults.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cli.console import first_interrupt_only, numbered, progress_bar
from cli.editing import (
    Anchor,
    Expand,
    FillStart,
    Maps,
    Mask,
    Remake,
    RemakeColours,
    RemakeWeight,
)
from cli.options import (
    ActivationNorm,
    AutocorrLayers,
    AutocorrShift,
    AutocorrWeight,
    Backbone,
    Coarsest,
    EvenLight,
    ExemplarTurns,
    ExemplarWraps,
    Layers,
    LayerWeights,
    MaxPatches,
    NearestIterations,
    Normalisation,
    Objective,
    Octaves,
    OctaveWeights,
    OptimizerName,
    Padding,
    PatchSize,
    Pooling,
    Precision,
    Progress,
    Projections,
    PyramidFactor,
    SpectrumProjection,
    SpectrumWeight,
    StartName,
    SwdLayers,
    SwdWeight,
    TvWeight,
    Weights,
    parse_objective_lists,
    plain_values,
)
from configs import DEFAULT_PRESET, SynthConfig, generate_config, preset_names, synth_config
from configs.editing import map_output, parse_maps, refuse_edits
from data.errors import UserError, run_cli
from data.images import check_output_path, save_image
from data.sidecar import reporting_write_errors
from data.sizes import parse_size

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


class Mode(str, Enum):
    optimize = "optimize"
    generate = "generate"


Opt = typer.Option


@app.command(help=__doc__)
def main(
    exemplars: Annotated[
        list[Path] | None,
        typer.Argument(help="Exemplar image(s), several are averaged; or a folder (batch)."),
    ] = None,
    output: Annotated[
        Path, Opt("--output", "-o", help="Output PNG path; a folder for a batch.")
    ] = Path("out.png"),
    batch: Annotated[
        bool, Opt(help="One output per exemplar, class folder or checkpoint, in folder -o.")
    ] = False,
    mode: Annotated[Mode, Opt(help="Synthesis engine.")] = Mode.optimize,
    checkpoint: Annotated[
        Path | None,
        Opt(help="Generator checkpoint (generate mode): OUTDIR/final or a .safetensors file."),
    ] = None,
    config: Annotated[
        str | None,
        Opt(
            help=f"Preset ({', '.join(preset_names(SynthConfig))}) or TOML file; "
            f"default {DEFAULT_PRESET['SynthConfig']}."
        ),
    ] = None,
    size: Annotated[str | None, Opt(help="Output size WxH (default: the exemplar's).")] = None,
    mask: Mask = None,  # editing (cli/editing.py)
    expand: Expand = None,
    anchor: Anchor = None,
    fill_start: FillStart = None,
    maps: Maps = None,
    remake: Remake = None,
    remake_weight: RemakeWeight = None,
    remake_colours: RemakeColours = None,
    backbone: Backbone = None,
    weights: Weights = None,
    layers: Layers = None,
    layer_weights: LayerWeights = None,
    octaves: Octaves = None,
    octave_weights: OctaveWeights = None,
    spectrum_weight: SpectrumWeight = None,
    tv_weight: TvWeight = None,
    normalisation: Normalisation = None,
    autocorr_layers: AutocorrLayers = None,
    autocorr_weight: AutocorrWeight = None,
    autocorr_shift: AutocorrShift = None,
    swd_layers: SwdLayers = None,
    swd_weight: SwdWeight = None,
    pooling: Pooling = None,
    padding: Padding = None,
    activation_norm: ActivationNorm = None,
    objective: Objective = None,
    iterations: Annotated[
        int | None, Opt(help="L-BFGS iterations per level; patches: Adam steps per fine scale.")
    ] = None,
    patch_size: PatchSize = None,
    projections: Projections = None,
    pyramid_factor: PyramidFactor = None,
    coarsest: Coarsest = None,
    coarse_iterations: Annotated[
        int | None, Opt(help="patches: Adam steps at the layout scales (the coarsest ones).")
    ] = None,
    final_fraction: Annotated[
        float | None,
        Opt(
            help="patches: Adam steps at full size as a fraction of --iterations; the fine "
            "scales ramp down to it (1: no ramp)."
        ),
    ] = None,
    lr: Annotated[float | None, Opt(help="patches: Adam learning rate.")] = None,
    max_patches: MaxPatches = None,
    nearest_iterations: NearestIterations = None,
    spectrum_projection: Annotated[
        SpectrumProjection | None,
        Opt(
            help="patches: project onto the exemplar's Fourier modulus at the layout scales "
            "before the nearest-patch projections (a lattice keeps one period and angle; not "
            "in repair, expand or remake); auto: where the exemplar's spectrum is a lattice's.",
        ),
    ] = None,
    exemplar_wraps: Annotated[
        ExemplarWraps | None,
        Opt(
            help="patches: the exemplar tiles, so its patches across the edges count too (not "
            "in repair or expand); auto: where its opposite edges join seamlessly.",
        ),
    ] = None,
    start: Annotated[
        StartName | None,
        Opt(
            help="patches: how the output starts: noise (grown coarse to fine) or blocks (the "
            "exemplar's blocks quilted, refined at full size; quilted to wrap with --tile); "
            "auto: blocks where the exemplar is a lattice or repeats itself (bricks, tiles, "
            "weaves, a knit's cable panel).",
        ),
    ] = None,
    even_light: Annotated[
        EvenLight | None,
        Opt(
            help="patches: divide out the exemplar's light (a highlight, a vignette: its blur "
            "over an eighth of its side) so that the output is evenly lit; auto: where the "
            "output starts from blocks and the light varies across it; never in repair, "
            "expand, remake or material stacks.",
        ),
    ] = None,
    exemplar_turns: Annotated[
        ExemplarTurns | None,
        Opt(
            help="patches: lay the output out from the exemplar's turned and mirrored copies "
            "too: fewer repeats in an output many times its size, more smeared elements "
            "(off by default); auto: where it looks the same turned and mirrored (cells, "
            "discs; not grain, rows or a light from one side); never in repair, expand, "
            "remake or material stacks.",
        ),
    ] = None,
    levels: Annotated[int | None, Opt(help="Coarse-to-fine levels (1 = single scale).")] = None,
    optimizer: Annotated[
        OptimizerName | None, Opt(help="L-BFGS variant (lbfgsb: box bounds, SciPy).")
    ] = None,
    history: Annotated[int | None, Opt(help="L-BFGS history size.")] = None,
    tile: Annotated[bool | None, Opt("--tile/--no-tile", help="Seamless, periodic output.")] = None,
    fit_lattice: Annotated[
        bool | None,
        Opt(
            "--fit-lattice/--no-fit-lattice",
            help="patches, --tile on a lattice: scale the exemplar by up to 5% so that a whole "
            "number of its periods fits the output (default on: no row of short bricks where "
            "the copies meet).",
        ),
    ] = None,
    seed: Annotated[int | None, Opt(help="Random seed (variation i uses seed + i).")] = None,
    variations: Annotated[int | None, Opt(help="Number of outputs (out_000.png, ...).")] = None,
    save_every: Annotated[
        int | None, Opt(help="Write a snapshot every K iterations (0 = off).")
    ] = None,
    bits: Annotated[int | None, Opt(help="Output PNG bit depth: 8 or 16.")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu | cuda | cuda:N.")] = None,
    precision: Precision = None,
    refine_steps: Annotated[
        int | None,
        Opt(
            help="generate: Adam steps of the patch engine at each scale of the refinement of "
            "each sample, against the exemplars given (default 100 with exemplars; 0: the "
            "sample as drawn).",
        ),
    ] = None,
    refine_scale: Annotated[
        float | None,
        Opt(
            help="generate: the pyramid scale the refinement starts at, the sample downscaled "
            "there (default 0.25: shapes redrawn, the sample sets where they go; 0.5 keeps more "
            "of its shapes; 1: full size only, faster, walls stay broken).",
        ),
    ] = None,
    overwrite: Annotated[bool, Opt(help="Replace existing output files.")] = False,
    progress: Progress = True,
) -> None:
    cli = plain_values(locals())
    with first_interrupt_only():
        run_cli(lambda: synthesize(cli))


def synthesize(cli: dict) -> None:
    from cli.batch import is_batch, run_batch  # docs/collections.md

    # 1. Resolve the config once: generate mode's from the command line (the rest comes from
    # the checkpoint); optimize mode's CLI > --config file (or the default preset) > defaults.
    generate = cli["mode"] == Mode.generate
    if generate:
        if cli["maps"]:
            raise UserError(
                "--map: generate mode writes the maps its checkpoint was trained with "
                "(train.py --map NAME=FILE); leave --map out"
            )
        refuse_edits(cli, "--mode generate")
        options = ("config", "layers", "octaves", "iterations")
        ignored = [k for k in options if cli[k]]
        if ignored:
            note = ", ".join(ignored)
            print(f"note: generate mode ignores {note}; settings come from the checkpoint")
        checkpoint = None if cli["checkpoint"] is None else str(cli["checkpoint"])
        cfg = generate_config({**cli, "checkpoint": checkpoint})
    else:
        for flag in ("refine_steps", "refine_scale"):
            if cli[flag] is not None:
                name = "--" + flag.replace("_", "-")
                raise UserError(f"{name}: only --mode generate refines a generator's sample")
        parse_objective_lists(cli)
        cfg = synth_config(cli["config"], cli)
    output, overwrite, progress = Path(cli["output"]), cli["overwrite"], cli["progress"]
    exemplars = [Path(p) for p in cli["exemplars"] or []]
    if is_batch(generate, exemplars, output, cfg, cli["batch"]):
        refuse_edits(cli, "a batch (one image is edited at a time)")
        if generate and (exemplars or cfg.refine_steps or cfg.refine_scale):
            raise UserError("a batch of checkpoints is not refined; give one checkpoint")
        fit = cli["octaves"] is None
        return run_batch(cfg, exemplars, output, overwrite, progress, fit_octaves=fit)
    if generate:
        from cli.generate import run_generate

        return run_generate(cfg, output, overwrite, progress, exemplars)
    if not exemplars:
        raise UserError("give at least one exemplar image")
    optimize(cfg, exemplars, output, overwrite, progress, fit_octaves=cli["octaves"] is None)


def optimize(cfg: SynthConfig, exemplars, output: Path, overwrite, progress, fit_octaves) -> None:
    from optimize.engine import make_synthesizer  # torch import after argument parsing

    # 2. Check every output path before any long computation.
    size = parse_size(cfg.size) if cfg.size else None
    outputs = [numbered(output, i, cfg.variations) for i in range(cfg.variations)]
    for path in outputs:
        for each in [path, *(map_output(path, name) for name in parse_maps(cfg.maps))]:
            check_output_path(each, overwrite)
        snapshots = path.with_name(f"{path.stem}_snapshots")
        if cfg.save_every and snapshots.exists() and not snapshots.is_dir():
            raise UserError(f"{snapshots}: is a file, where --save-every writes its snapshots")

    # 3. Load exemplars, build backbone and targets once.
    for path in exemplars:
        if not path.exists():
            raise UserError(f"exemplar not found: {path}")
    synth = make_synthesizer(exemplars, cfg, fit_octaves=fit_octaves)
    cfg = synth.config
    print(synth.describe())

    # 4. Refuse a run that cannot fit in memory, before it allocates (cli/memory.py).
    from cli.memory import check_fits, optimize_advice, optimize_estimate

    out_size = size or synth.default_size()
    check_fits(optimize_estimate(synth, out_size), synth.device, optimize_advice(cfg))

    # 5. Optimize each variation, with progress, snapshots and Ctrl-C saving.
    steps = synth.level_iterations(out_size)
    for i, path in enumerate(outputs):
        seed = cfg.seed + i
        with progress_bar(progress) as bar:
            on_iter = level_progress(bar, path, steps, cfg.save_every, cfg.bits)
            result = synth.synthesize(size=size, seed=seed, on_iter=on_iter)
        synth.save(result, path, seed=seed, overwrite=overwrite)
        terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items() if "/" not in k)
        print(f"wrote {path} ({result.iterations} iterations, {result.seconds:.1f} s; {terms})")
        if result.interrupted:
            coarse = ""
            if result.stopped_at:
                h, w = result.stopped_at
                coarse = f", upsampled from the {w}x{h} level it had reached"
            print(f"interrupted: saved the image reached so far{coarse}")
            raise SystemExit(130)
        if result.diverged:
            raise UserError(f"{result.diverged}; {path} holds the last finite image")


def level_progress(bar, path: Path, steps: list[int], save_every: int, bits: int):
    """``on_iter(level, it, x, loss)``: one progress task a level, and a snapshot PNG every
    ``save_every`` iterations in ``<stem>_snapshots/``."""
    tasks = {}

    def on_iter(level, it, x, loss):
        if level not in tasks:
            name = path.name if len(steps) == 1 else f"{path.name} level {level + 1}/{len(steps)}"
            tasks[level] = bar.add_task(name, total=steps[level], loss=None)
        bar.update(tasks[level], completed=it, loss=loss)
        if save_every and it % save_every == 0:
            snap = path.with_name(f"{path.stem}_snapshots") / f"level{level}_iter{it:05d}.png"
            with reporting_write_errors(snap.parent):
                snap.parent.mkdir(exist_ok=True)
            save_image(x[0], snap, bits=bits, overwrite=True)

    return on_iter


if __name__ == "__main__":
    app()
