"""fp32 against bf16 backbones in optimize mode: loss, the judge's figures, time per evaluation.

    python -m experiments.precision EXEMPLAR [EXEMPLAR ...] [--size 192] [--short-side 256]
        [--config autocorr_pyramid] [--iterations 100] [--out bench/results/precision]

Each exemplar is downscaled (in memory; a copy for the judge goes under ``--out``) to a
``--short-side`` px short side, so that the judge's centre square (half of it) fits the
``--size`` px outputs. Runs alternate fp32, bf16, fp32, bf16 (seeds 0 and 1) in this one
process, so that the per-evaluation time ratio of each pair shares the machine's state. Each
result is scored twice: by the loss its own run reached, and by the fp32 objective's loss
of the final image (a common yardstick), and judged (``bench.judge``). Writes ``precision.md``
(a Markdown table), ``precision.json`` and each exemplar's results side by side
(``NAME_sheet.png``: fp32 seed 0 | bf16 seed 0 | fp32 seed 1 | bf16 seed 1).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
import typer

from bench import judge as J
from configs import SynthConfig, build_config, read_config_file
from data.errors import run_cli
from data.images import load_image, save_image
from optimize.features import TextureSynthesizer

PRECISIONS = ("fp32", "bf16")
SEEDS = (0, 1)


def downscaled(path: Path, short_side: int) -> torch.Tensor:
    """(3, H, W) exemplar with its short side ``short_side`` px (antialiased)."""
    img, _ = load_image(path)
    factor = short_side / min(img.shape[-2:])
    size = [round(s * factor) for s in img.shape[-2:]]
    return F.interpolate(img[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)


def one_exemplar(path: Path, cfg: SynthConfig, size: int, short_side: int, out: Path) -> list:
    exemplar = downscaled(path, short_side)
    save_image(exemplar, out / f"{path.stem}_exemplar.png", overwrite=True)
    rate = J.centre_judge(exemplar)
    synths = {
        p: TextureSynthesizer(exemplar, dataclasses.replace(cfg, precision=p), log=lambda *_: 0)
        for p in PRECISIONS
    }
    yardstick = synths["fp32"].objective(1)
    rows, images = [], []
    for seed in SEEDS:
        for precision in PRECISIONS:  # alternating: each bf16 run next to its fp32 run
            result = synths[precision].synthesize(size=(size, size), seed=seed)
            with torch.no_grad():
                fp32_loss = float(yardstick(result.image)["total"])
            judged = rate(result.image[0], f"{path.stem} {precision} {seed}")
            images.append(result.image[0])
            rows.append(
                {
                    "exemplar": path.stem,
                    "precision": precision,
                    "seed": seed,
                    "loss": result.terms["total"],
                    "fp32_loss": fp32_loss,
                    "score": judged["score"],
                    "structure": judged["structure"],
                    "highfreq": judged["highfreq"],
                    "colour": judged["colour"],
                    "iterations": result.iterations,
                    "evaluations": result.evaluations,
                    "s_per_eval": result.seconds / max(result.evaluations, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    save_image(torch.cat(images, -1), out / f"{path.stem}_sheet.png", overwrite=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| exemplar | precision | seed | loss (own) | loss (fp32 objective) | score | structure "
        "| highfreq | colour | s / evaluation | bf16 / fp32 (pair) |",
        "|---" * 11 + "|",
    ]
    for i, r in enumerate(rows):
        pair = f"{r['s_per_eval'] / rows[i - 1]['s_per_eval']:.2f}" if i % 2 else ""
        lines.append(
            f"| {r['exemplar']} | {r['precision']} | {r['seed']} | {r['loss']:.4g} | "
            f"{r['fp32_loss']:.4g} | {r['score']:.2f} | {r['structure']:.2f} | "
            f"{r['highfreq']:.2f} | {r['colour']:.2f} | {r['s_per_eval']:.3f} | {pair} |"
        )
    ratios = [b["s_per_eval"] / a["s_per_eval"] for a, b in zip(rows[::2], rows[1::2], strict=True)]
    lines.append(f"\nmedian bf16 / fp32 seconds per evaluation: {statistics.median(ratios):.3f}")
    return "\n".join(lines)


def _run(exemplars, config, size, short_side, iterations, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cfg = build_config(SynthConfig, read_config_file(config), {"iterations": iterations})
    rows = [r for p in exemplars for r in one_exemplar(p, cfg, size, short_side, out)]
    (out / "precision.json").write_text(json.dumps(rows, indent=1))
    (out / "precision.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))


app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(help=__doc__)
def main(
    exemplars: Annotated[list[Path], typer.Argument(help="Exemplar photos.")],
    config: Annotated[str, typer.Option(help="A features preset.")] = "autocorr_pyramid",
    size: Annotated[int, typer.Option(help="Side of the square outputs, px.")] = 192,
    short_side: Annotated[int, typer.Option(help="Exemplars' short side after scaling.")] = 256,
    iterations: Annotated[int, typer.Option(help="L-BFGS iterations (per level).")] = 100,
    out: Annotated[Path, typer.Option(help="Folder of the results.")] = Path(
        "bench/results/precision"
    ),
) -> None:
    run_cli(lambda: _run(exemplars, config, size, short_side, iterations, out))


if __name__ == "__main__":
    app()
