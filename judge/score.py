"""Judge finished textures against their exemplar: the benchmark's judge on any PNG files.

    python -m judge.score EXEMPLAR IMAGE [IMAGE ...] [--json scores.json]

Each image is judged in its centre square of half the exemplar's short side, against real
crops of that size (1.0 = as close as a real crop; lower is better), the structure measure
included (``judge.structure``). Prints one Markdown row per image; ``--json`` also writes the
rows (atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import judge as J
from data.errors import run_cli
from data.images import load_image
from data.sidecar import write_json_atomic

COLUMNS = ("score", "structure", "local", "coarse", "lowfreq", "highfreq", "colour", "copy")

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| image | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[c]:.2f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def _run(exemplar: Path, images: list[Path], json_path: Path | None) -> None:
    ref, _ = load_image(exemplar)
    rate = J.centre_judge(ref)
    rows = {p.name: rate(load_image(p)[0], p.name) for p in images}
    print(markdown(rows))
    if json_path is not None:
        write_json_atomic(json_path, rows)


@app.command(help=__doc__)
def main(
    exemplar: Annotated[Path, typer.Argument(help="The exemplar the images were made from.")],
    images: Annotated[list[Path], typer.Argument(help="Textures to judge (PNG, JPEG, ...).")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write rows here.")] = None,
) -> None:
    run_cli(lambda: _run(exemplar, images, json_path))


if __name__ == "__main__":
    app()
