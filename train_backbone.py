"""``train.py --task backbone``: train a VGG-style classifier on your own texture classes.

The trained trunk is exported as a backbone file (``models.classifier``) that both engines
load with ``--backbone OUTDIR/final`` (or the ``.safetensors`` file itself). Run layout::

    OUTDIR/checkpoint-{step}/state/                 accelerate state (model, AdamW, schedule, RNG)
    OUTDIR/checkpoint-{step}/backbone.safetensors   the folded trunk at that step
    OUTDIR/final/backbone.safetensors, config.json  the result, with per-class accuracy
    OUTDIR/logs/                                    TensorBoard (loss, accuracy per class, lr)
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cli.console import progress_bar
from configs import BackboneConfig, TrainConfig, build_config, read_config_file
from data import datasets as D
from data.errors import UserError
from data.sidecar import reporting_write_errors, write_json_atomic
from generator import checkpoints as ckpt
from generator.training import Schedule
from models.classifier import FILENAME, VGGClassifier, export_backbone
from models.vgg import ARCHS, layer_taps


@torch.no_grad()
def evaluate(model: VGGClassifier, data: D.CropDataset, classes: list[str], device) -> dict:
    """Held-out accuracy: {"overall": float, "per_class": {name: float | None}, "count": n}.

    One centre crop per image, eval-mode BatchNorm. Classes without held-out images get None.
    """
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
    deepest = [n for n in layer_taps(arch) if n.startswith("conv")][-1]
    fx = build_backbone(cfg.init, [deepest], padding="zeros", seed=cfg.seed)
    if fx.arch != arch:
        raise UserError(f"--init {cfg.init} is a {fx.arch}; use --arch {fx.arch} or drop --arch")
    log(f"fine-tuning from {fx.description}")
    params = [(c.weight.detach().clone(), c.bias.detach().clone()) for c in fx.convs()]
    return arch, params, (tuple(fx.scale.flatten().tolist()), tuple(fx.shift.flatten().tolist()))


def train_backbone(cli: dict) -> None:
    """The ``--task backbone`` run; ``cli`` holds train.py's options (see its --help)."""
    from training.runs import start_run

    # 1. Config (CLI > --config file > defaults) and the run directory.
    file_values = read_config_file(cli["config"]) if cli["config"] else {}
    cfg = build_config(BackboneConfig, file_values, cli)
    own = {f.name for f in dataclasses.fields(BackboneConfig)}
    generator_only = {f.name for f in dataclasses.fields(TrainConfig)} - own
    ignored = sorted(k for k in generator_only if cli.get(k) is not None)
    if ignored:
        flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
        print(f"note: --task backbone ignores {flags} (generator options)")
    if len(cli["exemplars"]) != 1 or not Path(cli["exemplars"][0]).is_dir():
        raise UserError("--task backbone takes one folder: DATASET/CLASS/image files")
    if cfg.arch is not None and cfg.arch not in ARCHS:
        raise UserError(f"unknown --arch '{cfg.arch}'; choose from {', '.join(ARCHS)}")
    if cfg.image_size < 32 or cfg.steps < 1 or cfg.batch_size < 1:
        raise UserError("--image-size must be >= 32 (five poolings), --steps and --batch-size >= 1")
    if cfg.pooling not in ("max", "avg"):
        raise UserError(f"unknown pooling '{cfg.pooling}'; use max or avg")
    output_dir = Path(cli["output_dir"])

    # 2. Processes and devices; only the main process writes files and prints.
    accelerator = start_run(cfg, output_dir, cli["resume"])
    is_main, device = accelerator.is_main_process, accelerator.device
    log = print if is_main else lambda *_: None

    # 3. The collection: classes, deterministic held-out split, images in memory.
    classes, items = D.scan_classes(cli["exemplars"][0])
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
    config = {**dataclasses.asdict(cfg), "arch": arch, "dataset": str(cli["exemplars"][0])}
    info = {"classes": classes, "train_images": len(train_images), "val_images": len(val_images)}

    # 5. Resume from the newest complete checkpoint.
    global_step = 0
    if cli["resume"]:
        resume_from = ckpt.resume_dir(output_dir, cli["resume"])
        if resume_from is None:
            log(f"no checkpoint in {output_dir}; starting at step 0")
        else:

            def check(saved):
                if saved.get("classes") != classes or saved["config"].get("arch") != arch:
                    raise UserError(f"{resume_from} was trained on other classes or another arch")

            ckpt.resume_state(accelerator, resume_from, check)
            global_step = ckpt.step_of(resume_from)
            log(f"resumed from {resume_from} at step {global_step}")
    if is_main:
        for stale in ckpt.stale_tmp_dirs(output_dir):
            shutil.rmtree(stale)
        hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()
        }
        with reporting_write_errors(output_dir):
            accelerator.init_trackers("backbone", config=hparams)

    def save(step: int) -> dict:
        tmp = output_dir / f"checkpoint-{step}.tmp"
        accelerator.wait_for_everyone()
        accuracy = {}
        with ckpt.checkpoint_writing(tmp):
            ckpt.save_state(accelerator, tmp / "state")
            if is_main:
                accuracy = evaluate(net, val_data, classes, device)
                scalars = {
                    f"accuracy/{c}": a for c, a in accuracy["per_class"].items() if a is not None
                }
                if accuracy["overall"] is not None:
                    scalars["accuracy/overall"] = accuracy["overall"]
                accelerator.log(scalars, step=step)
                export_backbone(net, tmp / FILENAME, classes, accuracy, config)
                facts = {"config": config, **info, "step": step, "accuracy": accuracy}
                write_json_atomic(tmp / "config.json", facts)
        if is_main:
            ckpt.finish_checkpoint(
                tmp, output_dir / f"checkpoint-{step}", output_dir, cfg.keep_checkpoints
            )
            log(f"step {step}: held-out accuracy {accuracy['overall']}")
        accelerator.wait_for_everyone()
        return accuracy

    # 6. Train: random crops -> cross-entropy -> AdamW, logging and checkpointing by step.
    # A full disk or file-size limit hit by a log or checkpoint write: one line.
    with reporting_write_errors(output_dir):
        model.train()
        clock, clock_step = time.perf_counter(), global_step
        try:
            with progress_bar(cli["progress"] and is_main) as bar:
                task = bar.add_task("train", total=cfg.steps, completed=global_step, loss=None)
                while global_step < cfg.steps:
                    for x, y in loader:
                        with accelerator.autocast():
                            logits = model(x)
                            loss = F.cross_entropy(logits.float(), y)
                        accelerator.backward(loss)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        global_step += 1
                        bar.update(task, completed=global_step, loss=float(loss.detach()))
                        if global_step % cfg.log_every == 0:
                            rate = (global_step - clock_step) / (time.perf_counter() - clock)
                            clock, clock_step = time.perf_counter(), global_step
                            accuracy = float((logits.argmax(1) == y).float().mean())
                            accelerator.log(
                                {
                                    "loss/train": float(loss.detach()),
                                    "accuracy/train_batch": accuracy,
                                    "lr": scheduler.get_last_lr()[0],
                                    "steps_per_second": rate,
                                },
                                step=global_step,
                            )
                        if global_step % cfg.checkpoint_every == 0 and global_step < cfg.steps:
                            save(global_step)
                        if global_step >= cfg.steps:
                            break
        except KeyboardInterrupt:
            log(f"interrupted: saving checkpoint-{global_step}")
            save(global_step)
            raise SystemExit(130) from None

        # 7. The result: last checkpoint and the backbone file with per-class accuracy.
        accuracy = save(global_step)
        if is_main:
            path = export_backbone(net, output_dir / "final" / FILENAME, classes, accuracy, config)
            write_json_atomic(
                output_dir / "final" / "config.json",
                {"config": config, **info, "step": global_step, "accuracy": accuracy},
            )
            report(accuracy, log)
            log(f"wrote {path}; use it with --backbone {output_dir / 'final'}")
        accelerator.end_training()
