"""Generator checkpoints: one safetensors file with the resolved config in its metadata.

Layout of a training run's output directory::

    OUTDIR/checkpoint-{step}/model.safetensors   inference weights (BatchNorm folded)
    OUTDIR/checkpoint-{step}/config.json         the resolved config, for people
    OUTDIR/checkpoint-{step}/state/              accelerate state (model, Adam, schedule, RNG)
    OUTDIR/final/, OUTDIR/best/                  model.safetensors + config.json only

A checkpoint directory is written as ``checkpoint-{step}.tmp`` and renamed when complete, so
a run killed mid-save leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from pickle import UnpicklingError

from safetensors import SafetensorError

from data.errors import UserError
from data.sidecar import json_bytes, recover_leftovers, reporting_write_errors, write_files_atomic
from models.generator import TextureGenerator
from models.weights import read_safetensors, safetensors_bytes

FORMAT = "texsynth-generator-1"
WEIGHTS = "model.safetensors"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def save_generator(model: TextureGenerator, directory: Path, config: dict, info: dict) -> Path:
    """Write ``directory/model.safetensors`` and ``config.json`` atomically, together; the
    same model, config and facts give the same bytes.

    Args:
        model: the folded (norm-free) generator.
        config: the resolved training config (``dataclasses.asdict``).
        info: JSON-able facts such as the step, the evaluation loss and the backbone.
    """
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "arch": json.dumps(model.arch),
        "config": json.dumps(config),
        "info": json.dumps(info),
    }
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    files = {
        directory / WEIGHTS: safetensors_bytes(state, metadata),
        directory / "config.json": json_bytes({"config": config, **info}),
    }
    recover_leftovers(list(files))  # a killed earlier write of these files: finish or undo it
    write_files_atomic(files)  # a new best/ or final/ is both files or neither
    return directory / WEIGHTS


def load_generator(path: str | Path) -> tuple[TextureGenerator, dict]:
    """Load a generator for inference.

    Args:
        path: a ``model.safetensors`` file or a directory holding one (``OUTDIR/final``,
            ``OUTDIR/best``, ``OUTDIR/checkpoint-N``).

    Returns:
        ``(model, meta)``: the eval-mode fp32 CPU generator and ``{"config", "info", "arch",
        "path"}`` from the file's metadata.

    Raises:
        UserError: missing file, truncated or corrupt file, not a generator checkpoint, or
            weights that do not match the architecture its metadata names.
    """
    path = Path(path)
    file = path / WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise UserError(
            f"checkpoint not found: {file}; give OUTDIR/final, OUTDIR/checkpoint-N or a {WEIGHTS}"
        )
    metadata, state = read_safetensors(file, "checkpoint")
    if metadata.get("format") != FORMAT:
        raise UserError(f"{file}: not a texsynth generator checkpoint (no '{FORMAT}' metadata)")
    try:
        arch = json.loads(metadata["arch"])
        model = TextureGenerator(**arch, norm=False)
        model.load_state_dict(state)
        meta = {k: json.loads(metadata[k]) for k in ("config", "info")}
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0]
        raise UserError(
            f"{file}: weights do not match the generator its metadata names ({first})"
        ) from None
    return model.eval(), {**meta, "arch": arch, "path": str(file)}


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
