"""SciPy's compiled L-BFGS-B, driven directly so that images of millions of pixels start at once.

``scipy.optimize.minimize(method="L-BFGS-B", bounds=...)`` turns the bounds into one Python
tuple per variable and then loops over them in Python before the first iteration: 6 s for
a 512x512 RGB image and 29 s for 1024x1024 on this project's 2-core CPU (a trivial
objective, 2026-11-25; docs/decisions.md), and a list of 50M tuples at 4096x4096. This
module calls the same solver (``scipy.optimize._lbfgsb.setulb``, the C version of
SciPy >= 1.15) with the bounds as arrays, so the iterates are those of
``scipy.optimize.minimize`` (tested), without the set-up cost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import _lbfgsb

# setulb's task codes (scipy/optimize/_lbfgsb_py.py): it asks for f and g at x, or reports
# that x is a new iterate; anything else (converged, stopped, abnormal) ends the run.
_EVALUATE, _NEW_ITERATE, _STOP, _STOP_AT_MAXITER = 3, 1, 5, 504
_BOTH_BOUNDS = 2
_MAX_LINE_SEARCH = 20  # evaluations per line search (maxls)


def minimize_box(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: float,
    upper: float,
    iterations: int,
    history: int = 10,
    on_iterate: Callable[[np.ndarray, float], None] | None = None,
    first: tuple[float, np.ndarray] | None = None,
) -> int:
    """Minimise ``fun`` over ``lower <= x <= upper`` (the same bounds for every variable).

    Args:
        fun: ``x -> (f, g)`` with x and g float64 arrays of shape (n,).
        x0: (n,) start, inside the bounds.
        iterations: the number of iterations to run; no tolerance stops it earlier.
        history: correction pairs kept (``maxcor``).
        on_iterate: ``on_iterate(x, f)`` after every iteration; x is the solver's buffer,
            copy it to keep it.
        first: ``fun(x0)`` if already known, saving one evaluation.

    Returns:
        The number of iterations done.
    """
    if iterations < 1:
        return 0  # the solver reports its first iterate before it can be told to stop
    n = x0.size
    x = np.array(x0, dtype=np.float64).ravel()
    low, up = np.full(n, lower, np.float64), np.full(n, upper, np.float64)
    nbd = np.full(n, _BOTH_BOUNDS, np.int32)
    m = history
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, np.float64)
    iwa = np.zeros(3 * n, np.int32)
    task, ln_task = np.zeros(2, np.int32), np.zeros(2, np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29, np.float64)
    f, g = np.array(0.0), np.zeros(n, np.float64)
    max_evaluations = 20 * iterations + 20  # a backstop against endless line searches
    done = evaluations = 0
    while True:
        # factr = pgtol = 0: only the iteration count ends a run.
        _lbfgsb.setulb(
            m, x, low, up, nbd, f, g, 0.0, 0.0, wa, iwa, task, lsave, isave, dsave,
            _MAX_LINE_SEARCH, ln_task,
        )  # fmt: skip
        if task[0] == _EVALUATE:
            if first is not None:
                f, g, first = first[0], first[1], None
            else:
                f, g = fun(x)
                evaluations += 1
            g = np.asarray(g, np.float64).ravel()
        elif task[0] == _NEW_ITERATE:
            done += 1
            if on_iterate is not None:
                on_iterate(x, float(f))
            if done >= iterations or evaluations > max_evaluations:
                task[0], task[1] = _STOP, _STOP_AT_MAXITER
        else:
            return done
