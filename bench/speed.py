"""Optimize-mode speed: seconds per L-BFGS evaluation and seconds to a fixed loss, ours vs naive.

Both sides are timed in the same process, alternately, on the same objective (same backbone
weights, same exemplar, same start image), so their ratio survives a noisy shared machine.
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.naive import NaiveTextureLoss, naive_optimize, timed
from configs import SynthConfig, build_config, read_config_file
from losses.objective import fit_octave_count
from optimize.features import TextureSynthesizer, initial_noise
from optimize.lbfgs import optimize


class _Stop(Exception):
    """Ends an optimisation from inside its loss function (budget spent or target reached)."""


def preset_config(preset: str, **overrides) -> SynthConfig:
    """The preset's ``SynthConfig`` with ``overrides`` (None values ignored) applied."""
    return build_config(SynthConfig, read_config_file(preset), overrides)


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
