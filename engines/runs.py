"""The start of a training run, shared by both ``train.py`` tasks: the run directory checks and
the accelerate setup (devices, processes, mixed precision, TensorBoard)."""

from __future__ import annotations

from pathlib import Path

from data.errors import UserError
from engines import checkpoints as ckpt


def start_run(cfg, output_dir: Path, resume: str | None):
    """Refuse to overwrite a previous run, then build the ``Accelerator`` of this process and
    seed it. ``cfg`` needs ``device`` (auto | cpu), ``mixed_precision`` and ``seed``.

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
    return accelerator
