"""Generator checkpoints: one safetensors file with the resolved config in its metadata.

Layout of a training run's output directory (``training.runs`` writes and resumes it)::

    OUTDIR/checkpoint-{step}/model.safetensors   inference weights (BatchNorm folded)
    OUTDIR/checkpoint-{step}/config.json         the resolved config, for people
    OUTDIR/checkpoint-{step}/state/              accelerate state (model, Adam, schedule, RNG)
    OUTDIR/final/, OUTDIR/best/                  model.safetensors + config.json only

"""

from __future__ import annotations

import json
from pathlib import Path

from data.errors import UserError
from data.sidecar import json_bytes, recover_leftovers, write_files_atomic
from models.generator import TextureGenerator
from models.layout import LayoutPainter
from models.weights import read_safetensors, safetensors_bytes

FORMAT = "texsynth-generator-1"
WEIGHTS = "model.safetensors"


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
        if arch.get("kind") == "layout":  # a painter of quilted layouts (models.layout)
            args = {k: arch[k] for k in ("factor", "width", "channels", "source_size")}
            model = LayoutPainter(**args)
        else:
            model = TextureGenerator(**arch, norm=False)
        model.load_state_dict(state)
        meta = {k: json.loads(metadata[k]) for k in ("config", "info")}
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0]
        raise UserError(
            f"{file}: weights do not match the generator its metadata names ({first})"
        ) from None
    return model.eval(), {**meta, "arch": arch, "path": str(file)}
