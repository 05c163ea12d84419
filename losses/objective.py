"""Build the texture objective (backbone + targets) from a config, checking sizes."""

from __future__ import annotations

import dataclasses

import torch

from configs import LossConfig
from data.errors import UserError
from losses import TextureLoss
from losses.texture import NORMALISATIONS
from models.backbones import build_backbone, canonical_layer, resolve_backbone


def _weights(values: list[float] | None, n: int, what: str) -> list[float]:
    if values is None:
        return [1.0] * n
    if len(values) != n:
        raise UserError(f"{what} has {len(values)} values but {n} are needed")
    return [float(v) for v in values]


def _canonical(name: str) -> str:
    # Spelling only (block1_pool = pool1); an arch's missing layer is reported by the backbone.
    try:
        return canonical_layer(name, "vgg19")
    except UserError:
        return name


def backbone_layers(cfg: LossConfig, extra: tuple[str, ...] = ()) -> list[str]:
    """``cfg.layers`` then the autocorrelation, sliced Wasserstein and ``extra`` layers not
    among them."""
    out = list(cfg.layers)
    for name in [*cfg.autocorr_layers, *cfg.swd_layers, *extra]:
        if _canonical(name) not in {_canonical(n) for n in out}:
            out.append(name)
    return out


def _per_layer(names: list[str], weight: float, backbone) -> list[float] | None:
    """``weight`` at each of ``backbone.layers`` named in ``names``, 0 elsewhere; None if none."""
    wanted = {_canonical(n) for n in names}
    return [weight if layer in wanted else 0.0 for layer in backbone.layers] if names else None


def min_image_size(backbone, octaves: int) -> int:
    """Smallest side whose coarsest octave still reaches the backbone's deepest layer."""
    return (backbone.min_input_size() - 1) * 2 ** (octaves - 1) + 1


def build_backbone_for(
    cfg: LossConfig, tile: bool, device: torch.device, log=print, extra: tuple[str, ...] = ()
):
    """The feature network named by ``cfg`` (announcing an 'auto' choice in one line), with
    the ``extra`` layers too (a remake's content layer)."""
    name, message = resolve_backbone(cfg.backbone)
    if cfg.backbone == "auto":
        log(message)
    padding = "circular" if tile else cfg.padding
    if cfg.octaves < 1:
        raise UserError("octaves must be at least 1")
    backbone = build_backbone(
        name,
        backbone_layers(cfg, extra),
        pooling=cfg.pooling,
        padding=padding,
        weights=cfg.weights,
        seed=cfg.seed,
    )
    return backbone.to(device)


def fit_octave_count(cfg: LossConfig, backbone, sizes: list[tuple[int, int]], log=print):
    """``cfg`` with ``octaves`` lowered to the most that every image of ``sizes`` supports.

    Presets ask for the octaves their paper used (snelgrove2017: 5, which with valid-mode
    convolutions needs ~500 px); on smaller images they keep as many as fit and say so in one
    line. An octave count given explicitly is not fitted: a too-small image is then an error.
    """
    side = min(min(s) for s in sizes)
    fits = [k for k in range(1, cfg.octaves + 1) if side >= min_image_size(backbone, k)]
    if not fits or fits[-1] == cfg.octaves:
        return cfg  # nothing fits: check_image_size reports the minimum
    octaves = fits[-1]
    weights = cfg.octave_weights[:octaves] if cfg.octave_weights else None
    cut = f"; octave weights cut to the first {octaves}: {weights}" if weights else ""
    log(
        f"note: {cfg.octaves} octaves need images of at least "
        f"{min_image_size(backbone, cfg.octaves)} px; using {octaves} for {side} px "
        f"(give --octaves to insist){cut}"
    )
    return dataclasses.replace(cfg, octaves=octaves, octave_weights=weights)


def check_image_size(backbone, octaves: int, size: tuple[int, int], what: str) -> None:
    need = min_image_size(backbone, octaves)
    if min(size) < need:
        raise UserError(
            f"{what} is {size[1]}x{size[0]} but {octaves} octave(s) with layer "
            f"{backbone.layers[-1]} need at least {need}x{need}; "
            "use fewer --octaves or a larger image"
        )


def build_objective(
    cfg: LossConfig, exemplars: list[torch.Tensor], backbone, tile: bool, precision: str = "fp32"
) -> TextureLoss:
    """TextureLoss for ``exemplars`` ((3, H, W) in [0, 1] on the backbone's device), its
    backbone run on outputs in ``precision`` (fp32 | bf16, resolved)."""
    if cfg.normalisation not in NORMALISATIONS:
        raise UserError(
            f"unknown normalisation '{cfg.normalisation}'; use {' or '.join(NORMALISATIONS)}"
        )
    if not 0 < cfg.autocorr_shift <= 1:
        raise UserError("autocorr_shift must be in (0, 1]")
    for i, u in enumerate(exemplars):
        check_image_size(backbone, cfg.octaves, tuple(u.shape[-2:]), f"exemplar {i + 1}")
    # Layers used only by the autocorrelation or sliced terms have no Gram term.
    gram = _weights(cfg.layer_weights, len(cfg.layers), "layer_weights")
    gram += [0.0] * (len(backbone.layers) - len(gram))
    return TextureLoss(
        exemplars,
        backbone,
        layer_weights=gram,
        octave_weights=_weights(cfg.octave_weights, cfg.octaves, "octave_weights"),
        spectrum_weight=cfg.spectrum_weight,
        tv_weight=cfg.tv_weight,
        circular=tile,
        normalisation=cfg.normalisation,
        autocorr_weights=_per_layer(cfg.autocorr_layers, cfg.autocorr_weight, backbone),
        autocorr_shift=cfg.autocorr_shift,
        swd_weights=_per_layer(cfg.swd_layers, cfg.swd_weight, backbone),
        seed=cfg.seed,
        precision=precision,
    )


def generator_objective(cfg, exemplars: list[torch.Tensor], backbone, channels=None):
    """(objective, description) of ``cfg.objective`` for ``exemplars`` ((3, H, W) in [0, 1] on
    the device): the pixel patch pyramid (``backbone`` None), or ``backbone``, rescaled to
    the exemplars if ``cfg.activation_norm``, and its TextureLoss (``build_objective``).

    With ``channels`` (each map's, albedo first: ``data.stacks``) the one exemplar is a
    material stack (C, H, W) and the objective sees all its maps together (``losses.stacks``).
    """
    from losses.stacks import StackFeatures, WeightedStack, map_weights

    stack = channels is not None and len(channels) > 1
    if cfg.objective == "features" and getattr(cfg, "patch_weight", 0):
        unmixed = {"patch_weight": 0.0, "nearest_weight": 0.0, "exemplar_wraps": "auto"}
        alone = dataclasses.replace(cfg, **unmixed)
        features, described = generator_objective(alone, exemplars, backbone, channels)
        alone = dataclasses.replace(cfg, objective="patches", patch_weight=0.0)
        patches, patch_described = generator_objective(alone, exemplars, None, channels)
        size = (len(exemplars[0]), cfg.image_size, cfg.image_size)
        objective = Shares(features, patches, cfg.patch_weight, flat_start(exemplars, size))
        patch_described = patch_described.removeprefix("none: ")
        return objective, f"{described} + (share {cfg.patch_weight:g}) {patch_described}"
    if cfg.objective == "patches":
        from losses.patches import PatchPyramidLoss, exemplars_wrap

        targets = [u * map_weights(channels)[0].to(u) for u in exemplars] if stack else exemplars
        wraps = exemplars_wrap(cfg.exemplar_wraps, exemplars)
        objective = PatchPyramidLoss(targets, cfg, cfg.tile, cfg.nearest_weight, wraps)
        size = f"{cfg.patch_size}x{cfg.patch_size}"
        description = f"none: pixel patches {size}, {len(objective.scales)} scales"
        if wraps:
            description += "; the exemplar tiles, its patches across the edges count too"
        if stack:
            return WeightedStack(objective, channels), f"{description}, spanning every map"
        return objective, description
    if stack:
        backbone = StackFeatures(backbone, channels)
    rescale_to(cfg, backbone, exemplars)
    return build_objective(cfg, exemplars, backbone, cfg.tile), backbone.description


def flat_start(exemplars: list[torch.Tensor], size: tuple[int, int, int]) -> torch.Tensor:
    """(1, *size): the exemplars' mean colour with faint fixed noise, where a generator starts
    (``TextureGenerator.start_at_colour``): the image ``Shares`` scales the objectives on."""
    mean = torch.stack([u.mean((1, 2)) for u in exemplars]).mean(0)
    g = torch.Generator().manual_seed(0)
    noise = 0.02 * torch.randn(1, *size, generator=g).to(mean)
    return (mean.view(1, -1, 1, 1) + noise).clamp(0, 1)


class Shares:
    """Two training objectives as shares of one loss: ``first / a + weight * second / b``,
    ``a`` and ``b`` their totals on ``start`` (fixed: a resumed run divides by the same).

    The features objective draws a material's grain and colour, and on a lattice blobs; the
    patch objective with its nearest-patch term draws the lattice with a speckled grain
    (docs/decisions.md, session 11). Their raw totals differ by orders of magnitude, so each
    is measured in units of where the generator starts. Called like both (``loss(x,
    crop=None, generator=g)`` -> dict with ``total``); their terms are kept under
    ``features/`` and ``patches/``.
    """

    def __init__(self, first, second, weight: float, start: torch.Tensor):
        self.first, self.second, self.weight = first, second, weight
        with torch.no_grad():
            # a flat exemplar's totals can be 0 at a flat start: no share to divide out there
            self.scales = [max(float(f(start)["total"]), 1e-12) for f in (first, second)]

    def __call__(self, x: torch.Tensor, crop=None, generator: torch.Generator | None = None):
        a = self.first(x, crop=crop, generator=generator)
        b = self.second(x, crop=crop, generator=generator)
        terms = {f"features/{k}": v for k, v in a.items()}
        terms.update({f"patches/{k}": v for k, v in b.items()})
        first, second = self.scales
        terms["total"] = a["total"] / first + self.weight * b["total"] / second
        return terms

    def __getattr__(self, name):  # what else the training reads (the diversity term's layers)
        first = self.__dict__.get("first")
        if first is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(first, name)


def rescale_to(cfg: LossConfig, backbone, exemplars: list[torch.Tensor]) -> None:
    """Gatys' rescaling of ``backbone``'s filters to mean activation 1 on ``exemplars``, if
    ``cfg.activation_norm``; once, on the exemplars the finest objective sees."""
    if cfg.activation_norm:
        backbone.rescale_([u[None] for u in exemplars])
