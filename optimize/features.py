"""The optimize engine as a Python API: load exemplars, synthesize, continue, save."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from configs import FEATURES_PRESET, SynthConfig, build_config, read_config_file
from data.errors import UserError
from data.sizes import parse_size
from losses import TextureLoss
from losses.objective import (
    build_backbone_for,
    build_objective,
    check_image_size,
    fit_octave_count,
    rescale_to,
)
from models.devices import resolve_device, resolve_precision
from optimize.engine import PerImageSynthesizer, at_size, load_exemplars
from optimize.lbfgs import METHODS, OptimizeResult, optimize

START_BLUR = 2.0  # sd, in pixels, of the Gaussian that smooths the start's noise


def initial_noise(exemplars: list[torch.Tensor], size: tuple[int, int], seed: int) -> torch.Tensor:
    """(1, 3, H, W) start image: the exemplars' mean colour plus smooth, periodic seeded noise.

    Gaussian white noise blurred by a Gaussian of sd ``START_BLUR`` px (in the Fourier domain,
    so the noise wraps around and a tile-mode start has no seam), rescaled to sd 0.15. The
    start holds no pixel-level noise because the objective barely sees that band: from a
    white-noise start a 256 px fur result kept a colour checkerboard with 14x the exemplar's
    total variation after 300 iterations (docs/decisions.md). Drawn on the CPU so that a
    seed gives the same start on every device.
    """
    g = torch.Generator().manual_seed(seed)
    mean = torch.stack([u.mean((1, 2)) for u in exemplars]).mean(0).cpu().view(1, 3, 1, 1)
    white = torch.randn((1, 3, *size), generator=g)
    fy, fx = torch.fft.fftfreq(size[0]), torch.fft.rfftfreq(size[1])
    lowpass = torch.exp(-2 * math.pi**2 * START_BLUR**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    noise = torch.fft.irfft2(torch.fft.rfft2(white) * lowpass, s=size)
    noise = noise * (0.15 / noise.std().clamp_min(1e-12))
    return (mean + noise).clamp(0, 1).to(exemplars[0].device)


def downscale(img: torch.Tensor, factor: int) -> torch.Tensor:
    """(3, H, W) -> (3, ceil(H / factor), ceil(W / factor)), antialiased."""
    if factor == 1:
        return img
    h, w = img.shape[-2:]
    size = (math.ceil(h / factor), math.ceil(w / factor))
    return F.interpolate(
        img[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


class TextureSynthesizer(PerImageSynthesizer):
    """Per-image texture synthesis by L-BFGS on the pixels.

    Example::

        synth = TextureSynthesizer("knit.jpg", SynthConfig(), octaves=3)
        result = synth.synthesize(size=(512, 1024), seed=1)
        result = synth.synthesize(init=result.image, iterations=100)  # continue
        synth.save(result, "out.png", overwrite=True)

    Args:
        exemplars: a path, a (3, H, W) tensor in [0, 1], or a list of either.
        config: a ``SynthConfig`` with ``objective = "features"`` (default: the
            autocorr_pyramid preset).
        log: where one-line messages go (``print`` by default).
        fit_octaves: lower ``octaves`` to what the exemplars and the config's output
            ``size`` support, with a note (for presets); otherwise a too-small image is an
            error.
        **overrides: config fields to replace.
    """

    extra_layers: tuple[str, ...] = ()  # backbone layers beyond the config's (a remake's)

    def __init__(
        self,
        exemplars,
        config: SynthConfig | None = None,
        log=print,
        fit_octaves: bool = False,
        **overrides,
    ):
        base = config or build_config(SynthConfig, read_config_file(FEATURES_PRESET), {})
        self.config = cfg = dataclasses.replace(base, **overrides)
        if cfg.objective != "features":
            raise UserError(
                f"TextureSynthesizer runs the features objective, not '{cfg.objective}' "
                "(optimize.engine.make_synthesizer picks the engine)"
            )
        if cfg.optimizer not in METHODS:
            raise UserError(f"unknown optimizer '{cfg.optimizer}'; use one of {', '.join(METHODS)}")
        if cfg.levels < 1 or cfg.iterations < 0:
            raise UserError("levels must be >= 1 and iterations >= 0")
        self.device = resolve_device(cfg.device)
        self.precision, self._precision_note = resolve_precision(cfg.precision, self.device)
        self.log = log
        images, self.sources = load_exemplars(exemplars, log)
        self.exemplars = [u.to(self.device) for u in images]
        self.backbone = build_backbone_for(cfg, cfg.tile, self.device, log, self.extra_layers)
        if fit_octaves:
            sizes = [tuple(u.shape[-2:]) for u in self.exemplars]
            if cfg.size:  # the output must reach the deepest layer at every octave too
                sizes.append(parse_size(cfg.size))
            self.config = cfg = fit_octave_count(cfg, self.backbone, sizes, log)
        rescale_to(cfg, self.backbone, self.exemplars)  # coarse levels reuse it
        self._objectives: dict[int, TextureLoss] = {}
        self.objective(1)  # checks the exemplars against octaves and layers before any work

    def objective(self, factor: int = 1) -> TextureLoss:
        """The objective with exemplars downscaled by ``factor`` (a coarse-to-fine level)."""
        if factor not in self._objectives:
            exemplars = [downscale(u, factor) for u in self.exemplars]
            try:
                self._objectives[factor] = build_objective(
                    self.config, exemplars, self.backbone, self.config.tile, self.precision
                )
            except UserError as e:
                if factor == 1:
                    raise
                raise UserError(
                    f"{e} (at coarse-to-fine level 1/{factor}; use fewer --levels)"
                ) from None
        return self._objectives[factor]

    def synthesize(
        self,
        size: tuple[int, int] | None = None,
        seed: int | None = None,
        iterations: int | None = None,
        init: torch.Tensor | None = None,
        on_iter=None,
    ) -> OptimizeResult:
        """Synthesize one texture.

        Args:
            size: (H, W) of the output; default the config's ``size`` or the first exemplar's.
            seed: noise seed; default the config's.
            iterations: L-BFGS iterations per level; default the config's.
            init: (3, H, W) or (1, 3, H, W) image in [0, 1] to continue from; it fixes
                the size and skips the coarse levels.
            on_iter: ``on_iter(level, iteration, x, loss)`` progress callback.

        Returns:
            ``OptimizeResult`` whose ``image`` is (1, 3, H, W) in [0, 1]; its
            ``iterations``/``evaluations``/``seconds`` add up every level.
        """
        cfg = self.config
        seed = cfg.seed if seed is None else seed
        iterations = cfg.iterations if iterations is None else iterations
        if init is not None:
            x = (init[None] if init.dim() == 3 else init).to(self.device).float().clamp(0, 1)
            size, factors = tuple(x.shape[-2:]), [1]
        else:
            size = size or self.default_size()
            factors = [2**k for k in reversed(range(cfg.levels))]
            x = None
        check_image_size(self.backbone, cfg.octaves, size, "output")
        total = OptimizeResult(image=torch.empty(0))
        for level, factor in enumerate(factors):
            level_size = (math.ceil(size[0] / factor), math.ceil(size[1] / factor))
            objective = self.objective(factor)
            if x is None:
                x = self._start(level_size, seed)
            elif tuple(x.shape[-2:]) != level_size:
                x = F.interpolate(x, size=level_size, mode="bilinear", align_corners=False).clamp(
                    0, 1
                )
            callback = None
            if on_iter is not None:
                callback = lambda it, img, loss, level=level: on_iter(level, it, img, loss)  # noqa: E731
            result = optimize(objective, x, iterations, cfg.optimizer, cfg.history, callback)
            x = result.image
            total.iterations += result.iterations
            total.evaluations += result.evaluations
            total.seconds += result.seconds
            total.terms, total.image = result.terms, result.image
            if result.interrupted or result.diverged:
                total.interrupted = result.interrupted
                total.diverged = result.diverged
                if result.diverged and len(factors) > 1:
                    total.diverged += f" of level {level + 1}/{len(factors)}"
                break
        return at_size(total, size)

    def _start(self, size: tuple[int, int], seed: int) -> torch.Tensor:
        """(1, 3, H, W) image the first level of output ``size`` starts from: noise
        (``initial_noise``); a remake's target."""
        return initial_noise(self.exemplars, size, seed)

    def describe(self) -> str:
        precision = f"{self.precision} ({self._precision_note})"
        return f"backbone: {self.backbone.description}; precision {precision}"

    def level_iterations(self, size: tuple[int, int]) -> list[int]:
        """L-BFGS iterations at each coarse-to-fine level, coarsest first."""
        return [self.config.iterations] * self.config.levels

    def engine_metadata(self) -> dict:
        return {
            "backbone": {
                "name": self.backbone.name,
                "description": self.backbone.description,
                "weights_sha256": self.backbone.weights_sha256,
            }
        }
