"""The combined texture objective, with every exemplar target computed once."""

from __future__ import annotations

import torch
from torch import nn

from losses.gram import gram_matrix
from losses.pyramid import gaussian_pyramid
from losses.spectrum import spectrum_loss, spectrum_target
from losses.tv import total_variation


class TextureLoss(nn.Module):
    """``L = sum_s v_s sum_l w_l E^{l,s} / Z + beta * L_spec + lambda_tv * TV`` (DESIGN.md).

    ``E^{l,s} = sum_ij (G^{l,s}(x) - G^{l,s}(u))^2`` with ``G`` the normalised Gram
    matrix of backbone layer ``l`` at Gaussian-pyramid octave ``s``, and
    ``Z = sum_s v_s sum_l w_l ||G^{l,s}(u)||^2`` the targets' own energy, a constant: the
    Gram term is a relative error (noise scores ~1, a real crop ~1e-4), so beta and
    lambda_tv do not depend on the backbone. With several exemplars the targets are the
    mean of their Grams (and spectra).

    Args:
        exemplars: list of (3, H, W) images in [0, 1], on the backbone's device.
        backbone: a ``models.backbones.FeatureExtractor`` (frozen).
        layer_weights: one weight per ``backbone.layers`` entry.
        octave_weights: one weight per octave; its length is the number of octaves.
        spectrum_weight: beta; 0 skips the term.
        tv_weight: lambda_tv; 0 skips the term.
        circular: periodic output (tile mode): the pyramid and TV wrap around.

    Call: ``loss(x)`` with x (B, 3, H, W) in [0, 1] returns a dict of scalars:
    ``total``, ``gram``, ``spectrum``, ``tv`` and ``gram/octave{s}``. Batch terms are
    averaged over samples; every term is fp32.

    ``loss(x, crop=c, generator=g)`` (generator training views) feeds the backbone, at every
    octave larger than c x c, one random c x c crop per sample drawn from ``g``: coarse
    octaves are seen whole, fine ones in bounded crops. Normalised Grams make the crops'
    statistics comparable to the whole exemplar's.
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
    ):
        super().__init__()
        self.backbone = backbone
        self.layers = list(backbone.layers)
        self.layer_weights = list(layer_weights)
        self.octave_weights = list(octave_weights)
        self.spectrum_weight = spectrum_weight
        self.tv_weight = tv_weight
        self.circular = circular
        self.exemplars = [u.detach() for u in exemplars]
        self._spectra: dict[tuple[int, int], torch.Tensor] = {}
        with torch.no_grad():
            targets = [self._grams(u[None], exemplar=True) for u in self.exemplars]
        energy = 0.0
        for s, v in enumerate(self.octave_weights):
            for name, w in zip(self.layers, self.layer_weights, strict=True):
                mean = torch.stack([t[s][name] for t in targets]).mean(0)
                self.register_buffer(self._key(s, name), mean)  # (1, C, C)
                energy += v * w * float(mean.double().pow(2).sum())
        # Dividing by the targets' own weighted energy makes L_gram a relative error: its
        # scale no longer depends on the backbone's activation range (caffe-style 0..255
        # inputs give Grams ~1e7 times larger than torchvision's), so one spectrum or TV
        # weight means the same with every backbone and exemplar.
        self.gram_scale = 1.0 / energy if energy > 0 else 1.0

    @staticmethod
    def _key(octave: int, layer: str) -> str:
        return f"target_{octave}_{layer}"

    def _grams(
        self,
        x: torch.Tensor,
        exemplar: bool = False,
        crop: int | None = None,
        generator: torch.Generator | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        # Exemplars are not periodic, so their pyramid reflects at the borders.
        pyramid = gaussian_pyramid(x, len(self.octave_weights), self.circular and not exemplar)
        out = []
        for level, weight in zip(pyramid, self.octave_weights, strict=True):
            if weight == 0:
                out.append({})
                continue
            if crop is not None:
                level = random_crops(level, crop, generator)
            feats = self.backbone(level)
            out.append({name: gram_matrix(feats[name]) for name in self.layers})
        return out

    def spectrum_target(self, size: tuple[int, int]) -> torch.Tensor:
        """(3, H, W) complex spectrum target for outputs of ``size``, cached per size."""
        if size not in self._spectra:
            self._spectra[size] = spectrum_target(self.exemplars, size)
        return self._spectra[size]

    def forward(
        self, x: torch.Tensor, crop: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        gram_total = x.new_zeros((), dtype=torch.float32)
        for s, grams in enumerate(self._grams(x, crop=crop, generator=generator)):
            octave = x.new_zeros((), dtype=torch.float32)
            for name, weight in zip(self.layers, self.layer_weights, strict=True):
                if name in grams and weight != 0:
                    diff = grams[name] - getattr(self, self._key(s, name))
                    octave = octave + weight * diff.pow(2).sum((1, 2)).mean()
            octave = octave * self.gram_scale
            terms[f"gram/octave{s}"] = octave
            gram_total = gram_total + self.octave_weights[s] * octave
        terms["gram"] = gram_total
        total = gram_total
        if self.spectrum_weight:
            target = self.spectrum_target(tuple(x.shape[-2:])).to(x.device)
            terms["spectrum"] = spectrum_loss(x, target)
            total = total + self.spectrum_weight * terms["spectrum"]
        if self.tv_weight:
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
