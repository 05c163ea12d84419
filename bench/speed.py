"""Optimize-mode speed: seconds per L-BFGS evaluation and seconds to a fixed loss, ours vs
naive; where an evaluation's time goes, and the backbone's achieved FLOP/s.

Ours and naive are timed in the same process, alternately, on the same objective (same
backbone weights, same exemplar, same start image), so their ratio survives a noisy shared
machine.

``stage_times`` runs the optimizer's own evaluation (``optimize.lbfgs.value_and_grad``) under
``torch.profiler`` and reads the time of each stage from the ``record_function`` labels in the
product's code (``losses/texture.py``, ``optimize/lbfgs.py``). The optimizer's share is the
period between evaluations inside a real L-BFGS run minus the evaluation itself.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from bench.naive import NaiveTextureLoss, naive_optimize
from configs import SynthConfig, build_config, read_config_file
from losses import TextureLoss, gaussian_pyramid
from losses.objective import fit_octave_count
from optimize.features import TextureSynthesizer, initial_noise
from optimize.lbfgs import optimize, value_and_grad

# table column -> the record_function label in the product's code
LABELS = {
    "pyramid": "texture.pyramid",
    "forward": "texture.backbone",
    "gram": "texture.statistics",
    "spectrum": "texture.spectrum",
    "tv": "texture.tv",
    "backward": "objective.backward",
}
STAGES = tuple(LABELS)


class _Stop(Exception):
    """Ends an optimisation from inside its loss function (budget spent or target reached)."""


# The benchmark's backbone precision, whatever the machine: its figures then compare with
# earlier sessions' and with the naive reference's (fp32); docs/decisions.md (2026-12-02,
# session 7) has bf16's.
PRECISION = "fp32"


def preset_config(preset: str, **overrides) -> SynthConfig:
    """The preset's ``SynthConfig`` in ``PRECISION``, with ``overrides`` (None values ignored)
    applied."""
    return build_config(
        SynthConfig, {**read_config_file(preset), "precision": PRECISION}, overrides
    )


def ours(cfg: SynthConfig, exemplar: torch.Tensor, sizes=()) -> TextureSynthesizer:
    """Our engine for one (3, H, W) exemplar, silent, with the preset's octaves lowered to what
    the exemplar and every output size in ``sizes`` ((H, W) pairs) support."""
    quiet = lambda *_: None  # noqa: E731
    synth = TextureSynthesizer(exemplar, cfg, log=quiet, fit_octaves=True)
    fitted = fit_octave_count(synth.config, synth.backbone, [*sizes, exemplar.shape[-2:]], quiet)
    if fitted.octaves != synth.config.octaves:
        synth = TextureSynthesizer(exemplar, fitted, log=quiet)
    return synth


def naive_for(synth: TextureSynthesizer) -> NaiveTextureLoss:
    """The naive reference of exactly the objective ``synth`` optimises (same fitted octaves)."""
    return NaiveTextureLoss(synth.config, synth.exemplars, synth.backbone, tile=synth.config.tile)


def _periods(starts: list[float]) -> list[float]:
    """Seconds between consecutive evaluation starts, the first (warm-up) period dropped."""
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return gaps[1:] if len(gaps) > 1 else gaps


def timed(fn):
    """``fn`` wrapped to append the ``time.perf_counter()`` of each call's start to ``.starts``."""

    def wrapper(*args, **kwargs):
        wrapper.starts.append(time.perf_counter())
        return fn(*args, **kwargs)

    wrapper.starts = []
    return wrapper


def eval_seconds_ours(synth: TextureSynthesizer, size, evaluations: int) -> list[float]:
    """Periods of ``evaluations`` L-BFGS evaluations of our engine (optimizer time included)."""
    objective = timed(synth.objective(1))
    x0 = initial_noise(synth.exemplars, size, synth.config.seed)

    def budget(x):
        if len(objective.starts) > evaluations + 1:
            raise _Stop
        return objective(x)

    budget.starts = objective.starts
    try:
        optimize(budget, x0, evaluations + 1, synth.config.optimizer, synth.config.history)
    except _Stop:
        pass
    return _periods(objective.starts[: evaluations + 1])


def eval_seconds_naive(naive: NaiveTextureLoss, x0: torch.Tensor, evaluations: int):
    """Periods of ``evaluations`` evaluations of the naive reference under torch LBFGS."""
    starts: list[float] = []

    def loss(x):
        if len(starts) > evaluations:
            raise _Stop
        starts.append(time.perf_counter())
        return naive(x)

    try:
        naive_optimize(loss, x0, steps=1 + evaluations // 20)
    except _Stop:
        pass
    return _periods(starts)


def seconds_to_loss(run, target: float, cap: float) -> tuple[float, bool]:
    """(seconds until an evaluation reports a loss <= ``target``, whether it got there).

    ``run(check)`` must optimise, calling ``check(loss)`` after every evaluation; ``cap``
    seconds end an optimisation that has not got there.
    """
    start = time.perf_counter()
    reached = []

    def check(value: float):
        if value <= target:
            reached.append(time.perf_counter() - start)
            raise _Stop
        if time.perf_counter() - start > cap:
            raise _Stop

    try:
        run(check)
    except _Stop:
        pass
    return (reached[0], True) if reached else (time.perf_counter() - start, False)


def time_to_loss(synth, naive, size, fraction: float, cap: float, iterations: int) -> dict:
    """Seconds for ours and naive to bring the loss from the seeded noise start to
    ``fraction`` of its initial value (single level, the preset's objective)."""
    objective = synth.objective(1)
    x0 = initial_noise(synth.exemplars, size, synth.config.seed)
    with torch.no_grad():
        start_loss = float(objective(x0)["total"])
    target = fraction * start_loss

    def run_ours(check):
        def loss(x):
            terms = objective(x)
            check(float(terms["total"].detach()))
            return terms

        optimize(loss, x0, iterations, synth.config.optimizer, synth.config.history)

    def run_naive(check):
        naive_optimize(naive, x0, steps=iterations, on_eval=check)

    t_ours, ok_ours = seconds_to_loss(run_ours, target, cap)
    t_naive, ok_naive = seconds_to_loss(run_naive, target, cap)
    return {
        "start_loss": start_loss,
        "target": target,
        "ours_s": t_ours,
        "ours_reached": ok_ours,
        "naive_s": t_naive,
        "naive_reached": ok_naive,
    }


def per_evaluation(synth, naive, size, evaluations: int, rounds: int) -> dict:
    """Median seconds per evaluation, ours and naive, alternating ``rounds`` times."""
    mine, theirs = [], []
    x0 = initial_noise(synth.exemplars, size, synth.config.seed)
    for _ in range(rounds):
        mine += eval_seconds_ours(synth, size, evaluations)
        theirs += eval_seconds_naive(naive, x0, evaluations)
    a, b = statistics.median(mine), statistics.median(theirs)
    return {"ours_s": a, "naive_s": b, "speedup": b / a, "n": (len(mine), len(theirs))}


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """This machine's achieved fp32 matmul rate, FLOP/s (median of ``repeats`` n x n x n mm)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def _profiled(objective: TextureLoss, x: torch.Tensor) -> dict[str, float]:
    """Seconds of each stage in one evaluation (forward + backward) at x (1, 3, H, W)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        value_and_grad(objective, x)
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    return {stage: totals.get(label, 0.0) for stage, label in LABELS.items()}


def stage_times(objective: TextureLoss, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per stage over ``repeats`` evaluations (after one warm-up)."""
    _profiled(objective, x)
    runs = [_profiled(objective, x) for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in STAGES}


def evaluation_flops(objective: TextureLoss, x: torch.Tensor) -> dict[str, float]:
    """FLOPs of one evaluation counted by torch's FlopCounterMode (convs and matmuls).

    Returns {"forward": backbone forward FLOPs over all octaves, "total": forward + backward
    of the whole evaluation}.
    """
    x = x.detach().requires_grad_(True)
    with FlopCounterMode(display=False) as fwd:
        pyramid = gaussian_pyramid(x, len(objective.octave_weights), objective.circular)
        for level in pyramid:
            objective.backbone(level)
    with FlopCounterMode(display=False) as both:
        objective(x)["total"].backward()  # autograd.grad of a leaf breaks the counter
    return {"forward": float(fwd.get_total_flops()), "total": float(both.get_total_flops())}
