"""Shared pieces of the entry points: Ctrl-C, one-line output, numbered outputs, list options,
progress bars."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from data.errors import UserError


@contextmanager
def first_interrupt_only():
    """Ctrl-C raises KeyboardInterrupt once; later presses are ignored, so that a second
    press cannot cut short the saving of what the first one stopped (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []

    def handler(signum, frame):
        if not pressed:
            pressed.append(signum)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def say(*parts, flush: bool = True) -> None:
    """Print one line with a single write: processes sharing a pipe cannot split it."""
    sys.stdout.write(" ".join(map(str, parts)) + "\n")
    if flush:
        sys.stdout.flush()


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


class LossColumn(ProgressColumn):
    """``loss 0.1234``, or ``loss -`` while a task's ``loss`` field is None (nothing evaluated
    yet: a NaN there would read as a failed run)."""

    def render(self, task) -> Text:
        loss = task.fields.get("loss")
        return Text("loss -" if loss is None else f"loss {loss:.4g}")


@contextmanager
def progress_bar(enabled: bool = True, loss: bool = True):
    """A rich progress bar, with a ``loss`` field (None until the first value) if ``loss``;
    a disabled one is a no-op."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [LossColumn()] if loss else []
    progress = Progress(*columns, TimeElapsedColumn(), disable=not enabled, transient=False)
    with progress:
        yield progress
