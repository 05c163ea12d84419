"""Train a network that makes textures of an exemplar, then render them at any size.

\b
    python train.py EXEMPLAR --output-dir runs/knit                    # a painter, 3-6 min
    python train.py EXEMPLAR [EXEMPLAR ...] --output-dir runs/g --config generator
    accelerate launch train.py EXEMPLAR --output-dir runs/knit --mixed-precision bf16

With one exemplar the default (the painter preset, --layout 2) is a painter of the exemplar's
own quilted layout: generate mode quilts the photo's blocks at 1/2 of the output's size and the
painter paints them to full size, which keeps discs, cells and rows (docs/generator.md). With
several exemplars, --layout 0, or an option only it reads (--objective, --octaves, --crop,
--adversarial-weight, ...) it is a multi-scale generator of noise (the generator preset) trained
on the optimize mode's texture objective (Gram pyramid + spectrum + TV): coarse octaves see each
generated image whole, finer ones random --crop views; --adversarial-weight adds a multi-scale
patch discriminator's term. Writes OUTDIR/checkpoint-{step}/ (continue with --resume latest),
OUTDIR/final/, OUTDIR/best/ and TensorBoard logs in OUTDIR/logs. Then:

\b
    python synth.py --mode generate --checkpoint OUTDIR/final --size 4096x4096 -o big.png

--map NAME=FILE (repeatable) trains on a material stack: the exemplar is the albedo and each
map (normal, height, roughness, ... of its size) becomes more output channels, rendered
together and written as OUT_NAME.png (docs/generator.md, "Material stacks").

Every config field is an option; precedence is command line > --config preset/file > defaults.

--task backbone trains a VGG-style classifier on DATASET/CLASS/images instead and writes a
backbone for --backbone OUTDIR/final (docs/collections.md):

    python train.py --task backbone DATASET --output-dir runs/bb --arch vgg19-tiny --steps 1000
"""

from __future__ import annotations

import dataclasses
import functools
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cli.console import progress_bar
from cli.options import (
    ActivationNorm,
    ArchName,
    AutocorrLayers,
    AutocorrShift,
    AutocorrWeight,
    Backbone,
    Coarsest,
    EvenLight,
    ExemplarWraps,
    GeneratorName,
    Layers,
    LayerWeights,
    MaxPatches,
    MixedPrecisionName,
    Normalisation,
    Objective,
    Octaves,
    OctaveWeights,
    OutputName,
    Padding,
    PatchSize,
    Pooling,
    Progress,
    Projections,
    PyramidFactor,
    ScheduleName,
    SpectrumWeight,
    SwdLayers,
    SwdWeight,
    TvWeight,
    Weights,
    parse_objective_lists,
    plain_values,
)
from configs import TrainConfig, preset_names, train_config
from configs.editing import MAP_NAMES
from data.errors import run_cli

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
Opt = typer.Option


class Task(str, Enum):
    generator = "generator"
    backbone = "backbone"


@app.command(help=__doc__)
def main(
    exemplars: Annotated[
        list[Path],
        typer.Argument(help="Exemplar image(s), several are mixed; --task backbone: DATASET dir."),
    ],
    task: Annotated[Task, Opt(help="Train a texture generator or a backbone classifier.")] = (
        Task.generator
    ),
    arch: Annotated[
        ArchName | None, Opt(help="Backbone task: VGG layout (default: --init's).")
    ] = None,
    init: Annotated[
        str | None, Opt(help="Backbone task: fine-tune from this backbone (name or file).")
    ] = None,
    val_fraction: Annotated[
        float | None, Opt(help="Backbone task: held-out share of each class.")
    ] = None,
    output_dir: Annotated[
        Path, Opt(help="Run directory: checkpoints, final/, best/, logs/.")
    ] = Path("runs/generator"),
    config: Annotated[
        str | None,
        Opt(
            help=f"Preset ({', '.join(preset_names(TrainConfig))}) or TOML file; default "
            "painter for one exemplar, generator for several or with a generator's options."
        ),
    ] = None,
    resume: Annotated[str | None, Opt(help="'latest' or a checkpoint-STEP directory.")] = None,
    generator: Annotated[GeneratorName | None, Opt(help="Generator variant.")] = None,
    output: Annotated[OutputName | None, Opt(help="Generator RGB output.")] = None,
    steps: Annotated[int | None, Opt(help="Optimizer steps.")] = None,
    batch_size: Annotated[int | None, Opt(help="Generated images per step and process.")] = None,
    image_size: Annotated[
        int | None, Opt(help="Side of the generated training images (backbone task: crops).")
    ] = None,
    crop: Annotated[int | None, Opt(help="Backbone crop of finer octaves (0 = whole).")] = None,
    lr: Annotated[float | None, Opt(help="Adam learning rate.")] = None,
    lr_schedule: Annotated[
        ScheduleName | None, Opt(help="Learning-rate schedule (cosine: to lr / 10).")
    ] = None,
    warmup_steps: Annotated[int | None, Opt(help="Linear learning-rate warm-up steps.")] = None,
    diversity_weight: Annotated[float | None, Opt(help="Weight of the diversity term.")] = None,
    nearest_weight: Annotated[
        float | None,
        Opt(
            help="patches: weight of the pull to the nearest-patch projection at the coarse "
            "(layout) scales; 1 draws a lattice on honeycomb."
        ),
    ] = None,
    patch_weight: Annotated[
        float | None,
        Opt(
            help="features: add the patch objective (with --nearest-weight) at this share of "
            "the loss; 1 draws honeycomb's lattice with the features' grain."
        ),
    ] = None,
    adversarial_weight: Annotated[
        float | None, Opt(help="Weight of a patch discriminator's term (0 = none; try 0.01).")
    ] = None,
    even_light: Annotated[
        EvenLight | None,
        Opt(
            help="--layout: divide out the exemplar's light before quilting; auto: where it "
            "varies (a lamp's falloff, a highlight)."
        ),
    ] = None,
    layout: Annotated[
        int | None,
        Opt(
            help="2, 4 or 8: train a network that paints the exemplar quilted at 1/LAYOUT of "
            "the size (structure from the photo's own blocks); 0 = a generator of noise."
        ),
    ] = None,
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
    patch_size: PatchSize = None,
    projections: Projections = None,
    pyramid_factor: PyramidFactor = None,
    coarsest: Coarsest = None,
    max_patches: MaxPatches = None,
    exemplar_wraps: Annotated[
        ExemplarWraps | None,
        Opt(
            help="patches: the exemplar tiles, so its patches across the edges count too; "
            "auto: where its opposite edges join seamlessly."
        ),
    ] = None,
    tile: Annotated[
        bool | None,
        Opt("--tile/--no-tile", help="Periodic objective; generate seamless by default."),
    ] = None,
    mixed_precision: Annotated[
        MixedPrecisionName | None,
        Opt(
            help="bf16 autocast of generator and backbone; auto = bf16 where the device has "
            "native bf16 (CUDA, AVX-512 BF16, AMX), else no."
        ),
    ] = None,
    checkpoint_every: Annotated[int | None, Opt(help="Steps between checkpoints.")] = None,
    keep_checkpoints: Annotated[int | None, Opt(help="Newest checkpoints kept (0 = all).")] = None,
    log_every: Annotated[int | None, Opt(help="Steps between logged scalars.")] = None,
    sample_every: Annotated[int | None, Opt(help="Steps between logged sample images.")] = None,
    seed: Annotated[int | None, Opt(help="Seed of initial weights, noise and crops.")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu (GPUs: accelerate launch).")] = None,
    maps: Annotated[
        list[str] | None,
        Opt(
            "--map",
            help=f"NAME=FILE, repeatable: a map aligned with the exemplar (the albedo), of its "
            f"size; the generator outputs it too. NAME: {', '.join(MAP_NAMES)}.",
        ),
    ] = None,
    progress: Progress = True,
) -> None:
    cli = plain_values(locals())
    if task == Task.backbone:
        import train_backbone

        print("note: train.py --task backbone is now python train_backbone.py DATASET ...")
        return run_cli(lambda: train_backbone.run(cli, generator_options=True))
    run_cli(lambda: run(cli))


def run(cli: dict) -> None:
    # 1. Resolve the config: CLI > --config file (or the generator preset) > dataclass defaults;
    # the config checks its values itself.
    parse_objective_lists(cli)
    from training.runs import run_folder, saved_config

    output_dir = Path(cli["output_dir"])
    resumed = saved_config(output_dir, cli["resume"])
    cfg = train_config(cli["config"], cli, len(cli["exemplars"]), resumed)
    with run_folder(output_dir):
        train(cfg, cli["exemplars"], output_dir, cli["resume"], cli["progress"])


def train(cfg: TrainConfig, exemplars, output_dir: Path, resume=None, progress=True) -> dict:
    """Train a generator on ``exemplars`` (paths or (3, H, W) tensors in [0, 1]) into
    ``output_dir``; ``resume``: None, "latest" or a checkpoint-STEP directory.

    Returns:
        {"final": the final checkpoint's weights file, "step_seconds": seconds of each step
        this call ran} (on the main process; other processes get the step seconds only).
    """
    import torch  # the training stack (accelerate, data, losses) loads after argument parsing

    from data.sidecar import reporting_write_errors
    from generator import training as T
    from generator.adversary import Adversary
    from generator.checkpoints import save_generator
    from losses.objective import build_backbone_for
    from training.loop import Schedule, run_steps
    from training.runs import best_loss, resolved_precision, resume_run, start_logs, start_run

    # 2. Processes and devices ("auto" mixed precision resolved for them, so that the saved
    # config says what ran); only the main process writes files and prints.
    cfg = resolved_precision(cfg)
    accelerator = start_run(cfg, output_dir, resume)
    is_main, device = accelerator.is_main_process, accelerator.device
    log = print if is_main else lambda *_: None

    # 3. Objective (a backbone's feature statistics, or pixel patches), exemplars, targets.
    # (--layout: a painter of the exemplar's quilted layouts, whose objective is its own crops.)
    patches = cfg.objective == "patches"
    no_backbone = patches or cfg.layout
    backbone = None if no_backbone else build_backbone_for(cfg, cfg.tile, device, log)
    T.check_config(cfg, backbone.min_input_size() if backbone else 0)
    images, sources, layout = training_images(cfg, exemplars, device, log)
    channels = [m["channels"] for m in layout]
    model, objective, description = build_model(cfg, images, backbone, channels)
    info = {"backbone": description, "exemplars": sources}
    if cfg.maps:
        info["stack"] = layout  # map names, channels and bit depths: how generate splits
    log(f"backbone: {description}")

    # 4. Generator (one output channel per stack channel), Adam and the learning-rate
    # schedule, prepared for the devices.
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = Schedule(cfg, accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    net = accelerator.unwrap_model(model)  # the generator itself, for evaluation and saving
    adversary = None
    if cfg.adversarial_weight:  # a patch discriminator, registered for the checkpoints
        adversary = Adversary(images, cfg.image_size, accelerator)

    # 5. Resume from the newest complete checkpoint (a kill -9 loses at most one interval).
    check = lambda saved: T.check_resumable(saved["config"], cfg)  # noqa: E731
    global_step = resume_run(accelerator, output_dir, resume, check, log)
    best = best_loss(output_dir / "best") if global_step else float("inf")
    start_logs(accelerator, output_dir, "train", dataclasses.asdict(cfg))
    writer = accelerator.get_tracker("tensorboard", unwrap=True) if is_main else None

    # 6. Train: G(noise) -> texture loss (+ diversity, + the discriminator's term after its own
    # step) -> Adam, logging and checkpointing by step.
    rank = accelerator.process_index
    evaluation, batches, loss_fn = training_steps(
        cfg, net, objective, images, adversary, global_step, rank, device, log
    )

    def on_step(step):
        if is_main and step % cfg.sample_every == 0:
            _, eval_loss, images = evaluation(step)
            writer.add_scalar("eval/loss", eval_loss, step)
            writer.add_images("samples", images[:, :3], step)  # the albedo of a stack

    def save(step):
        nonlocal best
        best = T.save_checkpoint(accelerator, evaluation, cfg, output_dir, step, info, best)

    # A log or checkpoint write that fails (full disk) ends the run in one line.
    with reporting_write_errors(output_dir), progress_bar(progress and is_main) as bar:
        global_step, seconds = run_steps(
            accelerator, model, optimizer, scheduler,
            batches, functools.partial(loss_fn, model),
            start=global_step, cfg=cfg, save=save, bar=bar, on_step=on_step, log=log,
        )  # fmt: skip

        # 7. The final generator: BatchNorm folded, one safetensors file with its config.
        result = {"step_seconds": seconds}
        if is_main:
            folded, eval_loss, _ = evaluation(global_step)
            facts = {**info, "step": global_step, "eval_loss": eval_loss}
            path = save_generator(folded, output_dir / "final", dataclasses.asdict(cfg), facts)
            log(f"wrote {path} (step {global_step}, eval loss {eval_loss:.4g}; best {best:.4g})")
            result["final"] = path
        accelerator.end_training()
    return result


def training_images(cfg: TrainConfig, exemplars, device, log):
    """(images on ``device``, their names, the output's layout): ``generator.training``'s,
    and for a painter (``cfg.layout``) its one exemplar, the light evened where it varies."""
    from generator import training as T
    from generator.layout import painter_image

    images, sources, layout = T.load_training_images(cfg, exemplars, log)
    images = [u.to(device) for u in images]
    if cfg.layout:
        images = [painter_image(images, cfg, len(layout) > 1, log)]
    return images, sources, layout


def build_model(cfg: TrainConfig, images, backbone, channels):
    """(model, objective, description): with ``cfg.layout`` a painter of the one exemplar's
    quilted layouts, whose objective is its own crops (``generator.layout``); else a generator
    of noise started at the exemplars' mean colour and its objective on ``backbone``."""
    import torch

    from generator.layout import build_painter, painter_objective
    from losses.objective import generator_objective
    from models.generator import build_generator
    from models.layout import WIDTH

    if cfg.layout:
        description = painter_objective(cfg)
        return build_painter(images[0], cfg.layout, WIDTH), None, description
    objective, description = generator_objective(cfg, images, backbone, channels)
    model = build_generator(cfg.generator, cfg.output, out_channels=sum(channels))
    model.start_at_colour(torch.stack([u.mean((1, 2)) for u in images]).mean(0).cpu())
    return model, objective, description


def training_steps(cfg: TrainConfig, net, objective, images, adversary, start, rank, device, log):
    """(evaluation, batches, loss_fn) of a run from step ``start`` on process ``rank``:
    ``evaluation(step)`` -> (inference form, eval loss, sample images), the steps' inputs
    and ``loss_fn(model, batch)`` -> (loss, logged scalars)."""
    from generator import training as T
    from generator.layout import LayoutTraining

    if cfg.layout:
        painter = LayoutTraining(net, images[0], cfg, device, log)
        return painter, painter.batches(start, rank), painter.loss

    def loss_fn(model, batch):
        return T.step_loss(model, objective, cfg, batch, adversary=adversary)

    batches = T.step_batches(net, cfg, start, rank, device)
    return T.Evaluation(net, objective, cfg, device), batches, loss_fn


if __name__ == "__main__":
    app()
