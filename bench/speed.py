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
from contextlib import suppress
from itertools import pairwise

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from bench.naive import naive_optimize
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


def _evaluation_periods(run, loss, evaluations: int) -> list[float]:
    """Seconds between the starts of the first ``evaluations + 1`` calls of ``loss`` made by
    ``run(loss)`` (an optimisation, stopped there), the first (warm-up) period dropped."""
    starts: list[float] = []

    def counted(x):
        if len(starts) > evaluations:
            raise _Stop
        starts.append(time.perf_counter())
        return loss(x)

    with suppress(_Stop):
        run(counted)
    gaps = [b - a for a, b in pairwise(starts)]
    return gaps[1:] if len(gaps) > 1 else gaps


def _seconds_to_loss(run, loss, target: float, cap: float) -> tuple[float, bool]:
    """(seconds until ``run(loss)`` (an optimisation) evaluates a loss <= ``target``, whether
    it got there); ``cap`` seconds end an optimisation that has not got there."""
    start = time.perf_counter()
    reached = []

    def checked(x):
        terms = loss(x)
        if float(terms["total"].detach()) <= target:
            reached.append(time.perf_counter() - start)
        if reached or time.perf_counter() - start > cap:
            raise _Stop
        return terms

    with suppress(_Stop):
        run(checked)
    return (reached[0], True) if reached else (time.perf_counter() - start, False)


def _runners(synth: TextureSynthesizer, x0: torch.Tensor, iterations: int, naive_steps: int):
    """(ours, naive): each ``run(loss)`` optimises ``loss`` from ``x0``, ours with the preset's
    L-BFGS for ``iterations``, naive with ``naive_optimize`` for ``naive_steps`` steps."""
    cfg = synth.config

    def run_ours(loss):
        optimize(loss, x0, iterations, cfg.optimizer, cfg.history)

    def run_naive(loss):
        naive_optimize(loss, x0, steps=naive_steps)

    return run_ours, run_naive


def time_to_loss(synth, naive, size, fraction: float, cap: float, iterations=1000) -> dict:
    """Seconds for ours and naive to bring the loss from the seeded noise start to
    ``fraction`` of its initial value (single level, the preset's objective); ``iterations``
    (ours) and L-BFGS steps (naive) at most, if ``cap`` seconds have not ended the race."""
    objective = synth.objective(1)
    x0 = initial_noise(synth.exemplars, size, synth.config.seed)
    with torch.no_grad():
        start_loss = float(objective(x0)["total"])
    target = fraction * start_loss
    run_ours, run_naive = _runners(synth, x0, iterations, iterations)
    race = {"start_loss": start_loss, "target": target}
    for who, run, loss in (("ours", run_ours, objective), ("naive", run_naive, naive)):
        race[f"{who}_s"], race[f"{who}_reached"] = _seconds_to_loss(run, loss, target, cap)
    return race


def per_evaluation(synth, naive, size, evaluations: int, rounds: int) -> dict:
    """Median seconds per evaluation, ours and naive, alternating ``rounds`` times: the periods
    between evaluation starts inside real optimisations, so the optimizer's time is included."""
    x0 = initial_noise(synth.exemplars, size, synth.config.seed)
    run_ours, run_naive = _runners(synth, x0, evaluations + 1, 1 + evaluations // 20)
    mine, theirs = [], []
    for _ in range(rounds):
        mine += _evaluation_periods(run_ours, synth.objective(1), evaluations)
        theirs += _evaluation_periods(run_naive, naive, evaluations)
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


def stage_row(synth: TextureSynthesizer, side: int, evaluation_s: float, repeats: int) -> dict:
    """Where an evaluation at ``side`` px goes: median seconds per stage, the optimizer's share
    (``evaluation_s``, the period measured inside a run, minus the stages), the FLOPs and the
    achieved GFLOP/s, with the matmul peak measured now (the same moment's load)."""
    objective = synth.objective(1)
    x = initial_noise(synth.exemplars, (side, side), 0)
    row = stage_times(objective, x, repeats)
    flops = evaluation_flops(objective, x)
    row["optimizer"] = max(0.0, evaluation_s - sum(row.values()))
    return row | {
        "peak_gflops": matmul_peak() / 1e9,
        "gflop_forward": flops["forward"] / 1e9,
        "gflop_total": flops["total"] / 1e9,
        "fwd_gflops": flops["forward"] / 1e9 / row["forward"],
        "all_gflops": flops["total"] / 1e9 / (row["forward"] + row["backward"]),
    }


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
