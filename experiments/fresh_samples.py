"""How a fresh sample of a procedural exemplar's own process scores: the best a synthesis of
it can hope for.

    python -m experiments.fresh_samples [--side 256] [--sizes 512,1024] [--seeds 3]

The exemplar is ``data.procedural.make(kind, side, seed=0)``; each fresh sample is the same
kind made at the output size with another seed (the same density of cells and dots: a new
layout of the same material). Both are judged as the race judges an output
(``bench.race.tiled_judge``: ``TILES`` squares of half the exemplar's side). Stripes are
left out: another seed only shifts them, so a fresh sample is a real crop.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bench.race import tiled_judge
from data.errors import run_cli
from data.procedural import make

KINDS = ("cells", "dots")

app = typer.Typer(add_completion=False)


@app.command()
def main(
    side: Annotated[int, typer.Option(help="the exemplar's side, px")] = 256,
    sizes: Annotated[str, typer.Option(help="output sides, px, comma-separated")] = "512,1024",
    seeds: Annotated[int, typer.Option(help="fresh samples per kind and size")] = 3,
) -> None:
    """Print structure / score of fresh samples of each procedural kind."""
    run_cli(lambda: report(side, [int(s) for s in sizes.split(",")], seeds))


def report(side: int, sizes: list[int], seeds: int) -> None:
    print("| kind | output | fresh samples, structure / score |\n| --- | --- | --- |")
    for kind in KINDS:
        judged = tiled_judge(make(kind, side, seed=0))
        for size in sizes:
            rows = [judged(make(kind, size, seed=s)) for s in range(1, seeds + 1)]
            cells = ", ".join(f"{r['structure']:.2f} / {r['score']:.2f}" for r in rows)
            print(f"| {kind} | {size} | {cells} |", flush=True)


if __name__ == "__main__":
    app()
