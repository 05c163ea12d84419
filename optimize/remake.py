"""Remake (issue 17): a target image re-rendered with the exemplars' texture, its large layout
kept. The output has the target's size.

- Patch engine (``PatchRemaker``; GPDM's image-guided synthesis, Elnekave and Weiss 2022):
  the target is first drawn in the exemplars' palette (``in_palette``: its brightness
  stretched onto theirs, each pixel their mean colour at that brightness, as Efros and
  Freeman 2001's texture transfer matches luminance), then the pyramid starts from it,
  downscaled, at the first scale at least ``START_SCALE`` instead of from noise at the
  coarsest, so the coarse scales that would lay out the exemplar's own arrangement are
  skipped. At every scale the patch distribution term and the nearest-patch projections
  pull the patches toward the exemplars', and a content term, ``remake_weight`` x
  ``losses.content.pixel_content``, holds the output's low frequencies to the recoloured
  target's: both are compared downscaled to the scale at which the full pyramid starts (the
  exemplar's short side ``coarsest`` px), so detail finer than about 1/``coarsest`` of the
  exemplar is left to the texture.
- Features objective (``FeatureRemaker``; Gatys, Ecker and Bethge 2016): L-BFGS from the
  target with ``remake_weight`` x ``losses.content.feature_content`` at ``CONTENT_LAYER`` added
  to the Gram (and other) terms.

Convention: images are (3, H, W) float in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from configs import SynthConfig
from data.errors import UserError
from data.images import load_image
from losses.content import low_frequencies, pixel_content
from losses.objective import check_image_size
from losses.patches import scaled
from models.vgg import canonical_layer
from optimize.features import TextureSynthesizer, downscale
from optimize.patches import PatchSynthesizer

# The patch engine starts at the first scale at least this (1 = the full scale). Stripes
# remade in dots (256 px, weight 1) kept their layout alike from the coarsest scale, 0.32 or
# 0.56 (correlation 0.95, 0.94, 0.94): the content term holds it. The middle one skips the
# coarse scales that lay out the exemplar's own arrangement and keeps those where the
# projections use large patches (optimize.patches.LARGE_SPAN), which round large elements.
START_SCALE = 0.25
# The target is drawn in the exemplars' palette first (``in_palette``). Comparing its own
# colours, the daisies photo (512 px) remade in knit came out yellow and white blocks of
# knit-like grain on a dark ground (judge score against knit 3.11; 1 = a real crop), and the
# procedural stripes remade in dots 3.31. In the palette of the exemplars at the content
# scale: knit throughout, the daisies as paler knit (1.32), and round dots in diagonal rows
# (2.15); the layout's brightness kept as closely at that scale (correlation 0.99 -> 1.00,
# 0.96 -> 0.95), less of it below (at twice that scale 0.89 -> 0.73, 0.78 -> 0.68: more
# ``remake_weight`` keeps more). Compared at twice the scale, the daisies came out clearer
# (0.99) but square, and the dots in fragments (docs/decisions.md, session 41).
CONTENT_LAYER = "conv4_2"  # Gatys et al. 2016's content layer
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601's weights of R, G, B in brightness
PALETTE_BINS = 64
SPAN = (0.02, 0.98)  # the quantiles of brightness that ``in_palette`` maps onto each other


def load_target(target, log=print) -> tuple[torch.Tensor, str]:
    """A path or (3, H, W) tensor -> ((3, H, W) float in [0, 1], its description)."""
    if isinstance(target, torch.Tensor):
        if target.dim() != 3 or len(target) != 3:
            raise UserError(f"--remake: expected a (3, H, W) target, got {tuple(target.shape)}")
        return target.detach().float().clamp(0, 1), f"tensor {tuple(target.shape)}"
    if not Path(target).exists():
        raise UserError(f"--remake: target not found: {target}")
    img, note = load_image(target)
    log(f"target {note}")
    return img, str(target)


def in_palette(target: torch.Tensor, exemplars: list[torch.Tensor]) -> torch.Tensor:
    """(3, H, W) target -> (3, H, W): the target drawn in the ``exemplars``' (each (3, h, w))
    colours. Its brightness (``LUMA``) is stretched so that its SPAN quantiles fall on the
    exemplars' (clamped to their range), and each pixel takes the exemplars' mean colour at
    that brightness: their pixels, sorted by brightness, fall into PALETTE_BINS bins of equal
    count (fewer where they have fewer pixels), whose mean brightness and colour make a ramp
    read by linear interpolation. The target's light and dark stay where they are; its hues
    do not. A target of one brightness takes the exemplars' median."""
    luma = torch.tensor(LUMA, dtype=target.dtype, device=target.device)
    pixels = torch.cat([u.reshape(3, -1) for u in exemplars], 1).to(target)
    light = luma @ pixels
    order = light.argsort()
    n = max(2, min(PALETTE_BINS, len(order)))
    bins = [(light[part].mean(), pixels[:, part].mean(1)) for part in order.tensor_split(n)]
    levels = torch.stack([b for b, _ in bins])  # (n,), ascending
    ramp = torch.stack([c for _, c in bins], 1)  # (3, n)
    own = luma @ target.reshape(3, -1)
    q = torch.tensor((SPAN[0], 0.5, SPAN[1]), dtype=target.dtype, device=target.device)
    (lo, _, hi), (to_lo, to_median, to_hi) = _quantile(own, q), _quantile(light, q)
    if hi - lo < 1e-6:
        wanted = torch.full_like(own, float(to_median))
    else:
        wanted = to_lo + (own - lo) * (to_hi - to_lo) / (hi - lo)
    wanted = wanted.clamp(float(levels[0]), float(levels[-1]))
    upper = torch.searchsorted(levels, wanted).clamp(1, n - 1)
    below, above = levels[upper - 1], levels[upper]
    frac = ((wanted - below) / (above - below).clamp_min(1e-9)).clamp(0, 1)
    return (ramp[:, upper - 1] * (1 - frac) + ramp[:, upper] * frac).view_as(target)


def _quantile(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``torch.quantile`` of a 1-D ``x`` of any length (it refuses over 2^24 elements)."""
    step = max(1, x.numel() // 2**22)
    return x[::step].quantile(q)


def _check_size(size: tuple[int, int], size_of_edit) -> None:
    if size is not None and tuple(size) != tuple(size_of_edit):
        h, w = size_of_edit
        raise UserError(f"a remake has its target's size, {w}x{h}")


class PatchRemaker(PatchSynthesizer):
    """Re-render a target with the exemplars' texture by patch synthesis (module docstring).

    Example::

        remaker = PatchRemaker("bricks.jpg", "portrait.png", remake_weight=0.3)
        result = remaker.synthesize(seed=1)  # result.image: (1, 3, H, W), the target's size
        remaker.save(result, "remade.png", overwrite=True)

    Args:
        exemplars: as ``PatchSynthesizer``: the texture.
        target: a path or (3, H, W) tensor in [0, 1]: the layout (and the output's size),
            drawn in the exemplars' colours (``in_palette``; its own with the config's
            ``remake_colours`` "target").
        config, log, overrides: as ``PatchSynthesizer``; ``remake_weight`` weighs the
            content term (0: the target is only the start).
        start: the scale the pyramid starts at, from the target (``START_SCALE``).
    """

    EVENS_LIGHT = False
    KEEPS_LIGHT = "remake keeps the target's light"
    KEEPS_TURNS = "a remake is laid out by its target, not by the exemplar"

    def __init__(self, exemplars, target, config: SynthConfig | None = None, log=print, **kw):
        start = kw.pop("start", START_SCALE)
        image, source = load_target(target, log)
        super().__init__(exemplars, config, log, **kw)
        p = self.config.patch_size
        if min(image.shape[-2:]) < 2 * p:
            h, w = image.shape[-2:]
            raise UserError(f"--remake: the target is {w}x{h}; give at least {2 * p} px a side")
        # The content scale: the full pyramid's first scale (module docstring). The target
        # takes the palette of the exemplars at that scale: the colours a region of their
        # texture can have on average, which is what the content term compares.
        scale = self.scales[0]
        self.target = image.to(self.device)
        if self.config.remake_colours == "exemplar":
            palette = [low_frequencies(u[None], scaled(u.shape[-2:], scale, 4))[0]
                       for u in self.exemplars]  # fmt: skip
            self.target = in_palette(self.target, palette)
        self.target_source = source
        self._content = low_frequencies(self.target[None], scaled(image.shape[-2:], scale, 4))
        first = next((k for k, s in enumerate(self.scales) if s >= start - 1e-9), -1)
        self.start = self.scales[first]
        self.scales, self._pyramid = self.scales[first:], self._pyramid[first:]
        h, w = self._content.shape[-2:]
        self.description += (
            f"; remake from the target at scale {self.start:.3g} ({len(self.scales)} scales), "
            f"content weight {self.config.remake_weight:g} at {w}x{h}"
        )

    def default_size(self) -> tuple[int, int]:
        return tuple(self.target.shape[-2:])

    def _lattice(self) -> bool:
        # The target sets the layout; the exemplar's lattice must not override it (and the
        # lattice mode was measured on plain synthesis only).
        return False

    def _start_block(self) -> None:
        return None  # the target is the start

    def synthesize(self, size=None, seed=None, iterations=None, init=None, on_iter=None):
        """As ``PatchSynthesizer.synthesize``, at the target's size only."""
        _check_size(size, self.default_size())
        return super().synthesize(None, seed, iterations, init, on_iter)

    def _level_start(self, x, size: tuple[int, int], margin: int, g) -> torch.Tensor:
        if x is not None:
            return super()._level_start(x, size, margin, g)
        m = margin
        start = low_frequencies(self.target[None], size)
        return F.pad(start, (m, m, m, m), mode="reflect") if m else start

    def _extra_terms(self, x: torch.Tensor, level: int, margin: int) -> dict[str, torch.Tensor]:
        if not self.config.remake_weight:
            return {}
        m = margin
        view = x[..., m : x.shape[-2] - m, m : x.shape[-1] - m]
        return {"content": self.config.remake_weight * pixel_content(view, self._content)}

    def engine_metadata(self) -> dict:
        h, w = self._content.shape[-2:]
        remake = {
            "target": self.target_source,
            "weight": self.config.remake_weight,
            "colours": self.config.remake_colours,
            "start_scale": self.start,
            "content_size": {"height": h, "width": w},
        }
        return {**super().engine_metadata(), "remake": remake}


class FeatureRemaker(TextureSynthesizer):
    """Re-render a target with the exemplars' texture by L-BFGS on backbone features (Gatys
    et al. 2016 style transfer): the texture terms of the config, plus ``remake_weight`` x
    the content term at ``CONTENT_LAYER``, from the target.

    Example::

        remaker = FeatureRemaker("bricks.jpg", "portrait.png", config)  # a features config
        result = remaker.synthesize(seed=1)

    Args:
        exemplars: as ``TextureSynthesizer``.
        target: a path or (3, H, W) tensor in [0, 1]: the layout (and the output's size).
        config, log, fit_octaves, overrides: as ``TextureSynthesizer``.
    """

    extra_layers = (CONTENT_LAYER,)

    def __init__(self, exemplars, target, config: SynthConfig | None = None, log=print, **kw):
        self.target, self.target_source = load_target(target, log)
        super().__init__(exemplars, config, log, **kw)

    def objective(self, factor: int = 1):
        """As ``TextureSynthesizer.objective``, with the content term of the target
        downscaled by ``factor``."""
        fresh = factor not in self._objectives
        loss = super().objective(factor)
        if fresh:
            self.target = self.target.to(self.device)
            target = downscale(self.target, factor)
            check_image_size(self.backbone, self.config.octaves, target.shape[-2:], "target")
            if not loss.octave_weights[0]:
                raise UserError("--remake: the content term needs octave 1 (its weight is 0)")
            weight = self.config.remake_weight
            layer = canonical_layer(CONTENT_LAYER, self.backbone.arch)
            loss.set_content(target, layer, weight)
        return loss

    def default_size(self) -> tuple[int, int]:
        return tuple(self.target.shape[-2:])

    def synthesize(self, size=None, seed=None, iterations=None, init=None, on_iter=None):
        """As ``TextureSynthesizer.synthesize``, at the target's size only."""
        _check_size(size, self.default_size())
        return super().synthesize(None, seed, iterations, init, on_iter)

    def _start(self, size: tuple[int, int], seed: int) -> torch.Tensor:
        return low_frequencies(self.target[None], size).clamp(0, 1)

    def engine_metadata(self) -> dict:
        remake = {
            "target": self.target_source,
            "weight": self.config.remake_weight,
            "layer": CONTENT_LAYER,
        }
        return {**super().engine_metadata(), "remake": remake}


def make_remaker(exemplars: list, cfg: SynthConfig, log=print, fit_octaves: bool = False):
    """The remaker of ``cfg.objective`` on the command line's exemplars, ``cfg.remake`` the
    target."""
    if cfg.objective == "patches":
        return PatchRemaker(exemplars, cfg.remake, cfg, log)
    return FeatureRemaker(exemplars, cfg.remake, cfg, log, fit_octaves=fit_octaves)
