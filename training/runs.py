"""A training run's folder, shared by both trainers (``train.py``, ``train_backbone.py``): its
checks, the accelerate setup (devices, processes, mixed precision, TensorBoard), and its
checkpoints: written by step, rotated, resumed.

A checkpoint directory is written as ``checkpoint-{step}.tmp`` and renamed when complete, so
a run killed mid-save leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from pickle import UnpicklingError

from safetensors import SafetensorError

from data.errors import UserError
from data.sidecar import check_writable, reporting_write_errors

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


@contextmanager
def run_folder(output_dir: Path):
    """Run a training in ``output_dir``: if it fails before writing anything there (a bad
    exemplar, map or option found after ``start_run`` made the folder), the folders it made
    are removed again, so that a refused command leaves nothing behind."""
    made = []
    for folder in [output_dir, *output_dir.parents]:
        if folder.exists():
            break
        made.append(folder)
    try:
        yield
    except BaseException:
        for folder in made:  # deepest first; a folder something was written into stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def start_run(cfg, output_dir: Path, resume: str | None):
    """Refuse to overwrite a previous run, then build the ``Accelerator`` of this process,
    seed it and say (main process) how many processes train on which device. ``cfg`` needs
    ``device`` (auto | cpu), ``mixed_precision`` (resolved: ``resolved_precision``) and
    ``seed``.

    Returns:
        ``accelerate.Accelerator`` logging to ``output_dir/logs``.
    """
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
    if not resume and (checkpoint_steps(output_dir) or (output_dir / "final").exists()):
        raise UserError(
            f"{output_dir} holds a previous run; use --resume latest or another --output-dir"
        )
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        cpu=on_cpu(cfg),  # else CPU-only DDP never starts
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


def on_cpu(cfg) -> bool:
    """Whether a run of ``cfg`` (``device`` auto | cpu) trains on the CPU."""
    import torch

    return cfg.device == "cpu" or not torch.cuda.is_available()


def resolved_precision(cfg):
    """``cfg`` with ``mixed_precision = "auto"`` resolved before accelerate sees it: "bf16"
    where the device this run trains on computes bf16 natively (``models.devices.fast_bf16``:
    a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX), else "no". The checkpoints' config
    then records what ran, and a resume elsewhere that resolves otherwise is refused."""
    if cfg.mixed_precision != "auto":
        return cfg
    import torch

    from models.devices import fast_bf16

    ok, _ = fast_bf16(torch.device("cpu" if on_cpu(cfg) else "cuda"))
    return dataclasses.replace(cfg, mixed_precision="bf16" if ok else "no")


def processes_note(accelerator) -> str:
    """One line: how many processes train on which device. ``accelerate launch --cpu
    --num_processes N`` starts a single process (its CPU path needs MPI) and says nothing, so
    under that launcher the line also names the command that starts N CPU processes."""
    n = accelerator.num_processes
    line = f"training on {n} process{'es' if n > 1 else ''} ({accelerator.device})"
    if accelerator.mixed_precision != "no":
        line += f"; mixed precision {accelerator.mixed_precision}"
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


def resume_run(accelerator, output_dir: Path, resume: str | None, check, log=print) -> int:
    """Load the checkpoint ``resume`` names (``latest`` or a directory; ``check(saved)`` refuses
    one trained with other settings), remove the ``.tmp`` directories of interrupted saves, and
    return the step to continue from (0 for a new run)."""
    step = 0
    if resume:
        resume_from = resume_dir(output_dir, resume)
        if resume_from is None:
            log(f"no checkpoint in {output_dir}; starting at step 0")
        else:
            resume_state(accelerator, resume_from, check)
            step = step_of(resume_from)
            log(f"resumed from {resume_from} at step {step}")
    if accelerator.is_main_process:
        for stale in stale_tmp_dirs(output_dir):
            shutil.rmtree(stale)  # a checkpoint whose writing was interrupted
    return step


def start_logs(accelerator, output_dir: Path, name: str, config: dict) -> None:
    """TensorBoard logs of run ``name`` in ``output_dir/logs``, with ``config`` as hparams."""
    if accelerator.is_main_process:
        hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()
        }
        with reporting_write_errors(output_dir):
            accelerator.init_trackers(name, config=hparams)


def write_checkpoint(accelerator, output_dir: Path, step: int, keep: int, write_files):
    """Write ``checkpoint-{step}``: the accelerate state (every process) and what
    ``write_files(directory)`` writes there (main process); rename it into place when complete
    and keep the newest ``keep`` (0 = all). Returns what ``write_files`` returned (main)."""
    tmp = output_dir / f"checkpoint-{step}.tmp"
    accelerator.wait_for_everyone()
    written = None
    with checkpoint_writing(tmp):
        save_state(accelerator, tmp / "state")
        if accelerator.is_main_process:
            written = write_files(tmp)
    if accelerator.is_main_process:
        finish_checkpoint(tmp, output_dir / f"checkpoint-{step}", output_dir, keep)
    accelerator.wait_for_everyone()
    return written


def checkpoint_steps(output_dir: Path) -> list[int]:
    """Steps of the complete ``checkpoint-{step}`` directories, ascending."""
    if not output_dir.is_dir():
        return []
    steps = [int(m[1]) for p in output_dir.iterdir() if (m := _CHECKPOINT.fullmatch(p.name))]
    return sorted(steps)


def resume_dir(output_dir: Path, resume: str) -> Path | None:
    """'latest' -> newest checkpoint in ``output_dir`` (None if there is none); else that dir."""
    if resume == "latest":
        steps = checkpoint_steps(output_dir)
        return output_dir / f"checkpoint-{steps[-1]}" if steps else None
    path = Path(resume)
    if not (path / "state").is_dir() or not (path / "config.json").is_file():
        raise UserError(f"--resume {resume}: not a checkpoint-STEP directory written by train.py")
    return path


def saved_config(output_dir: Path, resume: str | None) -> dict | None:
    """The config table of the checkpoint ``resume`` names (``resume_dir``), or None: no
    resume, no checkpoint yet, or a config.json that cannot be read (``resume_state`` then
    says so in one line when it loads the checkpoint)."""
    checkpoint = resume_dir(output_dir, resume) if resume else None
    try:
        saved = json.loads((checkpoint / "config.json").read_text()) if checkpoint else None
    except (OSError, ValueError):
        return None
    config = saved.get("config") if isinstance(saved, dict) else None
    return config if isinstance(config, dict) else None


def resume_state(accelerator, checkpoint: Path, check) -> None:
    """Load the accelerate state (model, optimizer, schedule, RNG) of ``checkpoint`` once
    ``check(saved)`` accepts its ``config.json`` (a dict with a ``config`` table; ``check``
    raises UserError for a run trained with other settings).

    Raises:
        UserError: one line when config.json or the state is missing or damaged, naming the
            checkpoint to resume from instead.
    """
    try:
        saved = json.loads((checkpoint / "config.json").read_text())
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise ValueError("no 'config' table")
    except (OSError, ValueError) as e:  # JSON and UTF-8 decoding errors are ValueErrors
        raise _damaged(checkpoint, "config.json", e) from None
    check(saved)
    try:
        accelerator.load_state(str(checkpoint / "state"))
    except (OSError, RuntimeError, ValueError, KeyError, EOFError, UnpicklingError,
            SafetensorError) as e:  # fmt: skip
        raise _damaged(checkpoint, "state (weights, optimizer or RNG)", e) from None


def _damaged(checkpoint: Path, what: str, error: Exception) -> UserError:
    first = " ".join(str(error).split()).split(". ")[0] or type(error).__name__
    others = checkpoint_steps(checkpoint.parent)
    earlier = [s for s in others if f"checkpoint-{s}" != checkpoint.name]
    fix = (
        f"resume with --resume {checkpoint.parent / f'checkpoint-{earlier[-1]}'}"
        if earlier
        else "start a new run"
    )
    return UserError(f"{checkpoint}: cannot resume, its {what} is damaged ({first}); {fix}")


def step_of(checkpoint: Path) -> int:
    match = _CHECKPOINT.fullmatch(checkpoint.name)
    if match is None:
        raise UserError(f"{checkpoint}: checkpoint directories are named checkpoint-STEP")
    return int(match[1])


@contextmanager
def checkpoint_writing(tmp: Path):
    """Around the writing of a ``checkpoint-{step}.tmp`` directory: if it fails, the directory
    is removed (the previous checkpoints stay the newest) and a write error is one line."""
    try:
        with reporting_write_errors(tmp):
            yield
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_state(accelerator, directory: Path) -> None:
    """``accelerator.save_state`` into ``directory``; torch.save and safetensors report a
    full disk as RuntimeError and SafetensorError, reported here as one line."""
    with reporting_write_errors(directory, also=(RuntimeError, SafetensorError)):
        accelerator.save_state(str(directory))


def finish_checkpoint(tmp: Path, final: Path, output_dir: Path, keep: int) -> None:
    """Rename a completed ``.tmp`` directory into place and keep only the newest ``keep``."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for step in checkpoint_steps(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(output_dir / f"checkpoint-{step}")


def best_loss(directory: Path) -> float:
    """The evaluation loss recorded in ``directory`` (``inf`` if there is no checkpoint)."""
    try:
        return float(json.loads((directory / "config.json").read_text())["eval_loss"])
    except (OSError, KeyError, ValueError):
        return float("inf")


def stale_tmp_dirs(output_dir: Path) -> list[Path]:
    return (
        [p for p in output_dir.glob("checkpoint-*.tmp") if p.is_dir()]
        if output_dir.is_dir()
        else []
    )
