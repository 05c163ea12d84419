"""A trained generator against optimize mode on the same objective, with real texture as the
yardstick (issue 3's loss target).

\b
    python -m experiments.target runs/wood/final wood256.png
    python -m experiments.target runs/wood/final wood256.png --reference other_piece.png --size 256

Scores, under the checkpoint's own objective (its octaves, layers and weights; whole views):
the generator's samples at SIZE (seeds 0..N-1, mean); an optimize-mode result of the same
SIZE and objective (``TextureSynthesizer``, L-BFGS-B, ``--iterations``); and real texture:
the exemplar rolled by half each way (a real piece, with one seam) and any ``--reference``
images (other pieces of the same photo at the exemplar's scale). Each row also gets the
benchmark's judge on its centre (1.0 = as close as a real crop of the exemplar). Writes
target.json and sheet.png (exemplar | optimize | samples | references) to ``--out``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import torch
import typer

import judge as J
from configs import LossConfig, SynthConfig, TrainConfig
from data.errors import UserError, run_cli
from data.images import load_image
from data.sheets import contact_sheet
from data.sidecar import write_json_atomic
from generator.render import generate, load_generator, prepare
from optimize.features import TextureSynthesizer

ROOT = Path(__file__).resolve().parents[1]


def objective_config(meta: dict) -> TrainConfig:
    """The checkpoint's resolved training config (its objective is the one scored)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in meta["config"].items() if k in names})


def scorer(synth: TextureSynthesizer, exemplar: torch.Tensor):
    """image (3, H, W) -> {"total", "octaves": [finest first], "judge"}, under ``synth``'s
    objective; the judge looks at the centre half."""
    objective = synth.objective()
    judge = J.centre_judge(exemplar)

    @torch.no_grad()
    def score(image: torch.Tensor) -> dict:
        terms = objective(image[None].to(synth.device))
        return {
            "total": float(terms["total"]),
            "octaves": [float(terms[f"gram/octave{s}"]) for s in range(synth.config.octaves)],
            "judge": judge(image)["score"],
        }

    return score


def _loss_fields(cfg: TrainConfig) -> dict:
    """The objective's fields of a training config, as ``SynthConfig`` keywords."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(LossConfig)}
    return fields | {"tile": cfg.tile}


def _mean(rows: list[dict]) -> dict:
    return {
        "total": sum(r["total"] for r in rows) / len(rows),
        "octaves": [sum(o) / len(rows) for o in zip(*(r["octaves"] for r in rows), strict=True)],
        "judge": sum(r["judge"] for r in rows) / len(rows),
    }


def measure(checkpoint: Path, exemplar_path: Path, references, side, seeds, iterations, out):
    if seeds < 1 or side < 1 or iterations < 0:
        raise UserError("--seeds and --size must be at least 1, --iterations at least 0")
    model, meta = load_generator(checkpoint)
    cfg = objective_config(meta)
    exemplar, _ = load_image(exemplar_path)
    trained_on = [Path(p).name for p in meta["info"].get("exemplars", [])]
    if trained_on and exemplar_path.name not in trained_on:
        print(
            f"note: {checkpoint} was trained on {', '.join(trained_on)}, not {exemplar_path.name}"
        )
    # One synthesizer (backbone and targets built once) scores every image and makes the
    # optimize-mode result with exactly the checkpoint's objective, in fp32 (the scores' and the
    # earlier sessions' precision, whatever auto would pick here).
    config = SynthConfig(**_loss_fields(cfg), precision="fp32")
    synth = TextureSynthesizer(exemplar, config, log=lambda *_: None)
    score = scorer(synth, exemplar)
    net = prepare(model)
    samples = [generate(net, (side, side), seed=s) for s in range(seeds)]
    optimized = synth.synthesize(size=(side, side), seed=0, iterations=iterations).image[0].cpu()
    half = (exemplar.shape[-2] // 2, exemplar.shape[-1] // 2)
    which = "seed 0" if seeds == 1 else f"mean of seeds 0-{seeds - 1}"
    optimize_row = f"optimize, {side} px, {iterations} L-BFGS-B iterations"
    rows = {
        f"generator, {side} px, {which}": _mean([score(x) for x in samples]),
        optimize_row: score(optimized),
        "real: exemplar rolled by half": score(torch.roll(exemplar, half, (1, 2))),
    }
    tiles = [("exemplar", exemplar), ("optimize", optimized)]
    tiles += [(f"generator seed {s}", x) for s, x in enumerate(samples[:2])]
    for path in references:
        image, _ = load_image(path)
        rows[f"real: {Path(path).name}"] = score(image)
        tiles.append((Path(path).name, image))
    base = rows[optimize_row]["total"]
    for row in rows.values():
        row["vs_optimize"] = row["total"] / max(base, 1e-30)
    out.mkdir(parents=True, exist_ok=True)
    record = {"checkpoint": str(checkpoint), "exemplar": str(exemplar_path), "rows": rows}
    write_json_atomic(out / "target.json", record)
    contact_sheet([(t, [img]) for t, img in tiles], out / "sheet.png", 256, len(tiles))
    print(f"{'image':<48} {'loss':>9} {'x optimize':>11} {'judge':>6}   octaves (finest first)")
    for name, r in rows.items():
        octaves = " ".join(f"{o:.2g}" for o in r["octaves"])
        print(
            f"{name:<48} {r['total']:9.3g} {r['vs_optimize']:11.3g} {r['judge']:6.2f}   {octaves}"
        )
    print(f"wrote {out / 'target.json'} and {out / 'sheet.png'}")


app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
Opt = typer.Option


@app.command(help=__doc__)
def main(
    checkpoint: Annotated[Path, typer.Argument(help="Trained generator (OUTDIR/final).")],
    exemplar: Annotated[Path, typer.Argument(help="The exemplar it was trained on.")],
    reference: Annotated[
        list[Path] | None, Opt(help="Another real piece of the texture (repeatable).")
    ] = None,
    size: Annotated[int, Opt(help="Side of the samples and the optimize result (px).")] = 256,
    seeds: Annotated[int, Opt(help="Generator samples averaged.")] = 4,
    iterations: Annotated[int, Opt(help="L-BFGS-B iterations of the optimize run.")] = 300,
    out: Annotated[Path, Opt(help="Results folder (git-ignored).")] = ROOT / "bench/results/target",
) -> None:
    run_cli(lambda: measure(checkpoint, exemplar, reference or [], size, seeds, iterations, out))


if __name__ == "__main__":
    app()
