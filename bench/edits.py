"""Repair and expand on holes whose true pixels are known: seam ratio, edge judge, time.

\b
    python -m bench.edits                            # every case, seed 0, the default fill
    python -m bench.edits --cases daisies_expand,bricks_repair --seeds 0,1,2
    python -m bench.edits --controls                 # and the edge judge's controls

Each case cuts a hole into an image (a repair) or keeps its middle (an expand) and fills it
with the default editor (``optimize.editing.PatchEditor``). Scored against the true pixels:
the seam ratio at the hole's edge (``optimize.editing.seam_ratio``; the true image's own is
printed beside it) and the edge judge (``bench.edges``: per band of distance from the kept
pixels, the fill's patches' distance to the nearest kept patch over the true pixels'; the
worst band). ``--controls`` scores, per case, what the judge must flag: the true image
shifted by a third into the hole (real texture, cut at the edge), the copied blocks as
pasted (cut) and as blended (glow where the edge cuts an element), before the refinement.
The photos come from ../shared/exemplars; a case whose photo is missing is skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
import typer

from bench.edges import BANDS, edge_score
from cli.console import parse_list, say
from data.errors import UserError, run_cli
from data.images import load_image
from data.procedural import make
from data.sidecar import write_files_atomic
from experiments.regular import bricks
from optimize.editing import PatchEditor, expand_canvas, seam_ratio

SHARED = Path(__file__).resolve().parents[2] / "shared" / "exemplars"


@dataclass
class Case:
    """``truth()``: the (3, H, W) true image; a repair cuts a centred ``hole`` (h, w) out of
    it, an expand keeps its centred ``keep`` share of each side and grows it back."""

    truth: Callable[[], torch.Tensor]
    hole: tuple[int, int] | None = None
    keep: float | None = None


def photo(name: str, size: tuple[int, int] | None = None) -> Callable[[], torch.Tensor]:
    def load() -> torch.Tensor:
        path = SHARED / name
        if not path.exists():
            raise FileNotFoundError(path)
        img = load_image(path)[0]
        if size is not None:
            img = F.interpolate(img[None], size=size, mode="bicubic", antialias=True)[0]
        return img.clamp(0, 1)

    return load


CASES = {
    "cells_repair": Case(lambda: make("cells", 256, seed=3), hole=(128, 128)),
    "cells_expand": Case(lambda: make("cells", 320, seed=3), keep=0.6),
    "bricks_repair": Case(lambda: bricks(384, 512, seed=0), hole=(192, 192)),
    "knit_repair": Case(photo("knit.jpg", (531, 512)), hole=(192, 256)),
    "red_dots_expand": Case(photo("red_dots.jpg", (512, 512)), keep=0.6),
    "daisies_expand": Case(photo("daisies.jpg"), keep=0.5),  # 2x: 307x220 -> 614x440
}


@dataclass
class Row:
    case: str
    fill: str  # "default" or a control
    seed: int
    seconds: float
    seam: float
    true_seam: float
    edge: float  # the edge judge's worst band
    bands: list[float]


def centred_hole(h: int, w: int, hole: tuple[int, int]) -> torch.Tensor:
    fill = torch.zeros(h, w, dtype=torch.bool)
    top, left = (h - hole[0]) // 2, (w - hole[1]) // 2
    fill[top : top + hole[0], left : left + hole[1]] = True
    return fill


def editor_for(case: Case, truth: torch.Tensor) -> PatchEditor:
    quiet = lambda *a: None  # noqa: E731
    h, w = truth.shape[-2:]
    if case.hole is not None:
        return PatchEditor.repair(truth, centred_hole(h, w, case.hole), log=quiet)
    kh, kw = round(h * case.keep), round(w * case.keep)
    # cut where the expand puts it back (the anchor's rounding: 153.5 -> 154, not 153)
    _, fill = expand_canvas(truth[:, :kh, :kw], (h, w))
    kept = truth[:, ~fill].reshape(-1, kh, kw)
    return PatchEditor.expand(kept, (h, w), log=quiet)


def filled(editor: PatchEditor, truth: torch.Tensor, fill: str, seed: int) -> torch.Tensor:
    """(3, H, W): the default fill, or a control (module docstring)."""
    hole = editor.fill
    if fill == "default":
        return editor.synthesize(seed=seed).image[0].cpu()
    if fill == "shifted":
        h, w = truth.shape[-2:]
        return torch.where(hole, truth.roll((h // 3, w // 3), (-2, -1)), truth)
    if fill in ("pasted", "blended"):
        whole = editor.canvas.cpu().clone()
        blocks = editor.blocks(torch.Generator().manual_seed(seed), fill == "blended")
        whole[(slice(None), *editor.window)] = blocks
        return whole
    raise ValueError(fill)


def run(cases: list[str], seeds: list[int], controls: bool, log=say) -> list[Row]:
    rows = []
    for name in cases:
        case = CASES[name]
        try:
            truth = case.truth()
        except FileNotFoundError as missing:
            log(f"{name}: skipped, {missing} is missing")
            continue
        editor = editor_for(case, truth)
        true_seam = seam_ratio(truth, editor.fill)
        fills = ["default"] + (["shifted", "pasted", "blended"] if controls else [])
        for seed in seeds:
            for fill in fills:
                start = time.perf_counter()
                out = filled(editor, truth, fill, seed)
                seconds = time.perf_counter() - start
                score = edge_score(out, truth, editor.fill)
                row = Row(name, fill, seed, seconds, seam_ratio(out, editor.fill), true_seam,
                          score.worst, score.ratios)  # fmt: skip
                rows.append(row)
                log(table_row(row))
    return rows


def table_row(r: Row) -> str:
    bands = " ".join(f"{v:.2f}" for v in r.bands)
    return (f"| {r.case} | {r.fill} | {r.seed} | {r.seconds:.1f} | {r.seam:.2f} "
            f"({r.true_seam:.2f}) | **{r.edge:.2f}** | {bands} |")  # fmt: skip


HEADER = (
    "| case | fill | seed | s | seam (true image's) | edge judge | bands "
    + " ".join(f"{a}-{b}" for a, b in BANDS)
    + " px |\n| --- | --- | --- | --- | --- | --- | --- |"
)

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(help=__doc__)
def main(
    cases: Annotated[str, typer.Option(help="comma-separated; default all")] = ",".join(CASES),
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0",
    controls: Annotated[bool, typer.Option(help="also score the judge's controls")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the rows here")] = None,
) -> None:
    def go() -> None:
        names = parse_list(cases)
        unknown = [n for n in names if n not in CASES]
        if unknown:
            raise UserError(f"unknown case {unknown[0]}; choose from {', '.join(CASES)}")
        seed_list = parse_list(seeds, int, "seeds")
        say(HEADER)
        rows = run(names, seed_list, controls)
        if json_out is not None:
            lines = "".join(json.dumps(asdict(r)) + "\n" for r in rows)
            write_files_atomic({json_out: lines.encode()})

    run_cli(go)


if __name__ == "__main__":
    app()
