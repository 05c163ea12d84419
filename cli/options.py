"""The command-line options the entry points share, and the choices the registries give.

synth.py and train.py take the same ``LossConfig`` fields; declaring each option once keeps
their names and help identical (STYLE.md: flag names equal config field names). Options
whose value is a registry key are Enums built from the registry; entry points hand the
configs plain strings (``plain_values``).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from cli.console import parse_list
from configs import MIXED_PRECISIONS, SCHEDULES
from data.light import EVEN_LIGHT
from losses.patches import EXEMPLAR_WRAPS
from losses.spectrum import SPECTRUM_PROJECTIONS
from losses.texture import NORMALISATIONS
from models.backbones import BACKBONES
from models.devices import PRECISIONS
from models.generator import GENERATORS, OUTPUTS
from models.vgg import ARCHS, PADDINGS, POOLINGS
from optimize.engine import OBJECTIVES
from optimize.lbfgs import METHODS
from optimize.patches import EXEMPLAR_TURNS, STARTS

Opt = typer.Option


def registry_choices(name: str, keys) -> type[Enum]:
    """A str-valued Enum of a registry's ``keys``: typer lists them in ``--help`` and refuses
    any other value with a usage error (exit code 2), so a new registry entry needs no CLI
    change. Only for closed sets: options that also take a file path stay strings."""
    return Enum(name, {k: k for k in keys}, type=str)


PoolingName = registry_choices("PoolingName", POOLINGS)
PaddingName = registry_choices("PaddingName", PADDINGS)
NormalisationName = registry_choices("NormalisationName", NORMALISATIONS)
ObjectiveName = registry_choices("ObjectiveName", OBJECTIVES)
OptimizerName = registry_choices("OptimizerName", METHODS)
GeneratorName = registry_choices("GeneratorName", GENERATORS)
OutputName = registry_choices("OutputName", OUTPUTS)
ScheduleName = registry_choices("ScheduleName", SCHEDULES)
ArchName = registry_choices("ArchName", ARCHS)
PrecisionName = registry_choices("PrecisionName", PRECISIONS)
MixedPrecisionName = registry_choices("MixedPrecisionName", MIXED_PRECISIONS)
SpectrumProjection = registry_choices("SpectrumProjection", SPECTRUM_PROJECTIONS)
ExemplarWraps = registry_choices("ExemplarWraps", EXEMPLAR_WRAPS)
StartName = registry_choices("StartName", STARTS)
EvenLight = registry_choices("EvenLight", EVEN_LIGHT)
ExemplarTurns = registry_choices("ExemplarTurns", EXEMPLAR_TURNS)


def plain_values(values: dict) -> dict:
    """``values`` (an entry point's parsed options) with Enum choices as their plain string
    values: configs and the code below the CLI see strings only."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}


# Not an Enum: a backbone file written by train_backbone.py is a choice too.
Backbone = Annotated[str | None, Opt(help=f"{' | '.join(BACKBONES)} | auto | trained FILE.")]
Weights = Annotated[str | None, Opt(help="Local vgg19 weights file (torchvision or vgg_conv).")]
Layers = Annotated[str | None, Opt(help="Comma-separated layers, Gatys or Keras names.")]
LayerWeights = Annotated[str | None, Opt(help="Comma-separated weight per layer.")]
Octaves = Annotated[int | None, Opt(help="Gaussian pyramid octaves matched jointly.")]
OctaveWeights = Annotated[str | None, Opt(help="Comma-separated weight per octave.")]
SpectrumWeight = Annotated[float | None, Opt(help="Weight of the Fourier spectrum term.")]
TvWeight = Annotated[float | None, Opt(help="Weight of the total-variation term.")]
Normalisation = Annotated[
    NormalisationName | None,
    Opt(help="Gram term balance: global (one divisor), per_term (weights = shares)."),
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
Pooling = Annotated[PoolingName | None, Opt(help="Backbone pooling.")]
Padding = Annotated[PaddingName | None, Opt(help="Backbone padding (valid: no padding).")]
ActivationNorm = Annotated[
    bool | None,
    Opt(
        "--activation-norm/--no-activation-norm",
        help="Rescale filters to mean activation 1 on the exemplar.",
    ),
]
Objective = Annotated[
    ObjectiveName | None,
    Opt(help="features (backbone statistics) or patches (pixel patches, no network)."),
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
    Opt(help="patches: nearest-exemplar-patch projections a scale (0 = none; 1 at full size)."),
]
Precision = Annotated[
    PrecisionName | None,
    Opt(
        help="features: the backbone's precision (default auto: bf16 on a CUDA GPU or CPU with "
        "native bf16, AVX-512 BF16 or AMX, else fp32); statistics and L-BFGS stay fp32. "
        "patches: no network, always fp32. generate mode: the generator's precision, default "
        "fp32 (bf16 is ~2x faster on such a CPU, pixels within a few 8-bit levels)."
    ),
]
Progress = Annotated[bool, Opt("--progress/--no-progress", help="Show a progress bar.")]


def parse_objective_lists(values: dict) -> dict:
    """Turn the comma-separated list options of ``values`` into lists, in place."""
    kinds = {"layer_weights": float, "octave_weights": float}
    for key in ("layers", "layer_weights", "octave_weights", "autocorr_layers", "swd_layers"):
        kind = kinds.get(key, str)
        values[key] = parse_list(values[key], kind, key.replace("_", "-"))
    return values
