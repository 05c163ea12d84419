"""The one exception type that reaches the user as a single line, and how a command reports it
(``run_cli``: every entry point, from ``synth.py`` to ``python -m data.procedural``)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable


class UserError(Exception):
    """Bad input the user can fix: the CLI prints ``error: <message>`` and exits 2.

    Raise it at the boundary (file reading, option checking, backbone lookup)
    with a message that says what is wrong and how to fix it, on one line.
    """


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
