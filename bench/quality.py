"""Quality runs: every engine on one exemplar, judged against controls (the judge: ``judge/``)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

import judge as J
from bench import generator as G
from bench.speed import ours, preset_config
from data.images import load_image
from data.procedural import make
from generator.render import generate, prepare
from judge.controls import real_crops, shuffled_blocks, white_noise
from optimize.patches import PatchSynthesizer

SEEDS = (0, 1, 2, 3)  # generator samples for the diversity measurement


def load_exemplar(source: str, side: int) -> torch.Tensor:
    """(3, side, side) exemplar: a procedural kind ("procedural:cells", made at ``side``) or an
    image file scaled (antialiased) so its short side is ``side``, then centre-cropped."""
    if source.startswith("procedural:"):
        return make(source.split(":", 1)[1], side, seed=1)
    img, _ = load_image(Path(source))
    h, w = img.shape[-2:]
    scale = side / min(h, w)
    size = (max(side, round(h * scale)), max(side, round(w * scale)))
    img = F.interpolate(img[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)
    y, x = (size[0] - side) // 2, (size[1] - side) // 2
    return img[:, y : y + side, x : x + side].contiguous()


def run_methods(exemplar: torch.Tensor, opts, workdir: Path) -> tuple[dict, dict]:
    """Outputs of every preset and of both trained engines at ``opts.quality_size``: the
    generator of noise (the generator preset, ``opts.quality_steps``) and train.py's default,
    the painter of the exemplar's quilted layout (the painter preset, ``opts.painter_steps``).

    Returns:
        ({method: (3, S, S) image}, {method: {"seconds", "loss", ...}}) with each trained
        engine's extra samples under ``"{method}_samples"`` in the first dict.
    """
    size = (opts.quality_size, opts.quality_size)
    images, info = {}, {}
    for preset in opts.presets:
        if preset_config(preset).objective == "patches":  # no backbone; its own step counts
            synth = PatchSynthesizer(exemplar, preset_config(preset), log=lambda *_: None)
        else:
            cfg = preset_config(preset, backbone=opts.backbone, iterations=opts.iterations)
            synth = ours(cfg, exemplar, sizes=[size])
        result = synth.synthesize(size=size, seed=0)
        images[preset] = result.image[0].cpu()
        info[preset] = {
            "seconds": result.seconds,
            "loss": result.terms["total"],
            "octaves": synth.config.octaves,
            "iterations": result.iterations,
        }
    engines = {
        "generator": opts.train_config(opts.quality_steps),
        "painter": opts.painter_config(opts.painter_steps),
    }
    for name, cfg in engines.items():
        start = time.perf_counter()
        net, _, loss = G.train(exemplar, cfg, workdir / name)
        net = prepare(net)
        samples = [generate(net, size, seed=s, seamless=True) for s in SEEDS]
        images[name], images[f"{name}_samples"] = samples[0], samples
        info[name] = {"seconds": time.perf_counter() - start, "loss": loss, "steps": cfg.steps}
    return images, info


def judge_all(exemplar: torch.Tensor, images: dict, size: tuple[int, int]) -> dict:
    """Normalised metrics of every method and of the three controls.

    Returns {row name: {metric: value}}; distances are relative to real crops (1.0 = as close
    as a real crop), ``copy`` is a fraction, ``seam`` a ratio (1 = seamless), ``diversity`` (the
    generator only) relative to the diversity of real crops.
    """
    rate = J.relative_judge(exemplar, size)
    block = max(8, size[0] // 8)
    rows = {
        "control: white noise": white_noise(exemplar, size),
        "control: shuffled blocks": shuffled_blocks(exemplar, size, block),
        "control: real crop": real_crops(exemplar, size, 1, seed=99)[0],
    }
    rows.update({k: v for k, v in images.items() if not k.endswith("_samples")})
    table = {name: rate(img) for name, img in rows.items()}
    crops = real_crops(exemplar, size, len(SEEDS), seed=5)
    for name in rows:
        if f"{name}_samples" in images:
            spread = J.diversity(images[f"{name}_samples"])
            table[name]["diversity"] = spread / max(J.diversity(crops), 1e-12)
    return table
