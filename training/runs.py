"""The start of a training run, shared by both ``train.py`` tasks: the run directory checks and
the accelerate setup (devices, processes, mixed precision, TensorBoard)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from data.errors import UserError
from data.sidecar import check_writable
from generator import checkpoints as ckpt


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
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir} is a file; give a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--output-dir {output_dir}: cannot create it ({e.strerror})") from None
    check_writable(output_dir)
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
    quiet_log_writer_threads()
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


def quiet_log_writer_threads() -> None:
    """Keep TensorBoard's writer threads from printing a traceback when a log write fails
    (full disk, file-size limit): the writer re-raises the error in the main thread at its
    next write or at close, where train.py reports it in one line."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    default = threading.excepthook

    def hook(args):
        if not isinstance(args.thread, _AsyncWriterThread):
            default(args)

    threading.excepthook = hook
