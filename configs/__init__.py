"""Typed configuration shared by the optimize engine and the generator trainer.

Precedence: command line > preset/TOML file > dataclass default. Preset files
live beside this module as ``NAME.toml``; their keys equal the field names
(``octave_weights``), which equal the CLI flags in kebab-case
(``--octave-weights``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from configs.editing import EditFields, check_edit, parse_maps
from data.errors import UserError

PRESET_DIR = Path(__file__).parent
# Learning-rate schedules of both trainers (training.loop.Schedule implements them).
SCHEDULES = ("cosine", "constant")
# train.py --mixed-precision: auto is resolved to no or bf16 for the device before training
# (training.runs.resolved_precision); fp16 is not offered (CPUs do not autocast it).
MIXED_PRECISIONS = ("no", "bf16", "auto")


@dataclass
class LossConfig:
    """The texture objective (``losses.texture.TextureLoss``; the design note it follows,
    DESIGN.md "The objective", lives outside this repository, in ../shared/). Defaults:
    snelgrove2017."""

    # features: the backbone's feature statistics (the fields below); patches: the pixel
    # patch distribution over a pyramid of scales (PatchFields), no network
    objective: str = "features"
    backbone: str = "auto"  # vgg19 | vgg16-hed | random | random-tiny | auto | trained FILE
    weights: str | None = (
        None  # local weights file for vgg19 (torchvision or Gatys vgg_conv layout)
    )
    pooling: str = "avg"  # avg | max (Gatys and Snelgrove use avg)
    padding: str = "valid"  # zeros | reflect | valid | circular (convolutions of the backbone)
    layers: list[str] = field(default_factory=lambda: ["pool1", "conv3_2"])
    layer_weights: list[float] | None = None  # one per layer; None = all 1
    octaves: int = 5  # Gaussian pyramid octaves matched jointly (1 = plain Gatys)
    octave_weights: list[float] | None = None  # one per octave; None = all 1
    spectrum_weight: float = 0.0  # beta of the Liu 2016 spectrum term (0 = off)
    tv_weight: float = 0.0  # lambda of the total-variation term (0 = off)
    # global: one divisor for all Gram terms (the seed presets); per_term: each (octave, layer)
    # term divided by its own target energy, so that weights are shares (losses/texture.py)
    normalisation: str = "global"
    autocorr_layers: list[str] = field(default_factory=list)  # feature autocorrelation (Gonthier)
    autocorr_weight: float = 1.0  # weight of each autocorrelation term (a share, per term)
    autocorr_shift: float = 0.5  # its largest shift, as a fraction of the exemplar's map side
    swd_layers: list[str] = field(default_factory=list)  # sliced Wasserstein (Heitz 2021)
    swd_weight: float = 1.0  # weight of each sliced Wasserstein term
    # Gatys: rescale filters to mean activation 1 on the exemplar. Off by default: with the
    # offline vgg16-hed weights it gave muddier colours and checkerboard noise (README).
    activation_norm: bool = False
    seed: int = 0  # seeds noise and random-backbone weights
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class PatchFields:
    """The patch objective's own fields (``objective = "patches"``; losses/patches.py)."""

    patch_size: int = 7  # side of the pixel patches matched
    projections: int = 64  # random directions drawn each step
    pyramid_factor: float = 0.75  # scale ratio between pyramid levels
    coarsest: int = 32  # the exemplar's short side at the coarsest scale, px
    max_patches: int = 65536  # output patches compared a step at most, a strided grid (0 = all)
    # optimize: projections per patch size and scale (0 = none; at most 1 at full size)
    nearest_iterations: int = 0
    # the exemplars tile, so their patches across the edges count (optimize.patches; training:
    # losses.patches.PatchPyramidLoss). auto | on | off; auto: where each one's edges join
    # (losses.patches.tiles)
    exemplar_wraps: str = "auto"


@dataclass
class SynthConfig(EditFields, PatchFields, LossConfig):
    """Everything ``synth.py`` needs; fields not used by a mode are ignored there."""

    size: str | None = None  # WxH of the output; None = the exemplar's size
    iterations: int = 300  # L-BFGS iterations per level; patches: Adam steps per fine scale
    levels: int = 1  # coarse-to-fine levels: synthesize at size/2^(L-1), upsample, repeat
    optimizer: str = "lbfgsb"  # lbfgsb (box bounds) | lbfgs-clamp | lbfgs-sigmoid
    history: int = 10  # L-BFGS history size (memory ~ 2 x history x image)
    tile: bool = False  # seamless (periodic) output: circular padding everywhere
    variations: int = 1  # number of outputs, seeds seed, seed+1, ...
    save_every: int = 0  # write a snapshot every K iterations (0 = never)
    bits: int = 8  # PNG bit depth of the output: 8 or 16
    coarse_iterations: int = 300  # patches: Adam steps at the layout (coarsest) scales
    # patches: Adam steps at full size, as a fraction of iterations; the fine scales go
    # linearly from iterations down to it (1 = iterations at every fine scale)
    final_fraction: float = 1.0
    lr: float = 0.02  # patches: Adam learning rate (pixels in [0, 1])
    # patches: before the nearest-patch projections of each layout scale, project the output
    # onto the exemplar's Fourier modulus, keeping its phase (Liu et al. 2016's projection):
    # a lattice keeps one period and angle over the whole output (optimize.patches).
    # auto | on | off; auto: where the exemplar is a lattice (losses.spectrum.lattice_share)
    spectrum_projection: str = "auto"
    # patches: how a synthesis starts: noise (grown coarse to fine) | blocks (the exemplars
    # quilted, refined at full size; quilted to wrap with --tile) | auto: blocks where the
    # exemplar is a lattice or repeats itself (optimize.patches.START_REPEAT)
    start: str = "auto"
    # patches: divide out the exemplars' light (their blur over an eighth of the short side):
    # auto | on | off; auto: where it varies and blocks start the output; never in edits
    even_light: str = "auto"
    # patches: match the exemplars' turned and mirrored copies too where the output is laid
    # out: off | on | auto; auto: where they look the same turned and mirrored (cells, discs;
    # data.symmetry); never in edits, remakes or material stacks. Off by default: fewer
    # repeats, but more smeared cells at 4x the exemplar (optimize.patches.EXEMPLAR_TURNS)
    exemplar_turns: str = "off"
    # patches, --tile on a lattice: the exemplar scaled (at most LATTICE_FIT) so that whole
    # periods fit the output (optimize.patches, losses.spectrum.lattice_fit)
    fit_lattice: bool = True
    # features: the backbone's forward/backward in fp32 | bf16 | auto (bf16 where the device
    # has native bf16: models.devices.fast_bf16); statistics, loss and L-BFGS stay fp32/fp64.
    # auto by default: the judge could not tell bf16 from fp32, at ~0.69x the time of an
    # evaluation (docs/decisions.md, 2026-12-02 session 7). patches: no network, always fp32
    # (bf16 is refused)
    precision: str = "auto"

    def __post_init__(self):
        check_values(self)


# The preset the Python API uses when none is named (``default_config``): its values, not the
# dataclass defaults, are what a caller gets. The commands choose theirs by what they are
# given (``synth_config``; ``train_config``, whose default is the painter preset).
DEFAULT_PRESET = {"SynthConfig": "patch_pyramid", "TrainConfig": "generator"}
# train.py's default for one exemplar: a painter of its quilted layout (models.layout).
PAINTER_PRESET = "painter"
# The default of the features objective (TextureSynthesizer's; the generator's objective).
FEATURES_PRESET = "autocorr_pyramid"


def default_values(cls, config: str | None) -> dict:
    """The values of preset or TOML file ``config``, or of ``cls``'s default preset if None."""
    name = config if config else DEFAULT_PRESET.get(cls.__name__)
    return read_config_file(name) if name else {}


def default_config(cls, **overrides):
    """``cls`` built from its default preset with ``overrides`` (None values ignored)."""
    return build_config(cls, default_values(cls, None), overrides)


# Fields only one objective of SynthConfig reads; the other one refuses them (a flag that
# would be ignored silently is a flag that lies).
PATCH_FIELDS = (
    "patch_size",
    "projections",
    "pyramid_factor",
    "coarsest",
    "coarse_iterations",
    "final_fraction",
    "lr",
    "nearest_iterations",
    "spectrum_projection",
    "exemplar_wraps",
    "start",
    "fit_lattice",
    "even_light",
    "exemplar_turns",
)


def features_fields() -> tuple[str, ...]:
    shared = {"seed", "device", "objective"}
    own = [f.name for f in dataclasses.fields(LossConfig) if f.name not in shared]
    return (*own, "levels", "optimizer", "history")


NON_NEGATIVE = (
    "spectrum_weight", "tv_weight", "autocorr_weight", "swd_weight", "layer_weights",
    "octave_weights", "iterations", "coarse_iterations", "save_every", "max_patches",
    "nearest_iterations", "remake_weight",
    "diversity_weight", "warmup_steps", "keep_checkpoints", "crop",
)  # fmt: skip
# accelerate's set_seed seeds NumPy too, which takes 32 bits; synth.py's seeds go to torch.
SEED_END = {"SynthConfig": 2**63, "TrainConfig": 2**32}


def check_values(cfg) -> None:
    """Refuse values no run can use (they used to run and write nonsense, or end in a
    traceback), for the fields ``cfg`` (a SynthConfig or a TrainConfig) has."""
    for name in NON_NEGATIVE:
        value = getattr(cfg, name, None)
        if any(v < 0 for v in (value if isinstance(value, list) else [value] if value else [])):
            raise UserError(f"--{name.replace('_', '-')} must not be negative (got {value})")
    limits = {"history": 1, "variations": 1, "patch_size": 2, "projections": 1, "levels": 1}
    for name, low in limits.items():
        if getattr(cfg, name, low) < low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low}")
    if not cfg.lr > 0:
        raise UserError("--lr must be positive")
    if getattr(cfg, "bits", 8) not in (8, 16):
        raise UserError("--bits must be 8 or 16")
    check_seed(cfg.seed, getattr(cfg, "variations", 1), SEED_END[type(cfg).__name__])
    if not 0 < cfg.autocorr_shift <= 1:
        raise UserError("--autocorr-shift must lie in (0, 1]")
    if not 0 < cfg.pyramid_factor < 1:
        raise UserError("--pyramid-factor must lie strictly between 0 and 1")
    if not 0 < getattr(cfg, "final_fraction", 1) <= 1:
        raise UserError("--final-fraction must lie in (0, 1]")
    check_pooling(cfg.pooling)
    check_precision(cfg)
    check_patch_choices(cfg)


def check_patch_choices(cfg) -> None:
    """The patch objective's named choices, for the fields ``cfg`` has."""
    if hasattr(cfg, "spectrum_projection"):
        check_choice(
            "--spectrum-projection",
            cfg.spectrum_projection,
            "losses.spectrum",
            "SPECTRUM_PROJECTIONS",
        )
    if hasattr(cfg, "exemplar_wraps"):
        check_choice("--exemplar-wraps", cfg.exemplar_wraps, "losses.patches", "EXEMPLAR_WRAPS")
    if hasattr(cfg, "start"):
        check_choice("--start", cfg.start, "optimize.patches", "STARTS")
    if hasattr(cfg, "even_light"):
        check_choice("--even-light", cfg.even_light, "data.light", "EVEN_LIGHT")
    if hasattr(cfg, "exemplar_turns"):
        check_choice("--exemplar-turns", cfg.exemplar_turns, "optimize.patches", "EXEMPLAR_TURNS")


def check_precision(cfg) -> None:
    """``precision`` (SynthConfig's) must name one, and bf16 needs a network to apply to."""
    precision = getattr(cfg, "precision", None)
    if precision is None:
        return
    check_choice("--precision", precision, "models.devices", "PRECISIONS")
    if precision == "bf16" and cfg.objective == "patches":
        raise UserError(
            "--precision bf16: the patches objective has no network and runs in fp32; "
            "bf16 is for the features objective's backbone (--objective features)"
        )


def check_pooling(pooling: str) -> None:
    """The one check of a backbone's pooling name (the models look it up unchecked)."""
    check_choice("pooling", pooling, "models.vgg", "POOLINGS")


def check_seed(seed: int, variations: int, end: int = SEED_END["SynthConfig"]) -> None:
    """Refuse a seed whose variations (seed, seed + 1, ...) leave [0, end)."""
    if not (0 <= seed and seed + variations <= end):
        raise UserError(f"--seed must lie in [0, 2^{end.bit_length() - 1}) (with its variations)")


check_synth_values = check_values  # the name optimize.patches imports


def synth_config(config: str | None, cli_values: dict, log=print) -> SynthConfig:
    """synth.py's config: CLI > ``config`` preset/file > the default preset > dataclasses.

    Without ``config``, the default preset is patch_pyramid, unless ``objective`` is
    "features" or an option only the features objective reads is given (``--backbone``,
    ``--layers``, ...): then it is autocorr_pyramid, said in one line. An option of the
    objective not in use is an error, not ignored.
    """
    given = {k for k, v in cli_values.items() if v is not None}
    name = config
    if name is None:
        objective = cli_values.get("objective")
        wants = sorted(given & set(features_fields()))
        features = objective == "features" or (objective is None and bool(wants))
        name = FEATURES_PRESET if features else DEFAULT_PRESET["SynthConfig"]
        if features and objective is None:
            flags = ", ".join("--" + k.replace("_", "-") for k in wants)
            log(f"{flags}: using the features objective ({FEATURES_PRESET} preset)")
    cfg = build_config(SynthConfig, read_config_file(name), cli_values)
    if cfg.objective not in ("features", "patches"):
        raise UserError(f"unknown objective '{cfg.objective}'; use features or patches")
    check_synth_values(cfg)
    steps = cfg.iterations + (cfg.coarse_iterations if cfg.objective == "patches" else 0)
    if steps < 1:  # the API's iterations=0 evaluates the start; as a command it writes noise
        flags = "--iterations" + (" and --coarse-iterations" if cfg.objective == "patches" else "")
        raise UserError(f"{flags} 0 would write the start image (noise); give at least 1")
    other = features_fields() if cfg.objective == "patches" else PATCH_FIELDS
    wrong = [k for k in other if k in given]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        hint = "a features preset" if cfg.objective == "patches" else "--config patch_pyramid"
        raise UserError(f"{flags}: not used by the {cfg.objective} objective (see {hint})")
    if "fit_lattice" in given and not cfg.tile:
        raise UserError("--fit-lattice: only --tile uses it (whole periods across a tile)")
    check_edit(cfg, given)
    return cfg


def preset_names(cls=None) -> list[str]:
    """Names of the bundled presets; with ``cls``, only those whose keys are all its fields
    (optimize presets for ``SynthConfig``, the generator preset for ``TrainConfig``)."""
    names = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
    if cls is None:
        return names
    fields = {f.name for f in dataclasses.fields(cls)}
    return [n for n in names if set(read_config_file(n)) <= fields]


def read_config_file(name_or_path: str) -> dict:
    """Read a preset name (``gatys2015``) or a TOML file path into a flat dict."""
    path = Path(name_or_path)
    preset = PRESET_DIR / f"{name_or_path}.toml"
    if not path.suffix and preset.is_file():
        path = preset  # a preset name wins over a folder of that name (generator/)
    elif path.is_dir():
        raise UserError(f"config {path} is a directory; give a preset name or a .toml file")
    elif not path.suffix:
        path = preset
        if not path.is_file():
            raise UserError(
                f"unknown preset '{name_or_path}'; choose one of: {', '.join(preset_names())}"
                " or give a .toml file"
            )
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None
    return {k.replace("-", "_"): v for k, v in values.items()}


def _type_ok(annotation: str, value) -> bool:
    """Whether ``value`` fits a field annotated ``annotation`` (a string: ``int``,
    ``list[float] | None``, ...); bool is not an int here, an int is a float."""
    kinds = [k.strip() for k in annotation.split("|")]
    for kind in kinds:
        if kind == "None" and value is None:
            return True
        if kind == "bool" and isinstance(value, bool):
            return True
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind == "str" and isinstance(value, str):
            return True
        if kind.startswith("list[") and isinstance(value, list):
            inner = kind[5:-1]
            return all(_type_ok(inner, v) for v in value)
    return False


def build_config(cls, file_values: dict, cli_values: dict):
    """Merge dataclass defaults < file values < CLI values (those not None), type-checked;
    every float must be finite."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(file_values) - set(fields))
    if unknown:
        raise UserError(f"unknown config key(s): {', '.join(unknown)}")
    merged = dict(file_values)
    merged.update({k: v for k, v in cli_values.items() if v is not None and k in fields})
    for name, value in merged.items():
        annotation = str(fields[name].type)
        if not _type_ok(annotation, value):
            raise UserError(f"config value {name} = {value!r} is not of type {annotation}")
        numbers = value if isinstance(value, list) else [value]
        bad = [v for v in numbers if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise UserError(f"config value {name} = {value!r} must be finite")
    return cls(**merged)


@dataclass
class TrainConfig(PatchFields, LossConfig):
    """Everything ``train.py`` needs: the shared objective plus the generator and its training."""

    generator: str = "base"  # variant in models.generator.GENERATORS
    output: str = "sigmoid"  # generator RGB: sigmoid | clamp (models.generator.OUTPUTS)
    tile: bool = False  # periodic objective (circular backbone); generate seamless by default
    steps: int = 1500  # optimizer steps
    batch_size: int = 2  # generated images per step (per process)
    image_size: int = 256  # side of the generated training images; coarse octaves see them whole
    crop: int = 128  # backbone view of each finer octave: one random crop of this side (0 = whole)
    lr: float = 2e-3  # Adam learning rate after warm-up
    lr_schedule: str = "cosine"  # cosine (to lr / 10) | constant
    warmup_steps: int = 50  # linear learning-rate warm-up
    diversity_weight: float = 0.0  # Ulyanov 2017 diversity term (needs batch_size >= 2)
    nearest_weight: float = 0.0  # patches: pull towards the nearest-patch projection (0 = none)
    # features: plus the patch objective (with nearest_weight) at this share of the loss, each
    # objective divided by its value on a flat start (losses.objective.Shares); 0 = none
    patch_weight: float = 0.0
    # weight of a multi-scale patch discriminator's hinge term (generator.adversary); 0 = none
    adversarial_weight: float = 0.0
    # 2, 4 or 8: train a painter of the exemplar quilted at 1/layout of the size instead of a
    # generator of noise (models.layout; the objective is then the crops' own); 0 = none
    layout: int = 0
    # --layout: divide out the exemplar's light (data.light): auto | on | off; auto: where it
    # varies by data.light.LIGHT_SPREAD or more (not a material stack)
    even_light: str = "auto"
    mixed_precision: str = "no"  # no | bf16 | auto (accelerate autocast; Gram and FFT stay fp32)
    checkpoint_every: int = 250  # steps between checkpoint-{step} directories
    keep_checkpoints: int = 2  # newest checkpoint-{step} directories kept (0 = all)
    log_every: int = 10  # steps between TensorBoard scalars
    sample_every: int = 250  # steps between TensorBoard sample images
    # NAME=FILE maps aligned with the (albedo) exemplar: a material stack, rendered together
    maps: list[str] = field(default_factory=list)

    def __post_init__(self):
        check_values(self)
        check_training(self)


@dataclass
class BackboneConfig:
    """``train.py --task backbone``: a VGG-style classifier on a folder-per-class collection."""

    arch: str | None = None  # vgg19 | vgg16 | vgg19-tiny; None = the --init backbone's, or vgg19
    init: str | None = None  # start from this backbone's convs (name or file); None = scratch
    pooling: str = "max"  # max | avg pooling in the trunk while training
    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # crops per step (per process)
    image_size: int = 96  # side of the random training crops (and the held-out centre crops)
    val_fraction: float = 0.2  # held-out share of each class (deterministic by seed)
    lr: float = 1e-3  # AdamW learning rate after warm-up
    lr_schedule: str = "cosine"  # cosine (to lr / 10) | constant
    warmup_steps: int = 50  # linear learning-rate warm-up
    mixed_precision: str = "no"  # no | bf16 | fp16 | auto (accelerate autocast)
    checkpoint_every: int = 250  # steps between checkpoint-{step} directories (with evaluation)
    keep_checkpoints: int = 2  # newest checkpoint-{step} directories kept (0 = all)
    log_every: int = 10  # steps between TensorBoard scalars
    seed: int = 0  # split, initial weights, crops
    device: str = "auto"  # auto | cpu (GPUs: accelerate launch)

    def __post_init__(self):
        if self.image_size < 32 or self.steps < 1 or self.batch_size < 1:
            raise UserError(
                "--image-size must be >= 32 (five poolings), --steps and --batch-size >= 1"
            )
        check_pooling(self.pooling)
        if self.mixed_precision not in (*MIXED_PRECISIONS, "fp16"):
            raise UserError("--mixed-precision must be no, bf16, fp16 or auto")
        check_choice("--arch", self.arch, "models.vgg", "ARCHS", optional=True)
        check_choice("lr-schedule", self.lr_schedule, "configs", "SCHEDULES")
        check_seed(self.seed, 1, SEED_END["TrainConfig"])


@dataclass
class GenerateConfig:
    """``synth.py --mode generate``: the objective and architecture come from the checkpoint."""

    checkpoint: str | None = None  # OUTDIR/final, a checkpoint-STEP directory or its file
    size: str | None = None  # WxH of the output; None = the training canvas
    seed: int = 0  # noise seed (variation i uses seed + i)
    variations: int = 1  # number of outputs, out_000.png, ...
    bits: int = 8  # PNG bit depth: 8 or 16
    tile: bool | None = None  # seamless output; None = as the generator was trained
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # fp32 | bf16 | auto. fp32 by default, unlike optimize mode: bf16 halves the time of a
    # 4096^2 texture on an AVX-512 BF16 CPU but moves pixels by up to ~24 8-bit levels, which
    # a 16-bit output would show (docs/decisions.md, session 9).
    precision: str = "fp32"
    # Adam steps of the patch engine at full size, started from each sample, against the
    # exemplars given on the command line: the sample's layout with the exemplar's grain
    # (docs/generator.md). None: cli.generate.REFINE_STEPS with exemplars, 0 without.
    refine_steps: int | None = None
    # The pyramid scale a refinement enters at: the sample downscaled to the patch engine's
    # first scale of at least this, refined there and at every finer scale (``refine_steps``
    # each). 1: at full size only, which kept the sample's broken walls (docs/generator.md).
    # None: cli.generate.REFINE_SCALE.
    refine_scale: float | None = None

    def __post_init__(self):
        if self.bits not in (8, 16) or self.variations < 1:
            raise UserError("--bits must be 8 or 16 and --variations at least 1")
        if self.refine_steps is not None and self.refine_steps < 0:
            raise UserError("--refine-steps must be 0 (no refinement) or more")
        if self.refine_scale is not None and not 0 < self.refine_scale <= 1:
            raise UserError("--refine-scale must be in (0, 1] (1: full size only)")
        check_seed(self.seed, self.variations)
        check_choice("--precision", self.precision, "models.devices", "PRECISIONS")


def check_choice(flag: str, value, module: str, registry: str, optional: bool = False) -> None:
    """Refuse ``value`` unless it is a key of ``module.registry`` (imported only now: the
    registries live beside what they build)."""
    import importlib

    choices = getattr(importlib.import_module(module), registry)
    if not (optional and value is None) and value not in choices:
        raise UserError(f"unknown {flag} '{value}'; choose from {', '.join(choices)}")


def check_training(cfg: TrainConfig) -> None:
    """The generator trainer's own checks (those that need no backbone)."""
    check_choice("generator", cfg.generator, "models.generator", "GENERATORS")
    check_choice("output", cfg.output, "models.generator", "OUTPUTS")
    check_choice("lr-schedule", cfg.lr_schedule, "configs", "SCHEDULES")
    if cfg.mixed_precision not in MIXED_PRECISIONS:
        raise UserError(
            "--mixed-precision must be no, bf16 or auto (fp16 is not supported on CPUs)"
        )
    if min(cfg.steps, cfg.batch_size, cfg.checkpoint_every, cfg.log_every, cfg.sample_every) < 1:
        raise UserError("steps, batch-size and the -every intervals must be at least 1")
    from models.generator import GENERATORS

    multiple = 2 ** (len(GENERATORS[cfg.generator]["channels"]) - 1)
    if cfg.image_size % multiple and not cfg.layout:
        raise UserError(
            f"--image-size must be a multiple of {multiple} for generator {cfg.generator}"
        )
    check_training_terms(cfg)
    parse_maps(cfg.maps)
    if cfg.layout not in (0, 2, 4, 8):
        raise UserError("--layout must be 0 (none), 2, 4 or 8")
    check_choice("--even-light", cfg.even_light, "data.light", "EVEN_LIGHT")
    if cfg.even_light != "auto" and not cfg.layout:
        raise UserError("--even-light: only a painter (--layout) quilts the exemplar")
    if cfg.layout and cfg.image_size % cfg.layout:
        raise UserError(f"--image-size must be a multiple of --layout ({cfg.layout})")
    terms = cfg.adversarial_weight or cfg.diversity_weight or cfg.patch_weight
    if cfg.layout and (terms or cfg.nearest_weight or cfg.objective != "features"):
        raise UserError(
            "--layout learns to paint the exemplar's own crops: no --objective, "
            "--patch-weight, --nearest-weight, --adversarial-weight or --diversity-weight"
        )


def check_training_terms(cfg: TrainConfig) -> None:
    """The generator's objective and the terms added to it: each needs its objective."""
    if cfg.objective not in ("features", "patches"):
        raise UserError(f"unknown objective '{cfg.objective}'; use features or patches")
    for option, weight in (("patch", cfg.patch_weight), ("adversarial", cfg.adversarial_weight)):
        if not 0 <= weight < math.inf:
            raise UserError(f"--{option}-weight must be a number >= 0")
    if cfg.patch_weight and cfg.objective != "features":
        raise UserError("--patch-weight adds the patch objective to --objective features")
    patches = cfg.objective == "patches" or cfg.patch_weight > 0
    hint = "(--objective patches, or --patch-weight with features)"
    if not patches and cfg.nearest_weight:
        raise UserError(f"--nearest-weight needs the patches objective {hint}")
    if cfg.nearest_weight < 0:
        raise UserError("--nearest-weight must be >= 0")
    if not patches and cfg.exemplar_wraps != "auto":
        raise UserError(f"--exemplar-wraps needs the patches objective {hint}")
    if cfg.objective == "patches" and cfg.diversity_weight:
        raise UserError("--diversity-weight needs the features objective (it uses the backbone)")
    if cfg.diversity_weight and cfg.batch_size < 2:
        raise UserError("--diversity-weight needs --batch-size 2 or more")


# What only a generator of noise reads (its network and its objective; TrainConfig also has
# the features and patch fields): a painter paints the exemplar's own crops.
NOISE_ONLY = (
    "generator",
    "output",
    "crop",
    "diversity_weight",
    "patch_weight",
    "adversarial_weight",
)


def noise_fields() -> tuple[str, ...]:
    """TrainConfig fields that only a generator of noise reads (``layout = 0``)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    patches = [f.name for f in dataclasses.fields(PatchFields)]
    names = dict.fromkeys(["objective", *NOISE_ONLY, *features_fields(), *patches])
    return tuple(n for n in names if n in fields)


def train_config(
    config: str | None, cli_values: dict, exemplars: int = 1, resumed: dict | None = None, log=print
) -> TrainConfig:
    """train.py's config: CLI > ``config`` preset/file > the default preset > dataclasses.

    Without ``config`` the preset is painter (a painter of the exemplar's quilted layout,
    ``models.layout``) for one exemplar, and generator (a generator of noise) for several
    ``exemplars``, with ``--layout 0``, with an option only a generator of noise reads
    (``noise_fields``; said in one line), or to resume a run (``resumed``: its saved config)
    that trained one. A painter refuses those options rather than ignore them.
    """
    given = {k for k, v in cli_values.items() if v is not None}
    noise_only = set(noise_fields())
    name = config
    if name is None:
        wants = sorted(given & noise_only)
        if "layout" in given or resumed is not None:
            noise = not (cli_values["layout"] if "layout" in given else resumed.get("layout", 0))
        elif wants:
            flags = ", ".join("--" + k.replace("_", "-") for k in wants)
            log(f"{flags}: training a generator of noise (generator preset)")
            noise = True
        elif exemplars > 1:
            log("several exemplars: training a generator of noise (generator preset)")
            noise = True
        else:
            log("training a painter of the exemplar's quilted layout (painter preset; "
                "--config generator: a generator of noise)")  # fmt: skip
            noise = False
        name = DEFAULT_PRESET["TrainConfig"] if noise else PAINTER_PRESET
    values = read_config_file(name)
    cfg = build_config(TrainConfig, values, cli_values)
    wrong = sorted((given | set(values)) & noise_only) if cfg.layout else []
    if wrong:
        keys = ", ".join(wrong)
        raise UserError(
            f"{keys}: a painter (--layout {cfg.layout}) paints the exemplar's own crops and "
            "reads none of them; drop them, or --layout 0 for a generator of noise"
        )
    return cfg


def generate_config(values: dict) -> GenerateConfig:
    """``synth.py --mode generate``'s config from the command line (None = the default)."""
    return build_config(GenerateConfig, {}, values)
