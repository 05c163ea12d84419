"""The plain reference: the same objective written the way the seed implementations write it.

Differences from ``losses.TextureLoss`` + ``optimize.lbfgs`` (and nothing else):

- the whole VGG trunk runs on every call (every layer the input size allows, to pool5),
  not a trunk truncated at the deepest layer in use;
- the exemplar's pyramid, features, Gram targets and spectrum target are recomputed on
  every call instead of once;
- ``torch.optim.LBFGS`` with its default settings (lr 1, max_iter 20, history 100, no line
  search), pixels clamped to [0, 1] after each step.

The backbone weights are ours (copied, Gatys rescaling included), so for the same config the
loss value is the same (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from losses.gram import gram_matrix
from losses.pyramid import gaussian_pyramid
from losses.spectrum import spectrum_loss, spectrum_target
from losses.tv import total_variation
from models.backbones import build_backbone, resolve_backbone
from models.vgg import layer_taps


def full_backbone(cfg, ours):
    """(backbone with every layer of its architecture up to pool5, the requested layer names).

    The convolutions that ``ours`` (our truncated, possibly Gatys-rescaled backbone) holds are
    copied in, so the shared prefix has exactly our weights; the deeper ones keep the weights
    of their source (they only cost time: their outputs are never used).
    """
    name, _ = resolve_backbone(cfg.backbone, cfg.weights)
    deepest = list(layer_taps(ours.arch))[-1]
    layers = list(ours.layers) + ([deepest] if deepest not in ours.layers else [])
    padding = "circular" if cfg.tile else cfg.padding
    full = build_backbone(
        name, layers, pooling=cfg.pooling, padding=padding, weights=cfg.weights, seed=cfg.seed
    )
    with torch.no_grad():
        for mine, theirs in zip(full.convs(), ours.convs(), strict=False):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    return full, list(ours.layers)


def _run_all(backbone, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Every module of the trunk, in order, as long as the feature map is large enough."""
    x = torch.addcmul(backbone.shift, x, backbone.scale)
    taps = backbone._taps
    found = {}
    for i, module in enumerate(backbone.features):
        need = {"valid": 3, "reflect": 2}.get(backbone.padding, 1)
        if isinstance(module, nn.ReLU):
            need = 1
        elif not isinstance(module, nn.Conv2d):
            need = 2  # pooling
        if min(x.shape[-2:]) < need:
            break  # the seeds would crash here; stop, having done all the work that is possible
        x = module(x)
        if i in taps:
            found[taps[i]] = x
    return {name: found[name] for name in layers}


class NaiveTextureLoss:
    """``L = sum_s v_s sum_l w_l E^{l,s} / Z + beta L_spec + lambda TV``, recomputing everything.

    Args:
        cfg: a ``configs.SynthConfig`` (backbone, layers, octaves, weights, spectrum, tv,
            tile: periodic output); a synthesizer's own ``config`` gives exactly the objective
            it optimises (same fitted octaves).
        exemplars: list of (3, H, W) in [0, 1].
        backbone: our feature extractor for ``cfg`` (its weights are copied).

    Call: ``loss(x)`` with x (1, 3, H, W) in [0, 1] returns {"total": scalar}.
    """

    def __init__(self, cfg, exemplars: list[torch.Tensor], backbone):
        self.cfg, self.exemplars, self.tile = cfg, exemplars, cfg.tile
        self.backbone, self.layers = full_backbone(cfg, backbone)
        self.octaves = cfg.octaves
        self.layer_weights = cfg.layer_weights or [1.0] * len(self.layers)
        self.octave_weights = cfg.octave_weights or [1.0] * cfg.octaves

    def _grams(self, x: torch.Tensor, circular: bool) -> list[dict[str, torch.Tensor]]:
        out = []
        for level in gaussian_pyramid(x, self.octaves, circular):
            feats = _run_all(self.backbone, level, self.layers)
            out.append({n: gram_matrix(f) for n, f in feats.items()})
        return out

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # targets, recomputed on every call
            per = [self._grams(u[None], circular=False) for u in self.exemplars]
            targets = [
                {n: torch.stack([p[s][n] for p in per]).mean(0) for n in self.layers}
                for s in range(self.octaves)
            ]
            # The Gram term is relative to the targets' own energy (as in TextureLoss).
            energy = sum(
                v * w * float(targets[s][n].double().pow(2).sum())
                for s, v in enumerate(self.octave_weights)
                for n, w in zip(self.layers, self.layer_weights, strict=True)
            )
        total = x.new_zeros((), dtype=torch.float32)
        for s, grams in enumerate(self._grams(x, self.tile)):
            octave = x.new_zeros((), dtype=torch.float32)
            for name, w in zip(self.layers, self.layer_weights, strict=True):
                octave = octave + w * (grams[name] - targets[s][name]).pow(2).sum((1, 2)).mean()
            total = total + self.octave_weights[s] * octave / energy
        if self.cfg.spectrum_weight:
            target = spectrum_target(self.exemplars, tuple(x.shape[-2:]))
            total = total + self.cfg.spectrum_weight * spectrum_loss(x, target)
        if self.cfg.tv_weight:
            total = total + self.cfg.tv_weight * total_variation(x.float(), self.tile)
        return {"total": total}


def naive_optimize(loss_fn, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """``torch.optim.LBFGS`` with default settings, ``steps`` calls of ``step`` (each up to
    20 iterations), clamping to [0, 1] after each.

    Returns the (1, 3, H, W) image reached.
    """
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x])

    def closure():
        opt.zero_grad()
        total = loss_fn(x)["total"]
        total.backward()
        return total

    for _ in range(steps):
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach()
