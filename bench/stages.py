"""Where an evaluation's time goes, and the backbone's achieved FLOP/s.

``stage_times`` runs the optimizer's own evaluation (``optimize.lbfgs.value_and_grad``) under
``torch.profiler`` and reads the time of each stage from the ``record_function`` labels in the
product's code (``losses/texture.py``, ``optimize/lbfgs.py``). The optimizer's share is
measured elsewhere: the period between evaluations inside a real L-BFGS run minus the
evaluation itself.
"""

from __future__ import annotations

import statistics

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from losses import TextureLoss, gaussian_pyramid
from optimize.lbfgs import value_and_grad

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
