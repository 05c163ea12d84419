"""Validate the recurrence measure (``judge.recurrence``) on controls made from each exemplar.

    python -m experiments.recurrence_controls [--exemplars DIR]

For every exemplar of ``bench.structure`` (the photos of ``--exemplars``, the procedural and
the regular ones) it prints ``recurrence_judge``'s ratio against the exemplar of: a real crop (three
quarters of each side: new material, about 1 or more); the exemplar with its lower half a
copy of its upper half (the squares of the grid's top and bottom rows have a copy: about
0.5; the middle rows straddle the paste); and a grid of one crop of a quarter of its sides
(all copies: about 0); for the procedural ones also a fresh sample of their process at 512
and 1024 px (new material at the outputs' size).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import torch
import typer

from bench.structure import PROCEDURAL, SHARED, exemplars
from data.errors import run_cli
from data.images import load_image
from data.procedural import make
from judge.recurrence import recurrence_judge


def controls(u: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exemplar-made controls of (3, h, w) ``u``, by name."""
    h, w = u.shape[-2:]
    crop = u[:, h // 8 : h // 8 + 3 * h // 4, w // 8 : w // 8 + 3 * w // 4]
    pasted = u.clone()
    pasted[:, h - h // 2 :] = u[:, : h // 2]
    grid = u[:, : h // 4, : w // 4].repeat(1, 4, 4)
    return {"real crop": crop, "half pasted": pasted, "grid of one crop": grid}


app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(help=__doc__)
def main(
    exemplars_dir: Annotated[Path, typer.Option("--exemplars", help="folder of photos")] = SHARED,
) -> None:
    def go() -> None:
        with tempfile.TemporaryDirectory() as work:
            names = exemplars(exemplars_dir, None, Path(work))
            print("| exemplar | real crop | half pasted | grid of one crop | fresh 512 / 1024 |")
            print("| --- | --- | --- | --- | --- |")
            for name, (_, path) in names.items():
                u = load_image(path)[0]
                rate = recurrence_judge(u)
                cells = [f"{rate(c):.2f}" for c in controls(u).values()]
                fresh = "-"
                if name in PROCEDURAL:
                    fresh = " / ".join(f"{rate(make(name, s, seed=1)):.2f}" for s in (512, 1024))
                print(f"| {name} | {' | '.join(cells)} | {fresh} |", flush=True)

    run_cli(go)


if __name__ == "__main__":
    app()
