"""Material stacks with the patch engine (issue 17): an albedo and its aligned maps (normal,
roughness, height, ...) synthesised together, so that the outputs stay aligned pixel for
pixel.

The maps are concatenated into one multi-channel image and ``PatchSynthesizer`` optimises
that: every patch, every projection direction and every nearest-patch copy spans all the
maps at once, so a patch of the output is a patch of the whole stack, never an albedo patch
from one place beside a normal patch from another. Each map is weighted by
1/sqrt(its channels), so that an RGB map and a grey one count equally in a patch's length
(and in the directions' projections); the weights are undone before saving.

Convention: maps are (C, H, W) float in [0, 1], C = 1 (grey) or 3 (RGB); the stack is their
concatenation, albedo first.
"""

from __future__ import annotations

from pathlib import Path

import torch

from configs import SynthConfig
from configs.editing import map_output
from data.errors import UserError
from data.images import save_image
from data.stacks import ALBEDO, load_stack, split_stack
from optimize.patches import PatchSynthesizer


class StackSynthesizer(PatchSynthesizer):
    """Synthesise aligned maps together.

    Example::

        maps = {"albedo": albedo, "height": height}  # (3, H, W) and (1, H, W) tensors
        synth = StackSynthesizer(maps)
        result = synth.synthesize(size=(512, 512), seed=1)
        maps = synth.split(result.image)  # {"albedo": (3, 512, 512), "height": (1, ...)}
        synth.save(result, "out.png")  # out.png, out_height.png (+ JSON sidecars)

    Args:
        maps: name -> (C, H, W) tensor in [0, 1], C 1 or 3, all of one size; the first is
            the albedo (the main output).
        bits: name -> PNG bit depth of that map's output (default: the config's).
        config, log, overrides: as ``PatchSynthesizer``.
    """

    EVENS_LIGHT = False
    KEEPS_LIGHT = "material stacks keep it (a normal or height map's light is its slope)"
    KEEPS_TURNS = "material stacks are not turned (a turned normal map would point wrongly)"

    def __init__(self, maps: dict, bits: dict | None = None, config=None, log=print, **kw):
        sizes = {name: tuple(m.shape[-2:]) for name, m in maps.items()}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{n} {w}x{h}" for n, (h, w) in sizes.items())
            raise UserError(f"the maps differ in size ({listed}); give aligned maps of one size")
        bad = [n for n, m in maps.items() if m.dim() != 3 or len(m) not in (1, 3)]
        if bad:
            raise UserError(f"maps {', '.join(bad)}: expected (1 or 3, H, W) images")
        self.names = list(maps)
        self.channels = [len(m) for m in maps.values()]
        weights = [c**-0.5 for c in self.channels for _ in range(c)]
        self.weights = torch.tensor(weights).view(1, -1, 1, 1)
        stack = torch.cat([m.detach().float().clamp(0, 1) for m in maps.values()])
        super().__init__(stack * self.weights[0], config, log, **kw)
        self.bits = {n: max(self.config.bits, (bits or {}).get(n, 8)) for n in self.names}
        layout = " + ".join(f"{n} ({c})" for n, c in zip(self.names, self.channels, strict=True))
        self.description += f"; stack of {layout} channels"

    @classmethod
    def from_files(cls, albedo, config: SynthConfig, log=print):
        """The stack ``config.maps`` (NAME=FILE) names beside the ``albedo`` file
        (``data.stacks.load_stack``): grey maps stay one channel, 16-bit files give 16-bit
        outputs."""
        stack, layout, sources = load_stack(albedo, config.maps, log)
        bits = {m["name"]: m["bits"] for m in layout}
        synth = cls(split_stack(stack, layout), bits, config, log)
        synth.sources = sources
        return synth

    def split(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """(1, C, H, W) stack in [0, 1] (``result.image``) -> name -> (c, H, W) map."""
        return dict(zip(self.names, torch.split(image[0], self.channels), strict=True))

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        """The weighted stack the engine optimises -> the maps' own values in [0, 1]."""
        return (x / self.weights.to(x)).clamp(0, 1)

    def synthesize(self, size=None, seed=None, iterations=None, init=None, on_iter=None):
        """As ``PatchSynthesizer.synthesize``; ``init`` a stack in [0, 1]; ``on_iter`` sees the
        albedo (1, C0, H, W), ``result.image`` is the stack (1, C, H, W) in [0, 1]."""
        if init is not None:
            init = (init[None] if init.dim() == 3 else init) * self.weights.to(init)
        inner = None
        if on_iter is not None:

            def inner(level, step, x, loss):
                on_iter(level, step, self._plain(x)[:, : self.channels[0]], loss)

        result = super().synthesize(size, seed, iterations, init, inner)
        result.image = self._plain(result.image)
        return result

    def save(self, result, path, seed=None, overwrite: bool = False):
        """Write every map: the albedo at ``path``, the others at ``path``'s stem plus
        ``_NAME``, each with its bit depth and a JSON sidecar naming the map."""
        path = Path(path)
        seed = self.config.seed if seed is None else seed
        meta = self.metadata(result, seed)
        for name, chunk in self.split(result.image).items():
            out = path if name == ALBEDO else map_output(path, name)
            sidecar = {**meta, "map": name, "config": {**meta["config"], "bits": self.bits[name]}}
            save_image(chunk, out, bits=self.bits[name], overwrite=overwrite, sidecar=sidecar)
            if name != ALBEDO:
                self.log(f"wrote {out} ({name})")
        return path
