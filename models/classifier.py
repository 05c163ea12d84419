"""A VGG-style texture classifier whose trunk becomes a backbone, and that backbone's file.

The trunk has the layer plan of ``models.vgg.ARCHS[arch]`` with a BatchNorm after each conv
(it lets a from-scratch VGG train in minutes); global average pooling and one linear layer
classify. :func:`export_backbone` folds each BatchNorm into its conv, so the saved trunk is
a plain VGG whose ``features.N`` indices are those of :class:`models.vgg.FeatureExtractor`
(torchvision's layout) and whose post-ReLU activations are the classifier's own.

Backbone file: ``.safetensors`` with ``features.N.{weight,bias}`` for every conv and
``head.{weight,bias}``; metadata ``format`` = ``texsynth-backbone-1``, ``arch``, ``scale`` and
``shift`` (input normalisation ``x * scale + shift`` on RGB in [0, 1], JSON lists),
``classes`` (JSON list), ``accuracy`` (JSON: overall and per class) and ``config`` (JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from data.errors import UserError
from models.batchnorm import fold_batchnorm
from models.vgg import ARCHS, POOLS
from models.weights import read_safetensors

FORMAT = "texsynth-backbone-1"
FILENAME = "backbone.safetensors"


class VGGClassifier(nn.Module):
    """VGG trunk (conv-BN-ReLU, pools) + global average pooling + linear head.

    Args:
        arch: key of ``ARCHS`` (``vgg19``, ``vgg16``, ``vgg19-tiny``).
        num_classes: number of texture classes.
        scale, shift: per-channel input normalisation ``x * scale + shift``.
        pooling: "max" (as VGG was trained) or "avg".

    ``forward(x)``: x (B, 3, H, W) RGB in [0, 1], H and W >= 32 -> logits (B, num_classes).
    """

    def __init__(self, arch: str, num_classes: int, scale, shift, pooling: str = "max"):
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"unknown arch '{arch}'; choose from {', '.join(ARCHS)}")
        self.arch, self.num_classes = arch, num_classes
        layers: list[nn.Module] = []
        channels = 3
        for item in ARCHS[arch]:
            if item == "M":
                layers.append(POOLS[pooling](2, 2))
                continue
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item))]
            layers.append(nn.ReLU(inplace=True))
            channels = int(item)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, 3, 1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.features if isinstance(m, nn.Conv2d)]

    @torch.no_grad()
    def load_convs_(self, params: list[tuple[Tensor, Tensor]]) -> None:
        """Start from another backbone's convs (fine-tuning); shapes must match."""
        convs = self.convs()
        if len(params) < len(convs):
            raise UserError(f"init backbone has {len(params)} convs; {self.arch} has {len(convs)}")
        for conv, (w, b) in zip(convs, params, strict=False):
            if w.shape != conv.weight.shape:
                raise UserError(
                    f"init backbone conv shape {tuple(w.shape)} does not fit {self.arch} "
                    f"({tuple(conv.weight.shape)}); pick the matching --arch"
                )
            conv.weight.copy_(w)
            conv.bias.copy_(b)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(torch.addcmul(self.shift, x, self.scale))
        return self.head(x.mean((2, 3)))


@torch.no_grad()
def folded_trunk(model: VGGClassifier) -> dict[str, Tensor]:
    """``features.N.{weight,bias}`` of the BatchNorm-folded trunk, N in FeatureExtractor order
    (``models.batchnorm.fold_batchnorm``)."""
    state, index = {}, 0
    modules = list(model.features)
    for i, m in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            weight, bias = fold_batchnorm(m.weight, m.bias, modules[i + 1])
            state[f"features.{index}.weight"], state[f"features.{index}.bias"] = weight, bias
            index += 2  # conv, ReLU
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            index += 1
    return {k: v.contiguous() for k, v in state.items()}


def export_backbone(
    model: VGGClassifier, path: Path, classes: list[str], accuracy: dict, config: dict
) -> Path:
    """Write the backbone file (see the module docstring) atomically."""
    from data.sidecar import write_bytes_atomic
    from models.weights import safetensors_bytes

    state = folded_trunk(model)
    state["head.weight"] = model.head.weight.detach().float().cpu().contiguous()
    state["head.bias"] = model.head.bias.detach().float().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "arch": model.arch,
        "scale": json.dumps(model.scale.flatten().tolist()),
        "shift": json.dumps(model.shift.flatten().tolist()),
        "classes": json.dumps(classes),
        "accuracy": json.dumps(accuracy),
        "config": json.dumps(config),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, safetensors_bytes(state, metadata))
    return path


def backbone_file(path: str | Path) -> Path:
    """The backbone file named by ``path``: the file itself, DIR/backbone.safetensors or
    DIR/final/backbone.safetensors (a train.py --task backbone run directory)."""
    path = Path(path).expanduser()
    for candidate in (path, path / FILENAME, path / "final" / FILENAME):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"backbone file not found: {path}; give a {FILENAME} written by "
        "train.py --task backbone, or its run directory"
    )


def looks_like_path(name: str) -> bool:
    """Whether a --backbone value names a file or directory rather than a registry key."""
    return name.endswith(".safetensors") or "/" in name or "\\" in name or Path(name).exists()


def read_backbone(path: str | Path) -> tuple[str, list[tuple[Tensor, Tensor]], dict]:
    """(arch, conv params in network order, metadata) of a trained backbone file.

    Raises:
        UserError: missing, corrupt, or not written by ``export_backbone``.
    """
    file = backbone_file(path)
    meta, state = read_safetensors(file, "backbone")
    if meta.get("format") != FORMAT:
        raise UserError(f"{file}: not a texsynth backbone (no '{FORMAT}' metadata)")
    try:
        arch = meta["arch"]
        ids = sorted(
            int(k.split(".")[1]) for k in state if k.endswith(".weight") and "features" in k
        )
        params = [(state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in ids]
        info = {
            "path": str(file),
            "arch": arch,
            "scale": tuple(json.loads(meta["scale"])),
            "shift": tuple(json.loads(meta["shift"])),
            "classes": json.loads(meta["classes"]),
            "accuracy": json.loads(meta["accuracy"]),
        }
    except (KeyError, ValueError) as e:
        raise UserError(f"{file}: incomplete backbone metadata ({e})") from None
    if arch not in ARCHS:
        raise UserError(f"{file}: unknown arch '{arch}'")
    return arch, params, info
