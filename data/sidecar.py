"""Provenance beside outputs: library versions, file hashes and atomic file writes.

Convention: every file this project writes goes through :func:`write_bytes_atomic`, so a
crash, Ctrl-C or full disk leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import tomllib

from data.errors import UserError

PROJECT = "texsynth"
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    The temporary file is flushed, fsynced (:func:`stage_file`) and renamed over ``path``
    with ``os.replace`` (atomic on POSIX and Windows within one filesystem). On any failure
    it is removed and an existing ``path`` is untouched.

    Raises:
        UserError: the file cannot be written (full disk, file-size limit, read-only or
            unwritable place), with the reason, on one line.
    """
    write_files_atomic({Path(path): data})


def temporary_path(path: Path, token: str, kind: str = "tmp") -> Path:
    """The hidden ``.NAME.{token}.{kind}`` file beside ``path`` (kind: tmp, or old for a backup)."""
    return path.with_name(f".{path.name}.{token}.{kind}")


def new_token() -> str:
    """Tag of one write's temporary files: the writing process's id, so that a later run can
    tell a dead writer's leftovers from a live one's, and random bits against collisions."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


@contextmanager
def reporting_write_errors(path: Path, also: tuple[type[Exception], ...] = ()):
    """Turn an OSError (or an exception of a type in ``also``: writers such as torch.save
    report a full disk as a RuntimeError) of writing ``path`` into a one-line UserError."""
    try:
        yield
    except (OSError, *also) as e:
        reason = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot write {path}: {reason}; the previous files are untouched") from e


def stage_file(path: Path, data: bytes, token: str | None = None) -> Path:
    """Write ``data`` to a new temporary file beside ``path``, fsynced; return its path.

    On failure the temporary file is removed and the exception propagates."""
    tmp = temporary_path(path, token or new_token())
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


def commit_files(staged: dict[Path, Path], token: str) -> None:
    """Move staged temporary files ({final path: temporary path}) into place, all or none.

    Each existing final file is renamed to a backup (``.NAME.{token}.old``), then each
    temporary file renamed into place, then the backups removed. If a rename fails, the files
    already moved in are removed and the backups restored, so either every new file is in
    place or every old one is. The temporary files are gone afterwards in both cases; a
    process killed mid-commit is finished by the next run (:func:`recover_leftovers`).
    """
    backups: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for path, tmp in staged.items():
            if path.exists():
                backup = temporary_path(path, token, "old")
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

    Raises:
        UserError: a file cannot be written, with the reason; nothing was replaced.
    """
    token, staged = new_token(), {}
    path = next(iter(files))
    try:
        with reporting_write_errors(path):
            for path, data in files.items():
                staged[path] = stage_file(path, data, token)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    with reporting_write_errors(path):
        commit_files(staged, token)


def check_writable(folder: Path) -> None:
    """Refuse a folder no file can be created in, by creating (and removing) one: permission
    bits do not tell (root ignores them; /proc, read-only mounts)."""
    try:
        stage_file(folder / "probe", b"").unlink()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UserError(f"{folder}: output directory is not writable ({reason})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-(?P<rand>[0-9a-f]+)\.(?P<kind>tmp|old)")


def recover_leftovers(paths: list[Path]) -> list[str]:
    """Clean up after writes of ``paths`` (one group, committed in this order, such as an
    image and its sidecar) that a killed process left unfinished; return what was done.

    A dead writer's write is rolled forward when its commit had begun (a backup exists or the
    first path's temporary file is gone; every staged file was complete and fsynced before
    the commit started), so the group is the new one, whole; otherwise its temporary files
    are removed and the old group stays. Temporary files of a live process are left alone.

    Returns:
        One human line per write cleaned up (empty if there was nothing to do).
    """
    names = {p.name: p for p in paths}
    writes: dict[str, dict[tuple[str, str], Path]] = {}
    folder = paths[0].parent
    if not folder.is_dir():
        return []
    for entry in folder.iterdir():
        match = _LEFTOVER.fullmatch(entry.name)
        if match and match["name"] in names and not _alive(int(match["pid"])):
            token = f"{match['pid']}-{match['rand']}"
            writes.setdefault(token, {})[(match["name"], match["kind"])] = entry
    said = []
    for _, files in sorted(writes.items()):
        size = sum(f.stat().st_size for f in files.values())
        began = (paths[0].name, "tmp") not in files or any(k == "old" for _, k in files)
        if not began:
            for f in files.values():
                f.unlink()
            said.append(
                f"removed {len(files)} temporary file(s) ({size / 1e6:.1f} MB) of an interrupted "
                f"write of {paths[0].name}; the previous files are untouched"
            )
            continue
        for path in paths:
            tmp = files.get((path.name, "tmp"))
            if tmp is not None:
                os.replace(tmp, path)
        for (_, kind), f in files.items():
            if kind == "old":
                f.unlink()
        said.append(f"finished an interrupted write of {paths[0].name} (killed while committing)")
    return said


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
