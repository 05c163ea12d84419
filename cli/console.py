"""Shared pieces of the command-line entry points: errors, list options, progress."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
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


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` runs (temporary files are
    removed); a BaseException, so that no ``except Exception`` swallows it."""


def _terminate(signum, frame):
    raise Terminated


def run_cli(main: Callable[[], None]) -> None:
    """Run ``main``; a UserError becomes one line on stderr and exit code 2, a Ctrl-C that
    no engine caught (start-up, loading) one line and exit code 130, a SIGTERM one line and
    exit code 143 after the temporary files of the write under way are removed."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        main()
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted (outputs are written atomically: none is half-written)", 130)
    except Terminated:
        fail("terminated (SIGTERM); outputs are written atomically: none is half-written", 143)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


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
def progress_bar(enabled: bool = True):
    """A rich progress bar with a ``loss`` field (None until the first value); a disabled one
    is a no-op."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        LossColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )
    with progress:
        yield progress
