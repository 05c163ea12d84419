"""Shared pieces of the command-line entry points: errors, list options, progress."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from data.errors import UserError


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(main: Callable[[], None]) -> None:
    """Run ``main``; a UserError becomes one line on stderr and exit code 2."""
    try:
        main()
    except UserError as e:
        fail(str(e))


def parse_list(text: str | None, kind=str, what: str = "list") -> list | None:
    """'pool1,conv3_2' -> ['pool1', 'conv3_2']; '1,0.5' with kind=float -> [1.0, 0.5]."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise UserError(
            f"--{what} expects comma-separated {kind.__name__} values, got '{text}'"
        ) from None


def numbered(path: Path, index: int, count: int) -> Path:
    """out.png -> out_003.png when several outputs are written."""
    return path if count == 1 else path.with_name(f"{path.stem}_{index:03d}{path.suffix}")


@contextmanager
def progress_bar(enabled: bool = True):
    """A rich progress bar with a ``loss`` field; a disabled one is a no-op."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )
    with progress:
        yield progress
