"""Validate the judge's structure measure on controls made from each exemplar.

    python -m experiments.controls [IMAGE ...] [--procedural-side 512] [--out bench/results]

For every exemplar (photos at their native scale, and the procedural kinds) it scores real
crops and every control of ``controls`` (below) at half the exemplar's short side,
divided by the mean of the real crops (1.0 = a real crop). A measure that works scores the
real crops about 1 and every control above ``FLAG`` (the issue's 1.5x). Writes
``controls.md`` and ``controls.json`` (atomically) under ``--out``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
import typer

from data.errors import UserError, run_cli
from data.images import load_image
from data.procedural import make
from data.sidecar import write_files_atomic
from judge.controls import block_shuffled, real_crops, white_noise
from judge.structure import StructureReference

ROOT = Path(__file__).resolve().parents[1]
PROCEDURAL = ("cells", "dots", "stripes")
FLAG = 1.5  # a control must score at least this many real crops


# Controls: images that keep the exemplar's local statistics and break its layout ---------


def elastic_warp(x: torch.Tensor, amplitude: float, scale: float, seed: int) -> torch.Tensor:
    """``x`` resampled along a smooth random displacement field.

    The field is white noise low-passed by a Gaussian of sd ``scale`` px, rescaled so that its
    RMS displacement is ``amplitude`` px per axis; bilinear resampling, borders reflected.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    fy, fx = torch.fft.fftfreq(h), torch.fft.rfftfreq(w)
    lowpass = torch.exp(-2 * math.pi**2 * scale**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    field = torch.fft.irfft2(torch.fft.rfft2(torch.randn(2, h, w, generator=g)) * lowpass, s=(h, w))
    field = field * (amplitude / field.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-12))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid_x = (xs + field[1]) / (w - 1) * 2 - 1
    grid_y = (ys + field[0]) / (h - 1) * 2 - 1
    grid = torch.stack([grid_x, grid_y], -1)[None]
    out = F.grid_sample(
        x[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True
    )
    return out[0].clamp(0, 1)


def rescaled(ref: torch.Tensor, size: tuple[int, int], factor: float, seed: int):
    """A crop of ``ref`` covering ``size / factor`` px resized to ``size`` (> 1 enlarges)."""
    src = (round(size[0] / factor), round(size[1] / factor))
    out = F.interpolate(
        real_crops(ref, src, 1, seed)[0][None], size=size, mode="bicubic", antialias=factor < 1
    )
    return out[0].clamp(0, 1)


def phase_randomised(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Same Fourier modulus per channel, a random phase added to all channels alike.

    Adding one white-noise phase to every channel keeps the colour channels' relative phases
    (so their cross-spectra), as in random-phase noise (Galerne, Gousseau, Morel 2011)."""
    g = torch.Generator().manual_seed(seed)
    mean = x.mean((1, 2), keepdim=True)
    spectrum = torch.fft.rfft2(x - mean)
    phase = torch.fft.rfft2(torch.randn(x.shape[-2:], generator=g)).angle()
    out = torch.fft.irfft2(spectrum * torch.exp(1j * phase), s=x.shape[-2:])
    return (out + mean).clamp(0, 1)


def controls(ref: torch.Tensor, size: tuple[int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Named (3, *size) images made from ``ref``: three real crops, then the controls.

    ``ref`` must be at least 1.25x ``size`` on each side (for the 0.8x rescale). The warp moves
    pixels by 1/64 of the side (RMS, per axis) along a field smooth over 1/16 of it; blocks are
    1/4 of the side.
    """
    side = min(size)
    out = {f"real crop {k + 1}": real_crops(ref, size, 1, seed + k)[0] for k in range(3)}
    out["elastic warp"] = elastic_warp(
        real_crops(ref, size, 1, seed + 10)[0], side / 64, side / 16, seed
    )
    out["rescaled 1.25x"] = rescaled(ref, size, 1.25, seed + 11)
    out["rescaled 0.8x"] = rescaled(ref, size, 0.8, seed + 12)
    out["shuffled blocks"] = block_shuffled(
        real_crops(ref, size, 1, seed + 13)[0], max(8, side // 4), seed
    )
    out["phase randomised"] = phase_randomised(real_crops(ref, size, 1, seed + 14)[0], seed)
    out["noise"] = white_noise(ref, size, seed + 15)
    return out


def control_table(ref, seed: int = 0) -> dict[str, dict[str, float]]:
    """{image: {"layout", "edges", "structure"}} for the real crops and controls of one
    (3, H, W) exemplar, at half its short side (1.0 ~ a real crop)."""
    side = min(ref.shape[-2:]) // 2
    reference = StructureReference(ref)
    return {name: reference(img) for name, img in controls(ref, (side, side), seed).items()}


def _markdown(tables: dict[str, dict[str, dict[str, float]]], term: str = "structure") -> str:
    names = list(next(iter(tables.values())))
    head = "| exemplar | " + " | ".join(names) + " | flags all |"
    lines = [head, "|---" * (len(names) + 2) + "|"]
    for ex, rows in tables.items():
        real = max(v[term] for k, v in rows.items() if k.startswith("real crop"))
        flagged = [
            v[term] >= FLAG and v[term] > real for k, v in rows.items() if not k.startswith("real")
        ]
        cells = " | ".join(f"{rows[n][term]:.2f}" for n in names)
        lines.append(f"| {ex} | {cells} | {sum(flagged)}/{len(flagged)} |")
    return "\n".join(lines) + "\n"


app = typer.Typer(add_completion=False)


@app.command()
def main(
    images: Annotated[
        list[Path] | None, typer.Argument(help="exemplar photos (native scale)")
    ] = None,
    procedural_side: Annotated[
        int, typer.Option(help="side of the procedural exemplars, px")
    ] = 512,
    out: Annotated[Path, typer.Option(help="folder for controls.md and controls.json")] = ROOT
    / "bench"
    / "results",
) -> None:
    """Score real crops and structure-breaking controls of every exemplar; print the table."""
    run_cli(lambda: validate(images, procedural_side, out))


def validate(images: list[Path] | None, procedural_side: int, out: Path) -> None:
    if images is None:
        shared = ROOT.parent / "shared" / "exemplars"
        images = sorted(shared.glob("*.jpg")) if shared.is_dir() else []
    exemplars = {p.stem: load_image(p)[0] for p in images}
    for kind in PROCEDURAL:
        exemplars[f"procedural:{kind}"] = make(kind, procedural_side, seed=1)
    if not exemplars:
        raise UserError("no exemplars given")
    tables = {}
    for name, ref in exemplars.items():
        tables[name] = control_table(ref)
        for term in ("layout", "edges", "structure"):
            row = " ".join(f"{v[term]:5.2f}" for v in tables[name].values())
            print(f"{name:20s} {term:9s} {row}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(f"{t}:\n\n{_markdown(tables, t)}" for t in ("structure", "layout", "edges"))
    body = json.dumps(tables, indent=1)
    write_files_atomic({out / "controls.md": text.encode(), out / "controls.json": body.encode()})
    print(text)


if __name__ == "__main__":
    app()
