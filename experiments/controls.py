"""Validate the judge's structure measure on controls made from each exemplar.

    python -m experiments.controls [IMAGE ...] [--procedural-side 512] [--out bench/results]

For every exemplar (photos at their native scale, and the procedural kinds) it scores real
crops and every control of ``bench.structure.controls`` at half the exemplar's short side,
divided by the mean of the real crops (1.0 = a real crop). A measure that works scores the
real crops about 1 and every control above ``FLAG`` (the issue's 1.5x). Writes
``controls.md`` and ``controls.json`` (atomically) under ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bench.structure import StructureReference, controls
from data.errors import UserError, run_cli
from data.images import load_image
from data.procedural import make

ROOT = Path(__file__).resolve().parents[1]
PROCEDURAL = ("cells", "dots", "stripes")
FLAG = 1.5  # a control must score at least this many real crops


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
    for path, body in (
        (out / "controls.md", text),
        (out / "controls.json", json.dumps(tables, indent=1)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(body)
        tmp.replace(path)
    print(text)


if __name__ == "__main__":
    app()
