"""The texture objective's command-line options, shared by synth.py and train.py.

Both entry points take the same ``LossConfig`` fields; declaring each option once keeps their
names and help identical (STYLE.md: flag names equal config field names).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import parse_list

Opt = typer.Option

Backbone = Annotated[
    str | None, Opt(help="vgg19 | vgg16-hed | random | random-tiny | auto | trained FILE.")
]
Weights = Annotated[str | None, Opt(help="Local vgg19 weights file (torchvision or vgg_conv).")]
Layers = Annotated[str | None, Opt(help="Comma-separated layers, Gatys or Keras names.")]
LayerWeights = Annotated[str | None, Opt(help="Comma-separated weight per layer.")]
Octaves = Annotated[int | None, Opt(help="Gaussian pyramid octaves matched jointly.")]
OctaveWeights = Annotated[str | None, Opt(help="Comma-separated weight per octave.")]
SpectrumWeight = Annotated[float | None, Opt(help="Weight of the Fourier spectrum term.")]
TvWeight = Annotated[float | None, Opt(help="Weight of the total-variation term.")]
Normalisation = Annotated[
    str | None, Opt(help="Gram term balance: global (one divisor) | per_term (weights = shares).")
]
AutocorrLayers = Annotated[
    str | None, Opt(help="Comma-separated layers whose feature autocorrelation is matched.")
]
AutocorrWeight = Annotated[float | None, Opt(help="Weight of each autocorrelation term.")]
AutocorrShift = Annotated[
    float | None, Opt(help="Autocorrelation's largest shift, fraction of the exemplar's side.")
]
SwdLayers = Annotated[
    str | None, Opt(help="Comma-separated layers whose sliced Wasserstein distance is matched.")
]
SwdWeight = Annotated[float | None, Opt(help="Weight of each sliced Wasserstein term.")]
Pooling = Annotated[str | None, Opt(help="Backbone pooling: avg | max.")]
Padding = Annotated[str | None, Opt(help="Backbone padding: zeros | reflect | valid | circular.")]
ActivationNorm = Annotated[
    bool | None,
    Opt(
        "--activation-norm/--no-activation-norm",
        help="Rescale filters to mean activation 1 on the exemplar.",
    ),
]
Objective = Annotated[
    str | None, Opt(help="features (backbone statistics) | patches (pixel patches, no network).")
]
PatchSize = Annotated[int | None, Opt(help="patches: side of the pixel patches.")]
Projections = Annotated[
    int | None, Opt(help="patches: random directions a step (from a bank of 256).")
]
PyramidFactor = Annotated[float | None, Opt(help="patches: scale ratio of levels.")]
Coarsest = Annotated[
    int | None, Opt(help="patches: exemplar's short side at the coarsest scale, px.")
]
MaxPatches = Annotated[
    int | None,
    Opt(help="patches: at most this many output patches a step, on a strided grid (0 = all)."),
]
NearestIterations = Annotated[
    int | None,
    Opt(help="patches: nearest-exemplar-patch projections at every scale (0 = none)."),
]
Progress = Annotated[bool, Opt("--progress/--no-progress", help="Show a progress bar.")]


def parse_objective_lists(values: dict) -> dict:
    """Turn the comma-separated list options of ``values`` into lists, in place."""
    kinds = {"layer_weights": float, "octave_weights": float}
    for key in ("layers", "layer_weights", "octave_weights", "autocorr_layers", "swd_layers"):
        kind = kinds.get(key, str)
        values[key] = parse_list(values[key], kind, key.replace("_", "-"))
    return values
