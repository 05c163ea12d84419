"""What the per-image engines share: exemplar loading, the JSON sidecar, saving, and the
choice of engine by the config's ``objective``.

- ``features`` (``optimize.features.TextureSynthesizer``): L-BFGS on the pixels against a
  backbone's feature statistics (Gram matrices, autocorrelation, spectrum).
- ``patches`` (``optimize.patches.PatchSynthesizer``): Adam on the pixels, coarse to
  fine, against the exemplar's pixel patch distribution. No network.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch.nn.functional as F

from configs import SynthConfig
from configs.editing import is_edit
from data.errors import UserError
from data.images import load_exemplars, save_image  # noqa: F401 (optimize.patches imports it here)

OBJECTIVES = ("features", "patches")


def at_size(result, size: tuple[int, int]):
    """Upsample a run stopped at a coarse level to the requested (H, W), noting the level's
    size in ``result.stopped_at``: the file is then what its name and size promise."""
    reached = tuple(result.image.shape[-2:])
    if reached != tuple(size):
        result.stopped_at = reached
        result.image = F.interpolate(
            result.image, size=tuple(size), mode="bilinear", align_corners=False
        ).clamp(0, 1)
    return result


def make_synthesizer(exemplars, config: SynthConfig, log=print, fit_octaves: bool = False):
    """The engine ``config.objective`` names, built on ``exemplars`` (a remaker or an editor
    when ``config`` asks for one)."""
    if config.remake:
        from optimize.remake import make_remaker

        return make_remaker(exemplars, config, log=log, fit_octaves=fit_octaves)
    if config.objective == "patches" and is_edit(config):
        from optimize.editing import make_editor

        return make_editor(exemplars, config, log=log)
    if config.objective == "patches":
        from optimize.patches import PatchSynthesizer

        return PatchSynthesizer(exemplars, config, log=log)
    if config.objective == "features":
        from optimize.features import TextureSynthesizer

        return TextureSynthesizer(exemplars, config, log=log, fit_octaves=fit_octaves)
    raise UserError(f"unknown objective '{config.objective}'; use one of {', '.join(OBJECTIVES)}")


class PerImageSynthesizer:
    """Base of the per-image engines: subclasses set ``config``, ``sources``, ``device`` and
    implement ``synthesize``, ``level_iterations`` and ``engine_metadata``."""

    precision = "fp32"  # what the engine computes in, resolved (features: its backbone's)

    def default_size(self) -> tuple[int, int]:
        """(H, W) of an output when no size is given: the first exemplar's."""
        return tuple(self.exemplars[0].shape[-2:])

    def metadata(self, result, seed: int) -> dict:
        """The JSON sidecar: resolved config, seed, engine, losses, timings."""
        return {
            "mode": "optimize",
            "config": dataclasses.asdict(self.config),
            "seed": seed,
            "exemplars": self.sources,
            "size": {"height": result.image.shape[-2], "width": result.image.shape[-1]},
            **self.engine_metadata(),
            "losses": result.terms,
            "iterations": result.iterations,
            "evaluations": result.evaluations,
            "seconds": round(result.seconds, 3),
            "interrupted": result.interrupted,
            "stopped_at_size": list(result.stopped_at) if result.stopped_at else None,
            "diverged": result.diverged,
            "device": str(self.device),
            "precision": self.precision,
        }

    def save(self, result, path: str | Path, seed: int | None = None, overwrite: bool = False):
        """Write the image as PNG (config's bit depth) with its JSON sidecar, atomically.

        A run that ``diverged`` (NaN or infinite loss) is saved as its last finite iterate,
        with ``diverged`` in the sidecar; one that diverged before its first iteration has
        nothing but the start image, and is refused (UserError)."""
        if result.diverged and not result.iterations:
            raise UserError(
                f"{result.diverged}, at the start image: nothing to save "
                "(check the weights: a loss this large overflows float32)"
            )
        seed = self.config.seed if seed is None else seed
        return save_image(
            result.image[0],
            path,
            bits=self.config.bits,
            overwrite=overwrite,
            sidecar=self.metadata(result, seed),
        )
