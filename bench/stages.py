"""Where an evaluation's time goes, and the backbone's achieved FLOP/s.

``stage_times`` replays ``TextureLoss.forward`` with a timer around each stage (same calls,
same order, and it checks that the total equals the objective's own), then times the
backward pass. The optimizer's share is measured elsewhere: the period between evaluations
inside a real L-BFGS run minus the evaluation itself.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import torch
from torch.utils.flop_counter import FlopCounterMode

from losses import TextureLoss, gaussian_pyramid
from losses.spectrum import spectrum_loss
from losses.tv import total_variation

STAGES = ("pyramid", "forward", "gram", "spectrum", "tv", "backward")


def _evaluate(objective: TextureLoss, x: torch.Tensor, clock: dict[str, float]) -> torch.Tensor:
    """One evaluation (forward + backward) of ``objective`` at x (1, 3, H, W); adds each
    stage's seconds to ``clock``; returns the total loss."""

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        clock[name] += now - since
        return now

    x = x.detach().requires_grad_(True)
    t = time.perf_counter()
    pyramid = gaussian_pyramid(x, len(objective.octave_weights), objective.circular)
    t = lap("pyramid", t)
    total = x.new_zeros((), dtype=torch.float32)
    for s, (level, v) in enumerate(zip(pyramid, objective.octave_weights, strict=True)):
        if v == 0:
            continue
        feats = objective.backbone(level)
        t = lap("forward", t)
        octave = sum(objective.feature_terms(s, feats).values(), x.new_zeros(()))
        total = total + v * octave
        t = lap("gram", t)
    if objective.spectrum_weight:
        target = objective.spectrum_target(tuple(x.shape[-2:])).to(x.device)
        total = total + objective.spectrum_weight * spectrum_loss(x, target)
        t = lap("spectrum", t)
    if objective.tv_weight:
        total = total + objective.tv_weight * total_variation(x.float(), objective.circular)
        t = lap("tv", t)
    torch.autograd.grad(total, x)
    lap("backward", t)
    return total.detach()


def stage_times(objective: TextureLoss, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per stage over ``repeats`` evaluations (after one warm-up)."""
    with torch.no_grad():
        expected = float(objective(x)["total"])
    got = float(_evaluate(objective, x, defaultdict(float)))
    if abs(got - expected) > 1e-4 * max(1.0, abs(expected)):
        raise RuntimeError(f"stage replay gives loss {got}, the objective {expected}")
    runs = []
    for _ in range(repeats):
        clock: dict[str, float] = defaultdict(float)
        _evaluate(objective, x, clock)
        runs.append(clock)
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
