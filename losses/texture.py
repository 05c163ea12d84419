"""The combined texture objective, with every exemplar target computed once. Its stages carry
``torch.profiler.record_function`` labels (``texture.*``), which the benchmark times."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.profiler import record_function

from losses.autocorrelation import autocorrelation, centre_window
from losses.content import feature_content
from losses.gram import gram_matrix
from losses.pyramid import gaussian_pyramid
from losses.sliced import random_directions, sliced_wasserstein, sorted_projections
from losses.spectrum import spectrum_loss, spectrum_target
from losses.tv import total_variation

NORMALISATIONS = ("global", "per_term")


class TextureLoss(nn.Module):
    """``L = sum_s v_s sum_l (w_l E^{l,s} + a_l A^{l,s} + q_l W^{l,s}) + beta L_spec + lambda TV``.

    ``E^{l,s} = sum_ij (G^{l,s}(x) - G^{l,s}(u))^2`` with ``G`` the normalised Gram matrix of
    backbone layer ``l`` at Gaussian-pyramid octave ``s`` (the design note, DESIGN.md, lives
    outside this repository, in ../shared/; CONTRIBUTING.md). Two normalisations:

    - ``global`` (the seed presets): every E is divided by one constant,
      ``Z = sum_s v_s sum_l w_l ||G^{l,s}(u)||^2``, the targets' weighted energy. The Gram term
      is then a relative error (noise ~1, a real crop ~1e-4), but layers whose Grams are small
      (deep ones: pool4 of vgg16-hed carries ~1e-8 of the energy) barely count.
    - ``per_term``: each E^{l,s} is divided by its own ``||G^{l,s}(u)||^2``, so every
      (octave, layer) term is a relative error and the weights are shares of the objective,
      the same for any backbone.

    ``A^{l,s}`` (weights ``autocorr_weights``) is the long-range term of Gonthier et al.
    2022: the squared difference of the per-channel spatial autocorrelations of the features
    (``losses.autocorrelation``) over shifts up to ``autocorr_shift`` times the smaller of the
    exemplar's and the output's feature-map sides. ``W^{l,s}`` (``swd_weights``) is the sliced
    Wasserstein distance of Heitz et al. 2021 (``losses.sliced``) on C fixed random
    directions. Each A and W term is divided by its own target's energy (the autocorrelation's
    sum of squares, the projections' variance), whatever the Gram normalisation, so their
    weights are shares. With several exemplars the targets are the mean of their statistics
    (and spectra); the sorted projections of several exemplars are pooled.

    Args:
        exemplars: list of (3, H, W) images in [0, 1], on the backbone's device.
        backbone: a ``models.backbones.FeatureExtractor`` (frozen).
        layer_weights: Gram weight w_l per ``backbone.layers`` entry (0 skips it).
        octave_weights: one weight per octave; its length is the number of octaves.
        spectrum_weight: beta; 0 skips the term.
        tv_weight: lambda_tv; 0 skips the term.
        circular: periodic output (tile mode): the pyramid, TV and autocorrelation wrap around.
        normalisation: ``global`` or ``per_term`` (for the Gram terms).
        autocorr_weights: a_l per layer, or None (no autocorrelation term).
        autocorr_shift: largest shift as a fraction of the exemplar's feature-map side.
        swd_weights: q_l per layer, or None (no sliced Wasserstein term).
        seed: seeds the sliced Wasserstein directions.
        precision: "fp32" or "bf16": the backbone's forward and backward on an output run
            under bf16 autocast; its features are cast to fp32 before any statistic, and the
            targets, spectrum, TV and the sum stay fp32.

    Call: ``loss(x)`` with x (B, 3, H, W) in [0, 1] returns a dict of scalars:
    ``total``, ``gram``, ``spectrum``, ``tv`` and ``gram/octave{s}`` (the whole feature term
    of octave s: Gram, autocorrelation and sliced terms, before v_s); ``autocorr`` and ``swd``
    when used. Batch terms are averaged over samples; every term is fp32.

    ``set_content(target, layer, weight)`` adds ``weight * C`` (a remake's content term,
    ``losses.content.feature_content`` at ``layer`` of octave 0, term ``content``).

    ``loss(x, crop=c, generator=g)`` (generator training views) feeds the backbone, at every
    octave larger than c x c, one random c x c crop per sample drawn from ``g``: coarse
    octaves are seen whole, fine ones in bounded crops. Normalised statistics make the crops'
    values comparable to the whole exemplar's.
    """

    def __init__(
        self,
        exemplars: list[torch.Tensor],
        backbone: nn.Module,
        layer_weights: list[float],
        octave_weights: list[float],
        spectrum_weight: float = 0.0,
        tv_weight: float = 0.0,
        circular: bool = False,
        normalisation: str = "global",
        autocorr_weights: list[float] | None = None,
        autocorr_shift: float = 0.5,
        swd_weights: list[float] | None = None,
        seed: int = 0,
        precision: str = "fp32",
    ):
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}")
        self.backbone = backbone
        self.layers = list(backbone.layers)
        n = len(self.layers)
        self.layer_weights = list(layer_weights)
        self.autocorr_weights = list(autocorr_weights or [0.0] * n)
        self.swd_weights = list(swd_weights or [0.0] * n)
        self.octave_weights = list(octave_weights)
        self.spectrum_weight = spectrum_weight
        self.tv_weight = tv_weight
        self.circular = circular
        self.normalisation = normalisation
        self.autocorr_shift = autocorr_shift
        self.precision = precision
        self.exemplars = [u.detach() for u in exemplars]
        self._spectra: dict[tuple[int, int], torch.Tensor] = {}
        self.shifts: dict[str, int] = {}  # autocorrelation window per (octave, layer) key
        self.term_scale: dict[str, float] = {}  # 1 / the divisor of each term
        self.content_layer: str | None = None  # set_content
        self.content_weight = 0.0
        with torch.no_grad():
            self._build_targets(seed)

    @staticmethod
    def _key(kind: str, octave: int, layer: str) -> str:
        return f"{kind}_{octave}_{layer}"

    def _terms_at(self, octave: int):
        """(layer, kind, weight) of every active feature term at ``octave``."""
        for name, w, a, q in zip(
            self.layers, self.layer_weights, self.autocorr_weights, self.swd_weights, strict=True
        ):
            for kind, weight in (("gram", w), ("autocorr", a), ("swd", q)):
                if weight != 0:
                    yield name, kind, weight

    def _build_targets(self, seed: int) -> None:
        feats = [self._features(u[None], exemplar=True) for u in self.exemplars]
        global_energy = 0.0
        for s, v in enumerate(self.octave_weights):
            if v == 0:
                continue
            for name, kind, weight in self._terms_at(s):
                key = self._key(kind, s, name)
                maps = [f[s][name] for f in feats]
                if kind == "gram":
                    target = torch.stack([gram_matrix(m) for m in maps]).mean(0)  # (1, C, C)
                    energy = float(target.double().pow(2).sum())
                    global_energy += v * weight * energy
                elif kind == "autocorr":
                    mean = torch.cat([m.float() for m in maps], -1).mean((0, 2, 3))  # (C,)
                    self.register_buffer(key + "_mean", mean)
                    side = min(min(m.shape[-2:]) for m in maps)
                    self.shifts[key] = max(1, int(self.autocorr_shift * side))
                    target = torch.stack(
                        [autocorrelation(m, self.shifts[key], mean) for m in maps]
                    ).mean(0)  # (1, C, 2k+1, 2k+1)
                    energy = float(target.double().pow(2).sum())
                else:
                    dirs = random_directions(maps[0].shape[1], maps[0].shape[1], seed + s)
                    self.register_buffer(key + "_dirs", dirs.to(maps[0].device))
                    target = torch.cat([sorted_projections(m, dirs) for m in maps], -1)
                    target = target.sort(-1).values  # (1, D, sum of positions)
                    energy = float(target.double().var(-1).mean())
                self.register_buffer(key, target)
                self.term_scale[key] = 1.0 / energy if energy > 0 else 1.0
        # Dividing by the targets' own weighted energy makes L_gram a relative error: its
        # scale no longer depends on the backbone's activation range (caffe-style 0..255
        # inputs give Grams ~1e7 times larger than torchvision's), so one spectrum or TV
        # weight means the same with every backbone and exemplar.
        if self.normalisation == "global":
            scale = 1.0 / global_energy if global_energy > 0 else 1.0
            for key in self.term_scale:
                if key.startswith("gram_"):
                    self.term_scale[key] = scale

    def _features(
        self,
        x: torch.Tensor,
        exemplar: bool = False,
        crop: int | None = None,
        generator: torch.Generator | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        # Exemplars are not periodic, so their pyramid reflects at the borders.
        with record_function("texture.pyramid"):
            pyramid = gaussian_pyramid(x, len(self.octave_weights), self.circular and not exemplar)
        out = []
        for level, weight in zip(pyramid, self.octave_weights, strict=True):
            if weight == 0:
                out.append({})
                continue
            if crop is not None:
                level = random_crops(level, crop, generator)
            with record_function("texture.backbone"), self._backbone_precision(level, exemplar):
                feats = self.backbone(level)
            out.append({name: f.float() for name, f in feats.items()})  # statistics in fp32
        return out

    def _backbone_precision(self, x: torch.Tensor, exemplar: bool):
        """bf16 autocast around the backbone of an output's forward (and so its backward),
        or no change: the exemplars' targets are computed once, in fp32, and an fp32 loss
        leaves an outer autocast (accelerate's, in training) as it is."""
        if self.precision != "bf16" or exemplar:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=torch.bfloat16)

    def feature_terms(self, octave: int, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted, normalised statistics terms of one octave's features, summed by kind.

        Args:
            octave: pyramid octave s.
            feats: {layer: (B, C, h, w)} the backbone's features of that octave.

        Returns:
            {"gram": scalar, "autocorr": scalar, "swd": scalar} (kinds in use only), each
            ``sum_l weight_l * term / divisor``, averaged over the batch.
        """
        out: dict[str, torch.Tensor] = {}
        for name, kind, weight in self._terms_at(octave):
            key = self._key(kind, octave, name)
            target, f = getattr(self, key), feats[name]
            if kind == "gram":
                value = (gram_matrix(f) - target).pow(2).sum((1, 2)).mean()
            elif kind == "autocorr":
                # Shifts reach the same fraction of the output's own map as of the exemplar's,
                # capped by the target's window: near an output's size a shift's overlap is a
                # few positions, whose noisy averages would outweigh everything else.
                side = min(f.shape[-2:])
                k = min(self.shifts[key], max(1, int(self.autocorr_shift * side)))
                mean = getattr(self, key + "_mean")
                ours = autocorrelation(f, k, mean, self.circular)
                ky, kx = (ours.shape[-2] - 1) // 2, (ours.shape[-1] - 1) // 2
                value = (ours - centre_window(target, ky, kx)).pow(2).sum((1, 2, 3)).mean()
            else:
                value = sliced_wasserstein(f, target, getattr(self, key + "_dirs")).mean()
            term = weight * value * self.term_scale[key]
            out[kind] = out[kind] + term if kind in out else term
        return out

    def set_content(self, target: torch.Tensor, layer: str, weight: float) -> None:
        """Add a content term: ``weight`` x ``feature_content`` between the output's features
        at ``layer`` (one of ``backbone.layers``) of octave 0 and those of ``target``
        (3, H, W) in [0, 1], the outputs' size. Octave 0 must have a nonzero weight."""
        if not self.octave_weights[0]:
            raise ValueError("a content term needs octave 0 (its weight is 0)")
        with torch.no_grad():
            feats = self._features(target[None], exemplar=True)[0][layer]
        self.register_buffer("content_target", feats)
        self.content_layer, self.content_weight = layer, weight

    def spectrum_target(self, size: tuple[int, int]) -> torch.Tensor:
        """(3, H, W) complex spectrum target for outputs of ``size``, cached per size."""
        if size not in self._spectra:
            self._spectra[size] = spectrum_target(self.exemplars, size)
        return self._spectra[size]

    def forward(
        self, x: torch.Tensor, crop: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        zero = x.new_zeros((), dtype=torch.float32)
        kinds = {"gram": zero, "autocorr": zero, "swd": zero}
        feature_total = zero
        for s, feats in enumerate(self._features(x, crop=crop, generator=generator)):
            if not feats:
                terms[f"gram/octave{s}"] = zero
                continue
            # Without an outer autocast's casts (train.py --mixed-precision bf16 ran the Gram
            # matrices' bmm and the sliced projections in bf16): statistics are fp32.
            fp32 = torch.autocast(x.device.type, enabled=False)
            with record_function("texture.statistics"), fp32:
                parts = self.feature_terms(s, feats)
                octave = sum(parts.values(), zero)
            terms[f"gram/octave{s}"] = octave
            if s == 0 and self.content_layer is not None:
                with record_function("texture.content"), fp32:
                    terms["content"] = feature_content(
                        feats[self.content_layer], self.content_target
                    )
                feature_total = feature_total + self.content_weight * terms["content"]
            feature_total = feature_total + self.octave_weights[s] * octave
            for kind, value in parts.items():
                kinds[kind] = kinds[kind] + self.octave_weights[s] * value
        terms["gram"] = kinds["gram"]
        for kind in ("autocorr", "swd"):
            if any(w != 0 for w in getattr(self, f"{kind}_weights")):
                terms[kind] = kinds[kind]
        total = feature_total
        if self.spectrum_weight:
            with record_function("texture.spectrum"):
                target = self.spectrum_target(tuple(x.shape[-2:])).to(x.device)
                terms["spectrum"] = spectrum_loss(x, target)
            total = total + self.spectrum_weight * terms["spectrum"]
        if self.tv_weight:
            with record_function("texture.tv"):
                terms["tv"] = total_variation(x.float(), self.circular)
            total = total + self.tv_weight * terms["tv"]
        terms["total"] = total
        return terms


def random_crops(x: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, min(H, size), min(W, size)): one uniform random crop per sample.

    Offsets are drawn on the CPU from ``generator``, so a seeded run repeats on any device.
    """
    b, _, h, w = x.shape
    if h <= size and w <= size:
        return x
    ch, cw = min(h, size), min(w, size)
    ys = torch.randint(0, h - ch + 1, (b,), generator=generator).tolist()
    xs = torch.randint(0, w - cw + 1, (b,), generator=generator).tolist()
    return torch.stack(
        [x[i, :, y : y + ch, x0 : x0 + cw] for i, (y, x0) in enumerate(zip(ys, xs, strict=True))]
    )
