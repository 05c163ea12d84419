"""The training loop both trainers share (``train.py``'s generator, ``train_backbone.py``'s
classifier): one optimizer step a batch, scalars to TensorBoard, checkpoints by step, Ctrl-C
saves a checkpoint. Step-based with an explicit ``step``, so a resumed run repeats exactly
what an uninterrupted one does."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch


class Schedule:
    """Learning-rate factor for ``LambdaLR``: linear warm-up, then cosine down to 1/10 or constant
    (``configs.SCHEDULES``).

    ``scale`` is the number of processes: accelerate steps a prepared scheduler once per
    process per optimizer step. ``cfg`` needs ``warmup_steps``, ``steps``, ``lr_schedule``.
    """

    def __init__(self, cfg, scale: int = 1):
        self.warmup, self.total, self.kind = (
            cfg.warmup_steps * scale,
            cfg.steps * scale,
            cfg.lr_schedule,
        )

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def repeat(loader) -> Iterator:
    """The batches of ``loader``, epoch after epoch, without end."""
    while True:
        yield from loader


def run_steps(
    accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    batches: Iterator,
    loss_fn: Callable,
    *,
    start: int,
    cfg,
    save: Callable[[int], None],
    bar,
    on_step: Callable[[int], None] | None = None,
    log=print,
) -> tuple[int, list[float]]:
    """Train from step ``start`` to ``cfg.steps``.

    Args:
        accelerator, model, optimizer, scheduler: prepared by ``accelerator.prepare``.
        batches: the steps' inputs; ``next(batches)`` once a step.
        loss_fn: ``loss_fn(batch) -> (loss, scalars)``, run under ``accelerator.autocast``:
            the scalar to minimise and ``{name: tensor}`` logged every ``cfg.log_every``
            steps (with ``lr`` and ``steps_per_second``).
        cfg: a config with ``steps``, ``log_every`` and ``checkpoint_every``.
        save: ``save(step)`` writes ``checkpoint-{step}``: every ``cfg.checkpoint_every``
            steps, at the last step, and at Ctrl-C (then ``SystemExit(130)``).
        bar: a rich progress bar (``cli.console.progress_bar``), disabled or not.
        on_step: ``on_step(step)`` after each step's logging (sample images).

    Returns:
        (the step reached, the seconds of each step run: input, forward, backward, optimizer).
    """
    step, seconds = start, []
    model.train()
    clock, clock_step = time.perf_counter(), step
    task = bar.add_task("train", total=cfg.steps, completed=step, loss=None)
    try:
        while step < cfg.steps:
            began = time.perf_counter()
            batch = next(batches)
            with accelerator.autocast():
                loss, scalars = loss_fn(batch)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seconds.append(time.perf_counter() - began)
            bar.update(task, completed=step, loss=float(loss.detach()))
            if step % cfg.log_every == 0:
                rate = (step - clock_step) / (time.perf_counter() - clock)
                clock, clock_step = time.perf_counter(), step
                values = {k: float(v.detach()) for k, v in scalars.items()}
                lr = scheduler.get_last_lr()[0]
                accelerator.log({**values, "lr": lr, "steps_per_second": rate}, step=step)
            if on_step is not None:
                on_step(step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save(step)
    except KeyboardInterrupt:
        log(f"interrupted: saving checkpoint-{step}")
        save(step)
        raise SystemExit(130) from None
    return step, seconds
