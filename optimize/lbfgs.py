"""L-BFGS on the pixels of one image, kept in [0, 1].

Three ways to keep pixels in range (``method``):

- ``lbfgsb``: SciPy's L-BFGS-B (run by ``optimize.lbfgsb``) with box bounds [0, 1]: the
  bounds are part of the quasi-Newton model, so nothing is thrown away. The default (see
  docs/decisions.md for the measurement).
- ``lbfgs-clamp``: torch's L-BFGS with a strong-Wolfe line search, clamping to
  [0, 1] after every chunk of 10 iterations (stays on the GPU).
- ``lbfgs-sigmoid``: torch's L-BFGS on logits, ``x = sigmoid(z)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.profiler import record_function

from optimize.lbfgsb import minimize_box

METHODS = ("lbfgsb", "lbfgs-clamp", "lbfgs-sigmoid")
_CHUNK = 10


@dataclass
class OptimizeResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]
    terms: dict[str, float] = field(default_factory=dict)  # final value of every loss term
    iterations: int = 0
    evaluations: int = 0  # loss + gradient evaluations (line searches included)
    seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C; image is the last accepted iterate
    # (H, W) of the coarse level a stopped run had reached; its image was upsampled from it
    stopped_at: tuple[int, int] | None = None
    # why a run stopped early on a NaN or infinite loss or gradient (image: the last finite
    # iterate), e.g. "the loss became nan at iteration 8"; None if it did not
    diverged: str | None = None


class NonFinite(Exception):
    """The loss or its gradient is NaN or infinite at the point L-BFGS asked about."""


def _finite(total: torch.Tensor, grad: torch.Tensor | None = None) -> None:
    if not torch.isfinite(total) or (grad is not None and not torch.isfinite(grad).all()):
        raise NonFinite("loss" if not torch.isfinite(total) else "gradient", float(total))


def value_and_grad(loss_fn, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(loss, gradient) of ``loss_fn(x)["total"]`` at x (1, 3, H, W); raises NonFinite. One
    evaluation of the L-BFGS-B driver, labelled for ``torch.profiler`` (``objective.*``)."""
    x = x.detach().requires_grad_(True)
    with record_function("objective.forward"):
        total = loss_fn(x)["total"]
    with record_function("objective.backward"):
        (grad,) = torch.autograd.grad(total, x)
    _finite(total.detach(), grad)
    return float(total.detach()), grad


def optimize(
    loss_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    x0: torch.Tensor,
    iterations: int,
    method: str = "lbfgsb",
    history: int = 10,
    on_iter: Callable[[int, torch.Tensor, float], None] | None = None,
) -> OptimizeResult:
    """Minimise ``loss_fn(x)["total"]`` over x starting at ``x0``.

    Args:
        loss_fn: maps (1, 3, H, W) to a dict of scalar terms with a ``total``.
        x0: (1, 3, H, W) start in [0, 1].
        iterations: L-BFGS iterations (each costs ~1-2 evaluations).
        method: one of ``METHODS``.
        history: number of L-BFGS correction pairs kept.
        on_iter: called as ``on_iter(iteration, x, loss)`` after accepted iterations
            (every iteration for lbfgsb, every 10 for the torch methods).

    Ctrl-C stops the run and returns the last accepted iterate with ``interrupted``; a NaN or
    infinite loss or gradient stops it with the last accepted (finite) iterate and
    ``diverged`` saying where.
    """
    start = time.perf_counter()
    run = {"lbfgsb": _run_lbfgsb, "lbfgs-clamp": _run_torch, "lbfgs-sigmoid": _run_torch}[method]
    result = OptimizeResult(image=x0.detach().clone())
    try:
        run(loss_fn, x0, iterations, method, history, on_iter, result)
    except KeyboardInterrupt:
        result.interrupted = True
    except NonFinite as e:
        what, value = e.args
        result.diverged = f"the {what} became {value:g} at iteration {result.iterations + 1}"
    with torch.no_grad():
        terms = loss_fn(result.image)
    result.terms = {k: float(v) for k, v in terms.items()}
    result.seconds = time.perf_counter() - start
    return result


def _run_lbfgsb(loss_fn, x0, iterations, method, history, on_iter, result):
    shape, device = x0.shape, x0.device

    def to_torch(z: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(z).view(shape).to(device, torch.float32)

    # L-BFGS-B starts from the identity as its Hessian model, so its first steps move each
    # pixel by about its gradient: a loss scaled so that the start's largest gradient entry
    # is 1 makes that first move a sensible fraction of [0, 1] (measured: a relative Gram
    # loss whose gradients were ~1e-6 crawled from 0.96 to 0.80 in 12 iterations where the
    # same loss x1e6 reached 0.06). Values are reported unscaled.
    value0, grad0 = value_and_grad(loss_fn, x0)
    result.evaluations += 1
    scale = 1.0 / max(float(grad0.abs().max()), 1e-30)

    def scaled(value: float, grad: torch.Tensor) -> tuple[float, np.ndarray]:
        return value * scale, grad.double().cpu().numpy().ravel() * scale

    def fun(z):
        result.evaluations += 1
        return scaled(*value_and_grad(loss_fn, to_torch(z)))

    def on_iterate(z, value):
        result.iterations += 1
        result.image = to_torch(z)  # a float32 copy of the solver's buffer
        if on_iter is not None:
            on_iter(result.iterations, result.image, value / scale)

    x0_flat = x0.detach().double().cpu().numpy().ravel()
    first = scaled(value0, grad0)
    minimize_box(fun, x0_flat, 0.0, 1.0, iterations, history, on_iterate=on_iterate, first=first)


def _run_torch(loss_fn, x0, iterations, method, history, on_iter, result):
    sigmoid = method == "lbfgs-sigmoid"
    eps = 1e-3
    param = torch.logit(x0.clamp(eps, 1 - eps)) if sigmoid else x0.clone()
    param = param.detach().requires_grad_(True)

    def image() -> torch.Tensor:
        return torch.sigmoid(param) if sigmoid else param

    opt = torch.optim.LBFGS(
        [param],
        lr=1,
        max_iter=_CHUNK,
        history_size=history,
        line_search_fn="strong_wolfe",
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )
    last = math.nan

    def closure():
        nonlocal last
        opt.zero_grad()
        total = loss_fn(image())["total"]
        total.backward()
        _finite(total.detach(), param.grad)
        result.evaluations += 1
        last = float(total.detach())
        return total

    done = 0
    while done < iterations:
        opt.param_groups[0]["max_iter"] = min(_CHUNK, iterations - done)
        opt.step(closure)
        if opt.state[param].get("n_iter", 0) == done:
            break  # zero gradient: L-BFGS cannot move
        done = opt.state[param]["n_iter"]
        with torch.no_grad():
            if not sigmoid:
                param.clamp_(0, 1)
            result.image = image().detach().clone()
        result.iterations = done
        if on_iter is not None:
            on_iter(done, result.image, last)
