"""VGG trunks that return named post-ReLU activations, truncated at the deepest layer in use."""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from data.errors import UserError

# Channel plans as in torchvision's ``vgg.cfgs`` ("M" = pooling). The module indices they
# produce (conv, ReLU, ..., pool) equal torchvision's ``features.N`` indices.
ARCHS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M")
    + (512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    # vgg19 at 1/8 width: same layer names and strides, ~1/64 of the cost; for tests.
    "vgg19-tiny": (8, 8, "M", 16, 16, "M", 32, 32, 32, 32, "M")
    + (64, 64, 64, 64, "M", 64, 64, 64, 64, "M"),
}

PADDINGS = ("zeros", "reflect", "circular", "valid")
# The 2x2 pooling layer of each pooling name. The configs refuse other names (configs:
# check_values), so a lookup here needs no check of its own.
POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
POOLINGS = tuple(POOLS)


def layer_taps(arch: str) -> dict[str, int]:
    """Gatys-style layer names of ``arch`` -> index of the module whose output is that feature.

    ``convB_K`` taps the ReLU after the K-th conv of block B (features are post-ReLU);
    ``poolB`` taps the pooling that ends block B.
    """
    taps, index, block, conv = {}, 0, 1, 1
    for item in ARCHS[arch]:
        if item == "M":
            taps[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 1
        else:
            taps[f"conv{block}_{conv}"] = index + 1
            index, conv = index + 2, conv + 1
    return taps


_GATYS = re.compile(r"(?:conv|relu)(\d)_(\d)|pool(\d)")
_KERAS = re.compile(r"block(\d)_(?:conv(\d)|(pool))")


def canonical_layer(name: str, arch: str) -> str:
    """Canonical Gatys name (``conv3_2``, ``pool1``) of a layer given in any accepted spelling.

    Accepts Gatys/caffe names (``conv3_2``; ``relu3_2`` is the same feature, since every
    ``convB_K`` feature is taken after its ReLU; ``pool1``) and Keras names (``block3_conv2``,
    ``block1_pool``). ``arch`` is a key of ``ARCHS``: ``"vgg19"``, ``"vgg16"`` (which has no
    ``conv3_4``, ``conv4_4``, ``conv5_4``) or ``"vgg19-tiny"`` (named like vgg19).

    Raises:
        UserError: unknown name, with the list of valid ones.
    """
    key = name.strip().lower()
    if m := _GATYS.fullmatch(key):
        key = f"conv{m[1]}_{m[2]}" if m[1] else f"pool{m[3]}"
    elif m := _KERAS.fullmatch(key):
        key = f"conv{m[1]}_{m[2]}" if m[2] else f"pool{m[1]}"
    taps = layer_taps(arch)
    if key not in taps:
        raise UserError(
            f"unknown layer '{name}' for {arch}; valid: {', '.join(taps)} "
            "(reluB_K means convB_K; Keras names blockB_convK and blockB_pool also work)"
        )
    return key


class FeatureExtractor(nn.Module):
    """A frozen VGG trunk returning the activations of the requested layers.

    The module holds only the layers up to the deepest requested one. Its parameters are
    left uninitialised by the constructor: fill them with :meth:`load_convs_` or
    :meth:`init_random_` (``build_backbone`` does).

    Convention:
        Input is RGB in [0, 1]; ``x * scale + shift`` (per channel buffers) turns it into what the
        weights were trained on. Caffe-trained (BGR) weights are stored with the input channels
        of the first conv already reversed, so the network always sees RGB order.
        ``padding``: "zeros" | "reflect" | "circular" pad each 3x3 conv by 1 (maps keep their
        size; "circular" makes the features of a periodic image periodic); "valid" pads nothing
        (each conv trims one pixel per border). Pooling is 2x2 stride 2, flooring odd sizes.

    Attributes:
        name: registry key of the backbone.
        layers: canonical names of the requested layers, in request order.
        weights_sha256: sha256 of the weights file, or None for random weights.
        description: one line saying which weights these are.
    """

    def __init__(
        self,
        name: str,
        arch: str,
        layers: list[str],
        *,
        pooling: str,
        padding: str,
        scale: tuple[float, float, float],
        shift: tuple[float, float, float],
        description: str,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise UserError(f"no layers requested; valid: {', '.join(layer_taps(arch))}")
        canon = [canonical_layer(n, arch) for n in layers]
        if len(set(canon)) < len(canon):
            raise UserError(f"layers {', '.join(layers)} name the same layer twice")
        self.name, self.arch, self.layers = name, arch, canon
        self.pooling, self.padding = pooling, padding
        self.description, self.weights_sha256 = description, weights_sha256
        taps = layer_taps(arch)
        self._taps = {taps[n]: n for n in canon}  # module index -> layer name
        depth = max(self._taps) + 1

        modules: list[nn.Module] = []
        channels = 3
        # Built on the meta device so that construction neither spends time on an init that is
        # overwritten nor draws from the global RNG.
        with torch.device("meta"):
            for item in ARCHS[arch]:
                if item == "M":
                    modules.append(POOLS[pooling](2, 2))
                    continue
                pad = 0 if padding == "valid" else 1
                mode = "zeros" if padding == "valid" else padding
                modules.append(nn.Conv2d(channels, int(item), 3, padding=pad, padding_mode=mode))
                modules.append(nn.ReLU(inplace=True))
                channels = int(item)
        self.features = nn.Sequential(*modules[:depth]).to_empty(device="cpu")
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1))

    def convs(self) -> list[nn.Conv2d]:
        """The conv layers this module holds, in network order."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)]

    @torch.no_grad()
    def load_convs_(self, params: list[tuple[Tensor, Tensor]], source: str) -> None:
        """Copy (weight (O, I, 3, 3), bias (O,)) pairs, in network order, into the held convs.

        ``params`` may describe more convs than are held (the rest are ignored), never fewer.

        Raises:
            UserError: fewer convs than held, or a shape that does not match.
        """
        convs = self.convs()
        if len(params) < len(convs):
            raise UserError(
                f"{source} has {len(params)} conv layers; {self.name} needs {len(convs)}"
            )
        for i, (conv, (w, b)) in enumerate(zip(convs, params[: len(convs)], strict=True)):
            if w.shape != conv.weight.shape or b.shape != conv.bias.shape:
                raise UserError(
                    f"{source}: conv {i + 1} has shape {tuple(w.shape)}, "
                    f"{self.name} expects {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(w)
            conv.bias.copy_(b)

    @torch.no_grad()
    def init_random_(self, seed: int) -> None:
        """He (kaiming-uniform, ReLU gain, fan-in) weights and zero biases from ``seed``.

        He scaling keeps the activation scale roughly constant through the 16 ReLU layers, so
        deep layers neither vanish nor explode. Convs are drawn in network order from one
        generator, so a truncated module equals the first layers of a deeper one.
        """
        generator = torch.Generator().manual_seed(seed)
        for conv in self.convs():
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu", generator=generator)
            conv.bias.zero_()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Features of ``x``.

        Args:
            x: (B, 3, H, W) float RGB in [0, 1]; normalised internally.

        Returns:
            {layer: (B, C, h, w)} for every requested layer, in request order. The tensors
            are the network's own activations, not copies.
        """
        x = torch.addcmul(self.shift, x, self.scale)
        found = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._taps:
                found[self._taps[i]] = x
        return {name: found[name] for name in self.layers}

    def min_input_size(self) -> int:
        """Smallest side s such that an s x s input gives >= 1 position at every requested layer.

        Walks the held layers backwards from one output position: a "valid" conv needs 2 more
        pixels, a "reflect" conv needs at least 2 (reflection of a 1-pixel map is undefined),
        a pooling needs twice as many.
        """
        size = 1
        for module in reversed(self.features):
            if isinstance(module, nn.Conv2d):
                if self.padding == "valid":
                    size += 2
                elif self.padding == "reflect":
                    size = max(size, 2)
            elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
                size *= 2
        return size

    @torch.no_grad()
    def rescale_(self, images: list[Tensor]) -> None:
        """Gatys activation normalisation, in place.

        For each conv in turn, scales its output channels so that the mean post-ReLU activation
        of every channel over ``images`` is 1 (each image weighs the same, whatever its size),
        and divides the next conv's input channels by the same factors. ReLU and pooling
        commute with positive per-channel scaling, so every feature map is the original one
        times a per-channel constant: the network computes the same features, and only the
        balance between channels and layers in the Gram losses moves. (Without the
        compensation, weak channels amplified 100x would drive every later layer.) A
        channel whose mean is below a tenth of the layer's average channel mean is scaled as
        if its mean were that tenth, so (nearly) silent channels are not blown up.

        Args:
            images: list of (1, 3, H, W) float RGB in [0, 1], each at least
                :meth:`min_input_size` on a side.
        """
        xs = [torch.addcmul(self.shift, x.to(self.scale), self.scale) for x in images]
        conv, previous = None, None
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                conv = module
                if previous is not None:
                    # Inputs now arrive multiplied by ``previous``: undo it in the weights.
                    conv.weight.div_(previous.view(1, -1, 1, 1))
            xs = [module(x) for x in xs]
            if isinstance(module, nn.ReLU):
                mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in xs]).mean(0)
                floor = (0.1 * mean.mean()).clamp_min(1e-30)
                factor = 1 / mean.clamp_min(floor)
                conv.weight.mul_(factor.view(-1, 1, 1, 1))
                conv.bias.mul_(factor)
                # Equal to recomputing this layer with the new weights (ReLU is homogeneous).
                xs = [x.mul_(factor.view(1, -1, 1, 1)) for x in xs]
                previous = factor
