"""Provenance beside outputs: library versions, file hashes and atomic file writes.

Convention: every file this project writes goes through :func:`write_bytes_atomic`, so a
crash, Ctrl-C or full disk leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
from importlib import metadata
from pathlib import Path

import tomllib

PROJECT = "texsynth"
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    The temporary file is flushed, fsynced (:func:`stage_file`) and renamed over ``path``
    with ``os.replace`` (atomic on POSIX and Windows within one filesystem). On any failure
    it is removed and the exception propagates; an existing ``path`` is then untouched.
    """
    path = Path(path)
    tmp = stage_file(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stage_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file beside ``path``, fsynced; return its path.

    On failure the temporary file is removed and the exception propagates."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 lets the umask decide permissions, as for a plain open();
    # tempfile would create the file 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit_files(staged: dict[Path, Path]) -> None:
    """Move staged temporary files ({final path: temporary path}) into place, all or none.

    Each existing final file is renamed to a backup, then each temporary file renamed into
    place, then the backups removed. If a rename fails, the files already moved in are
    removed and the backups restored, so either every new file is in place or every old one
    is. The temporary files are gone afterwards in both cases.
    """
    backups: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for path, tmp in staged.items():
            if path.exists():
                backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
                os.replace(path, backup)
                backups[path] = backup
            os.replace(tmp, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        for path, backup in backups.items():
            os.replace(backup, path)
        raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    for backup in backups.values():
        backup.unlink(missing_ok=True)


def write_files_atomic(files: dict[Path, bytes]) -> None:
    """Write several files so that either all new ones are in place or all old ones are.

    Every file is first staged (written and fsynced beside its path: a full disk or an
    unwritable name fails here, before anything is replaced), then all are committed
    together (:func:`commit_files`). An image and its sidecar therefore never part.
    """
    staged: dict[Path, Path] = {}
    try:
        for path, data in files.items():
            staged[path] = stage_file(path, data)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    commit_files(staged)


def json_bytes(obj: dict) -> bytes:
    """``obj`` as pretty JSON (indent 2, sorted keys, trailing newline), UTF-8; values JSON
    cannot represent (paths, enums, dtypes) are written as ``str(value)``."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def write_json_atomic(path: str | Path, obj: dict) -> None:
    """Write ``obj`` as pretty JSON (indent 2, sorted keys, trailing newline), atomically.

    Values JSON cannot represent (paths, enums, dtypes) are written as ``str(value)``.
    Serialisation happens before anything touches the disk.
    """
    write_bytes_atomic(path, json_bytes(obj))


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_bytes`` pieces so large weights fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _project_version() -> str:
    # Run in place, the project is not an installed distribution: pyproject.toml is the truth.
    try:
        with open(_PYPROJECT, "rb") as f:
            return tomllib.load(f)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return _dist_version(PROJECT)


def library_versions() -> dict[str, str]:
    """Versions that decide what an output looks like, for the sidecar's ``versions`` key.

    Returns:
        ``{"python", "torch", "torchvision", "numpy", "pillow", "texsynth"}`` -> version
        string; ``"not installed"`` for a missing library. Read from package metadata, so
        nothing heavy is imported.
    """
    return {
        "python": platform.python_version(),
        "torch": _dist_version("torch"),
        "torchvision": _dist_version("torchvision"),
        "numpy": _dist_version("numpy"),
        "pillow": _dist_version("pillow"),
        PROJECT: _project_version(),
    }
