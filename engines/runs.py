"""The start of a training run, shared by both ``train.py`` tasks: the run directory checks and
the accelerate setup (devices, processes, mixed precision, TensorBoard)."""

from __future__ import annotations

import os
from pathlib import Path

from data.errors import UserError
from engines import checkpoints as ckpt


def start_run(cfg, output_dir: Path, resume: str | None):
    """Refuse to overwrite a previous run, then build the ``Accelerator`` of this process,
    seed it and say (main process) how many processes train on which device. ``cfg`` needs
    ``device`` (auto | cpu), ``mixed_precision`` and ``seed``.

    Returns:
        ``accelerate.Accelerator`` logging to ``output_dir/logs``.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    if cfg.device not in ("auto", "cpu"):
        raise UserError("--device must be auto or cpu; choose GPUs with accelerate launch")
    if not resume and (ckpt.checkpoint_steps(output_dir) or (output_dir / "final").exists()):
        raise UserError(
            f"{output_dir} holds a previous run; use --resume latest or another --output-dir"
        )
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        cpu=cfg.device == "cpu" or not torch.cuda.is_available(),  # else CPU-only DDP never starts
        log_with="tensorboard",
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
    )
    set_seed(cfg.seed)  # initial weights; per-step randomness is derived from the step
    if accelerator.is_main_process:
        print(processes_note(accelerator))
    return accelerator


def processes_note(accelerator) -> str:
    """One line: how many processes train on which device. ``accelerate launch --cpu
    --num_processes N`` starts a single process (its CPU path needs MPI) and says nothing, so
    under that launcher the line also names the command that starts N CPU processes."""
    n = accelerator.num_processes
    line = f"training on {n} process{'es' if n > 1 else ''} ({accelerator.device})"
    if n == 1 and os.environ.get("ACCELERATE_USE_CPU") == "True":
        line += (
            "; accelerate's --cpu launcher starts one process: for N CPU processes run"
            " accelerate launch --multi_gpu --num_processes N train.py ..."
        )
    return line
