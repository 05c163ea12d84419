"""Train a VGG-style classifier on your own texture classes; its trunk becomes a backbone.

\b
    python train_backbone.py DATASET --output-dir runs/bb [--arch vgg19-tiny] [--steps 1000]
    python train_backbone.py DATASET --output-dir runs/bb --init vgg16-hed   # fine-tune
    accelerate launch train_backbone.py DATASET --output-dir runs/bb

DATASET holds one folder of images per class. The trained trunk is exported as a backbone
file (``models.classifier``) that both engines load with ``--backbone OUTDIR/final`` (or the
``.safetensors`` file itself); docs/collections.md. Run layout::

\b
    OUTDIR/checkpoint-{step}/state/                 accelerate state (model, AdamW, schedule, RNG)
    OUTDIR/checkpoint-{step}/backbone.safetensors   the folded trunk at that step
    OUTDIR/final/backbone.safetensors, config.json  the result, with per-class accuracy
    OUTDIR/logs/                                    TensorBoard (loss, accuracy per class, lr)

Every config field is an option; precedence is command line > --config file > defaults.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Annotated

import typer

from cli.options import ArchName, PoolingName, ScheduleName, plain_values
from configs import BackboneConfig, TrainConfig, build_config, read_config_file
from data.errors import UserError, run_cli

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
Opt = typer.Option


@app.command(help=__doc__)
def main(
    dataset: Annotated[Path, typer.Argument(help="Folder of class folders of images.")],
    output_dir: Annotated[Path, Opt(help="Run directory: checkpoints, final/, logs/.")] = Path(
        "runs/backbone"
    ),
    config: Annotated[str | None, Opt(help="TOML file of BackboneConfig fields.")] = None,
    resume: Annotated[str | None, Opt(help="'latest' or a checkpoint-STEP directory.")] = None,
    arch: Annotated[ArchName | None, Opt(help="VGG layout (default: --init's, or vgg19).")] = None,
    init: Annotated[
        str | None, Opt(help="Fine-tune from this backbone (name or file); default scratch.")
    ] = None,
    pooling: Annotated[
        PoolingName | None, Opt(help="Trunk pooling while training (default max).")
    ] = None,
    steps: Annotated[int | None, Opt(help="Optimizer steps.")] = None,
    batch_size: Annotated[int | None, Opt(help="Crops per step and process.")] = None,
    image_size: Annotated[int | None, Opt(help="Side of the random training crops.")] = None,
    val_fraction: Annotated[float | None, Opt(help="Held-out share of each class.")] = None,
    lr: Annotated[float | None, Opt(help="AdamW learning rate.")] = None,
    lr_schedule: Annotated[
        ScheduleName | None, Opt(help="Learning-rate schedule (cosine: to lr / 10).")
    ] = None,
    warmup_steps: Annotated[int | None, Opt(help="Linear learning-rate warm-up steps.")] = None,
    mixed_precision: Annotated[
        str | None, Opt(help="no | bf16 | fp16 | auto (bf16 where native, else no).")
    ] = None,
    checkpoint_every: Annotated[int | None, Opt(help="Steps between checkpoints.")] = None,
    keep_checkpoints: Annotated[int | None, Opt(help="Newest checkpoints kept (0 = all).")] = None,
    log_every: Annotated[int | None, Opt(help="Steps between logged scalars.")] = None,
    seed: Annotated[int | None, Opt(help="Seed of the split, initial weights and crops.")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu (GPUs: accelerate launch).")] = None,
    progress: Annotated[bool, Opt("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    cli = plain_values(locals())
    run_cli(lambda: run(cli))


def run(cli: dict, generator_options: bool = False) -> None:
    """Resolve the config from ``cli`` (this script's options, or ``train.py --task
    backbone``'s when ``generator_options``: those are then ignored with a note), then train."""
    # 1. Config (CLI > --config file > defaults) and the dataset folder.
    file_values = read_config_file(cli["config"]) if cli["config"] else {}
    cfg = build_config(BackboneConfig, file_values, cli)
    if generator_options:
        own = {f.name for f in dataclasses.fields(BackboneConfig)}
        generator_only = {f.name for f in dataclasses.fields(TrainConfig)} - own
        ignored = sorted(k for k in generator_only if cli.get(k) is not None)
        if ignored:
            flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
            print(f"note: --task backbone ignores {flags} (generator options)")
        cli["dataset"] = cli["exemplars"][0] if len(cli["exemplars"]) == 1 else None
    if cli["dataset"] is None or not Path(cli["dataset"]).is_dir():
        what = "--task backbone" if generator_options else "train_backbone.py"
        raise UserError(f"{what} takes one folder: DATASET/CLASS/image files")
    from training.runs import run_folder

    output_dir = Path(cli["output_dir"])
    with run_folder(output_dir):
        train_backbone(cfg, Path(cli["dataset"]), output_dir, cli["resume"], cli["progress"])


def train_backbone(
    cfg: BackboneConfig, dataset: Path, output_dir: Path, resume=None, progress=True
):
    """Train on ``dataset`` (DATASET/CLASS/images) into ``output_dir``; see the module docstring."""
    import torch

    from cli.console import progress_bar
    from data import datasets as D
    from data.sidecar import reporting_write_errors, write_json_atomic
    from models.classifier import FILENAME, VGGClassifier, export_backbone
    from training.loop import Schedule, repeat, run_steps
    from training.runs import (
        resolved_precision,
        resume_run,
        start_logs,
        start_run,
        write_checkpoint,
    )

    # 2. Processes and devices; only the main process writes files and prints.
    cfg = resolved_precision(cfg)
    accelerator = start_run(cfg, output_dir, resume)
    is_main, device = accelerator.is_main_process, accelerator.device
    log = print if is_main else lambda *_: None

    # 3. The collection: classes, deterministic held-out split, images in memory.
    classes, items = D.scan_classes(dataset)
    train_items, val_items = D.split(items, cfg.val_fraction, cfg.seed)
    train_images = D.load_items(train_items, cfg.image_size, log)
    val_images = D.load_items(val_items, cfg.image_size, log)
    if not train_images:
        raise UserError("no readable training images")
    counts = torch.bincount(torch.tensor([im.label for im in train_images]), minlength=len(classes))
    log(
        f"{len(classes)} classes, {len(train_images)} training and {len(val_images)} held-out "
        f"images: " + ", ".join(f"{c} {int(n)}" for c, n in zip(classes, counts, strict=True))
    )

    # 4. Model (from scratch or a known backbone), AdamW, schedule, data; prepared for devices.
    arch, params, norm = init_weights(cfg, log)
    scale, shift = norm or D.channel_stats(train_images)
    model = VGGClassifier(arch, len(classes), scale, shift, cfg.pooling)
    if params is not None:
        model.load_convs_(params)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, Schedule(cfg, accelerator.num_processes)
    )
    # Enough repeats that one pass of the loader covers many steps; crops are fresh each time.
    repeats = max(1, (cfg.steps * cfg.batch_size) // max(1, len(train_images)) // 20 + 1)
    loader = torch.utils.data.DataLoader(
        D.CropDataset(train_images, cfg.image_size, True, repeats),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(train_images) * repeats >= cfg.batch_size,
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    net = accelerator.unwrap_model(model)
    val_data = D.CropDataset(val_images, cfg.image_size, False)
    config = {**dataclasses.asdict(cfg), "arch": arch, "dataset": str(dataset)}
    info = {"classes": classes, "train_images": len(train_images), "val_images": len(val_images)}

    # 5. Resume from the newest complete checkpoint.
    def check(saved):
        if saved.get("classes") != classes or saved["config"].get("arch") != arch:
            raise UserError("the checkpoint was trained on other classes or another arch")

    global_step = resume_run(accelerator, output_dir, resume, check, log)
    start_logs(accelerator, output_dir, "backbone", config)
    saved: dict = {}

    def save(step: int) -> None:
        write = functools.partial(
            write_classifier_files, accelerator, net, val_data, classes, config, info, step, log
        )
        accuracy = write_checkpoint(accelerator, output_dir, step, cfg.keep_checkpoints, write)
        saved.update(step=step, accuracy=accuracy or {})

    # 6. Train: random crops -> cross-entropy -> AdamW, logging and checkpointing by step.
    # A full disk or file-size limit hit by a log or checkpoint write: one line.
    with reporting_write_errors(output_dir), progress_bar(progress and is_main) as bar:
        global_step, _ = run_steps(
            accelerator, model, optimizer, scheduler, repeat(loader),
            functools.partial(classification_loss, model),
            start=global_step, cfg=cfg, save=save, bar=bar, log=log,
        )  # fmt: skip

        # 7. The result: last checkpoint and the backbone file with per-class accuracy.
        if saved.get("step") != global_step:
            save(global_step)
        if is_main:
            accuracy = saved["accuracy"]
            path = export_backbone(net, output_dir / "final" / FILENAME, classes, accuracy, config)
            write_json_atomic(
                output_dir / "final" / "config.json",
                {"config": config, **info, "step": saved["step"], "accuracy": accuracy},
            )
            report(accuracy, log)
            log(f"wrote {path}; use it with --backbone {output_dir / 'final'}")
        accelerator.end_training()


def classification_loss(model, batch):
    """(cross-entropy, {"loss/train", "accuracy/train_batch"}) of one batch of crops."""
    import torch.nn.functional as F

    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    return loss, {
        "loss/train": loss,
        "accuracy/train_batch": (logits.argmax(1) == y).float().mean(),
    }


def write_classifier_files(accelerator, net, val_data, classes, config, info, step, log, directory):
    """A checkpoint's files (main process): held-out accuracy, logged; the folded backbone
    file; config.json. Returns the accuracy."""
    from data.sidecar import write_json_atomic
    from models.classifier import FILENAME, export_backbone

    accuracy = evaluate(net, val_data, classes, accelerator.device)
    scalars = {f"accuracy/{c}": a for c, a in accuracy["per_class"].items() if a is not None}
    if accuracy["overall"] is not None:
        scalars["accuracy/overall"] = accuracy["overall"]
    accelerator.log(scalars, step=step)
    export_backbone(net, directory / FILENAME, classes, accuracy, config)
    write_json_atomic(
        directory / "config.json", {"config": config, **info, "step": step, "accuracy": accuracy}
    )
    log(f"step {step}: held-out accuracy {accuracy['overall']}")
    return accuracy


def evaluate(model, data, classes: list[str], device) -> dict:
    """Held-out accuracy: {"overall": float, "per_class": {name: float | None}, "count": n}.

    One centre crop per image, eval-mode BatchNorm. Classes without held-out images get None.
    """
    import torch

    with torch.no_grad():
        was_training = model.training
        model.eval()
        right = torch.zeros(len(classes))
        total = torch.zeros(len(classes))
        for i in range(0, len(data), 64):
            batch = [data[j] for j in range(i, min(i + 64, len(data)))]
            x = torch.stack([b[0] for b in batch]).to(device)
            y = torch.tensor([b[1] for b in batch])
            pred = model(x).argmax(1).cpu()
            total += torch.bincount(y, minlength=len(classes)).float()
            right += torch.bincount(y[pred == y], minlength=len(classes)).float()
        model.train(was_training)
        per_class = {
            c: (round(float(r / t), 4) if t else None)
            for c, r, t in zip(classes, right, total, strict=True)
        }
        overall = round(float(right.sum() / total.sum()), 4) if total.sum() else None
        return {"overall": overall, "per_class": per_class, "count": int(total.sum())}


def report(accuracy: dict, log) -> None:
    """Per-class accuracy, one line each, for people."""
    if accuracy["overall"] is None:
        log("no held-out images (--val-fraction 0): accuracy not measured")
        return
    log(f"held-out accuracy {accuracy['overall']:.1%} on {accuracy['count']} images")
    for name, acc in accuracy["per_class"].items():
        log(f"  {name:<24} {'-' if acc is None else f'{acc:.1%}'}")


def init_weights(cfg: BackboneConfig, log):
    """(arch, conv params or None, (scale, shift) or None) from ``--init``/``--arch``."""
    if cfg.init is None:
        return cfg.arch or "vgg19", None, None
    from models.backbones import build_backbone

    arch = cfg.arch
    if arch is None:  # the arch the init backbone has
        from models.backbones import resolve_backbone

        name, _ = resolve_backbone(cfg.init)
        arch = {"vgg16-hed": "vgg16", "random-tiny": "vgg19-tiny"}.get(name, "vgg19")
        if name not in ("vgg19", "vgg16-hed", "random", "random-tiny"):
            from models.classifier import read_backbone

            arch = read_backbone(cfg.init)[0]
    from models.vgg import layer_taps

    deepest = [n for n in layer_taps(arch) if n.startswith("conv")][-1]
    fx = build_backbone(cfg.init, [deepest], padding="zeros", seed=cfg.seed)
    if fx.arch != arch:
        raise UserError(f"--init {cfg.init} is a {fx.arch}; use --arch {fx.arch} or drop --arch")
    log(f"fine-tuning from {fx.description}")
    params = [(c.weight.detach().clone(), c.bias.detach().clone()) for c in fx.convs()]
    return arch, params, (tuple(fx.scale.flatten().tolist()), tuple(fx.shift.flatten().tolist()))


if __name__ == "__main__":
    app()
