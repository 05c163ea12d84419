"""Benchmark both engines, speed and quality, in one run; write RESULTS.md and contact sheets.

\b
    python -m bench --quick                   # < 2 min: tiny sizes, tiny backbone, procedural
    python -m bench                           # full: all presets at 256/512/1024 px, vgg16-hed,
                                              # ../shared/exemplars + procedural exemplars
    python -m bench --exemplars DIR --out bench/results

Every knob of the two modes is an option (defaults: the mode's); see docs/benchmark.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated

import typer

from cli.console import parse_list, say
from configs import PAINTER_PRESET, TrainConfig, build_config, default_config, read_config_file
from data.errors import UserError, run_cli
from data.sidecar import write_files_atomic

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["gatys2015", "snelgrove2017", "liu2016_spectrum", "coarse_to_fine"]
# Judged for quality only: the naive reference of the speed part has no autocorrelation term
# and no patch objective, so a speed ratio for these would compare different objectives.
QUALITY_ONLY = ["autocorr_pyramid", "patch_pyramid"]
PROCEDURAL = ["cells", "dots", "stripes"]  # data.procedural kinds
SHARED = ROOT.parent / "shared" / "exemplars"  # the photos of full mode


@dataclass
class BenchConfig:
    """Defaults are the full mode; ``bench/quick.toml`` overrides them for ``--quick``."""

    backbone: str = "vgg16-hed"  # the best offline backbone (vgg19 needs a download)
    presets: list[str] = field(default_factory=lambda: [*PRESETS, *QUALITY_ONLY])
    sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])  # optimize speed, px
    speed_exemplar: int = 512  # side of the procedural exemplar used for speed
    evaluations: int = 3  # timed L-BFGS evaluations per round (after one warm-up)
    rounds: int = 2  # alternating ours/naive rounds
    loss_fraction: float = 0.25  # time-to-loss target, as a fraction of the start loss
    loss_size: int = 256  # output side of the time-to-loss race
    loss_cap: float = 120.0  # seconds before a race is called off
    stage_size: int = 512  # output side of the time split and FLOP/s
    stage_repeats: int = 3
    train_steps: int = 30  # timed training steps (speed); quality training uses quality_steps
    generator: str = "base"
    gen_sizes: list[int] = field(default_factory=lambda: [1024, 4096, 16384])
    gen_repeats: int = 3  # at 1024; larger sizes run once
    procedural: list[str] = field(default_factory=lambda: list(PROCEDURAL))  # kinds made in code
    exemplars: list[str] = field(default_factory=list)  # procedural:KIND, then image files
    exemplar_side: int = 288  # exemplars are scaled and centre-cropped to this square
    quality_size: int = 192  # output side for quality (must be < exemplar_side)
    iterations: int = 100  # L-BFGS iterations per preset (per level for coarse_to_fine)
    quality_steps: int = 300  # generator training steps per exemplar
    painter_steps: int = 1000  # painter (train.py's default) training steps per exemplar
    quality_octaves: int = 0  # generator objective octaves (0 = the preset's)
    image_size: int = 256  # generator training canvas
    speed: bool = True
    quality: bool = True
    # Time to quality (bench/race.py): optimize mode's default, an earlier commit's code
    # path against this one's, on one exemplar (default: ../shared's honeycomb, else
    # procedural cells) at each of race_sizes (WxH).
    race: bool = False
    race_sizes: list[str] = field(default_factory=lambda: ["1024x1024", "2048x1024"])
    race_exemplar: str = ""
    race_old: str = "0ff7b18"

    def train_config(self, steps: int) -> TrainConfig:
        """The generator preset with this benchmark's backbone, generator and canvas."""
        octaves = self.quality_octaves or None  # None: the preset's
        return default_config(
            TrainConfig, backbone=self.backbone, generator=self.generator, steps=steps,
            image_size=self.image_size, crop=min(128, self.image_size), octaves=octaves,
        )  # fmt: skip

    def painter_config(self, steps: int) -> TrainConfig:
        """The painter preset (train.py's default for one exemplar) on this benchmark's canvas."""
        values = {"steps": steps, "image_size": self.image_size}
        return build_config(TrainConfig, read_config_file(PAINTER_PRESET), values)


QUICK = ROOT / "bench" / "quick.toml"  # --quick: a preset read like any other config file

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
Opt = typer.Option


@app.command(help=__doc__)
def main(
    quick: Annotated[bool, Opt(help="Tiny settings for development (< 2 min).")] = False,
    out: Annotated[
        Path, Opt(help="Results folder (git-ignored).", show_default="bench/results")
    ] = ROOT / "bench/results",
    exemplars: Annotated[
        Path | None,
        Opt(help="Folder of exemplar photos (default ../shared/exemplars in full mode)."),
    ] = None,
    max_exemplars: Annotated[int | None, Opt(help="Use at most this many photos.")] = None,
    procedural: Annotated[
        str | None, Opt(help="Procedural exemplars: comma-separated cells,dots,stripes or none.")
    ] = None,
    backbone: Annotated[str | None, Opt(help="Feature network of the objective.")] = None,
    presets: Annotated[str | None, Opt(help="Comma-separated optimize presets.")] = None,
    sizes: Annotated[str | None, Opt(help="Comma-separated optimize speed sizes (px).")] = None,
    evaluations: Annotated[int | None, Opt(help="Timed evaluations per round.")] = None,
    rounds: Annotated[int | None, Opt(help="Alternating ours/naive rounds.")] = None,
    loss_cap: Annotated[float | None, Opt(help="Seconds before a time-to-loss race stops.")] = None,
    stage_size: Annotated[int | None, Opt(help="Output side of the time split.")] = None,
    train_steps: Annotated[int | None, Opt(help="Timed generator training steps.")] = None,
    gen_sizes: Annotated[
        str | None, Opt(help='Comma-separated generation sizes (px); "" skips the generator.')
    ] = None,
    exemplar_side: Annotated[int | None, Opt(help="Exemplar square side (px).")] = None,
    quality_size: Annotated[int | None, Opt(help="Output side for quality (px).")] = None,
    iterations: Annotated[int | None, Opt(help="L-BFGS iterations per preset (quality).")] = None,
    quality_steps: Annotated[int | None, Opt(help="Generator steps per exemplar.")] = None,
    painter_steps: Annotated[int | None, Opt(help="Painter steps per exemplar.")] = None,
    speed: Annotated[bool, Opt("--speed/--no-speed", help="Run the speed part.")] = True,
    quality: Annotated[bool, Opt("--quality/--no-quality", help="Run the quality part.")] = True,
    race: Annotated[
        bool, Opt("--race/--no-race", help="Run the time-to-quality race (long; off by default).")
    ] = False,
    race_sizes: Annotated[
        str | None, Opt(help="Comma-separated race sizes WxH (default 1024x1024,2048x1024).")
    ] = None,
    race_exemplar: Annotated[
        Path | None, Opt(help="The race's exemplar (default: honeycomb, else procedural cells).")
    ] = None,
    race_old: Annotated[str | None, Opt(help="The commit the race's old path runs.")] = None,
) -> None:
    cli = dict(locals())
    run_cli(lambda: run(cli))


def resolve(cli: dict) -> BenchConfig:
    """The run's config: command line > ``bench/quick.toml`` (with --quick) > the defaults;
    ``exemplars`` = the procedural kinds, then the photos of the exemplar folder."""
    values = {k: v for k, v in cli.items() if k != "exemplars"}  # a folder here, files in cfg
    lists = {"presets": str, "sizes": int, "gen_sizes": int, "procedural": str, "race_sizes": str}
    for key, kind in lists.items():
        values[key] = parse_list(cli[key], kind, key.replace("_", "-"))
    if cli["procedural"] == "none":
        values["procedural"] = []
    if cli["race_exemplar"] is not None:
        values["race_exemplar"] = str(cli["race_exemplar"])
    cfg = build_config(BenchConfig, read_config_file(str(QUICK)) if cli["quick"] else {}, values)
    _refuse_unknown("preset", cfg.presets, [*PRESETS, *QUALITY_ONLY])
    _refuse_unknown("procedural exemplar", cfg.procedural, PROCEDURAL)
    if cfg.race:
        from data.sizes import parse_size

        for size in cfg.race_sizes:
            parse_size(size)
    if cfg.quality and cfg.quality_size >= cfg.exemplar_side:
        raise UserError("--quality-size must be smaller than --exemplar-side (real crops)")
    folder = cli["exemplars"]
    if folder is None and not cli["quick"] and SHARED.is_dir():
        folder = SHARED
    photos = []
    if folder is not None:
        if not Path(folder).is_dir():
            raise UserError(f"exemplar folder not found: {folder}")
        from data.datasets import image_files  # imports torch: only once there is a folder

        photos = [str(p) for p in image_files(Path(folder))][: cli["max_exemplars"]]
    return replace(cfg, exemplars=[f"procedural:{k}" for k in cfg.procedural] + photos)


def _refuse_unknown(what: str, chosen: list[str], known: list[str]) -> None:
    unknown = [k for k in chosen if k not in known]
    if unknown:
        raise UserError(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")


def machine() -> dict:
    """What the timings were measured on (RESULTS.md's "Machine" list)."""
    import torch

    from bench.speed import PRECISION
    from models.devices import resolve_precision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return {
        "cpu": models[0] if models else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "backbone precision": f"{PRECISION} (pinned; {resolve_precision('auto', device)[1]})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": platform.platform(),
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def run(cli: dict) -> None:
    cfg = resolve(cli)
    import torch  # after argument checking, so errors and --help are instant

    from bench import report

    out = Path(cli["out"])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    command = " ".join(["python -m bench", *sys.argv[1:]])
    results = {"command": command, "machine": machine(), "config": asdict(cfg)}

    def save(done: bool = False) -> None:
        """Write what is measured so far: a long run that is stopped still leaves its tables."""
        results["wall_s"] = time.perf_counter() - start
        results["complete"] = done
        write_files_atomic({
            out / "results.json": json.dumps(results, indent=1, default=str).encode(),
            out / "RESULTS.md": report.render(results).encode(),
        })  # fmt: skip

    torch.set_grad_enabled(True)
    if cfg.speed:
        from data.procedural import make

        exemplar = make("cells", cfg.speed_exemplar, seed=0)  # every speed figure's exemplar
        optimize_speed(cfg, exemplar, results, save)
        if cfg.gen_sizes:  # --gen-sizes "": optimize timings only
            generator_speed(cfg, exemplar, out, results, save)
    if cfg.quality:
        quality_part(cfg, out, results, save)
    if cfg.race:
        race_part(cfg, out, results, save)
    save(done=True)
    print(f"wrote {out / 'RESULTS.md'} ({results['wall_s']:.0f} s)")


def optimize_speed(cfg: BenchConfig, exemplar, results: dict, save) -> None:
    """Per preset and size: seconds per evaluation against the naive reference, the time
    split at ``stage_size`` and the race to a fixed loss at ``loss_size``."""
    import torch

    from bench import speed as S
    from bench.naive import NaiveTextureLoss

    results["speed_exemplar"] = f"procedural cells, {cfg.speed_exemplar}x{cfg.speed_exemplar}"
    results["matmul_gflops"] = S.matmul_peak(2048 if cfg.stage_size > 128 else 1024) / 1e9
    threads = torch.get_num_threads()
    say(f"matmul peak {results['matmul_gflops']:.1f} GFLOP/s, torch threads: {threads}")
    results.update(per_evaluation=[], to_loss=[], stages=[], stage_size=cfg.stage_size)
    for preset in [p for p in cfg.presets if p in PRESETS]:
        base = S.preset_config(preset, backbone=cfg.backbone)
        for side in cfg.sizes:
            synth = S.ours(base, exemplar, sizes=[(side, side)])
            naive = NaiveTextureLoss(synth.config, synth.exemplars, synth.backbone)
            row = S.per_evaluation(synth, naive, (side, side), cfg.evaluations, cfg.rounds)
            row.update(preset=preset, size=side, octaves=synth.config.octaves)
            results["per_evaluation"].append(row)
            say(f"{preset} {side}px: ours {row['ours_s']:.3f} s, naive {row['naive_s']:.3f} s")
            if side == cfg.stage_size:
                stages = S.stage_row(synth, side, row["ours_s"], cfg.stage_repeats)
                results["stages"].append({**stages, "preset": preset})
            if side == cfg.loss_size:
                race = S.time_to_loss(synth, naive, (side, side), cfg.loss_fraction, cfg.loss_cap)
                race.update(preset=preset, size=side, fraction=cfg.loss_fraction)
                results["to_loss"].append(race)
                say(f"{preset} to loss: ours {race['ours_s']:.2f} s, naive {race['naive_s']:.2f} s")
            save()


def generator_speed(cfg: BenchConfig, exemplar, out: Path, results: dict, save) -> None:
    """Training steps per second (after two warm-up steps) in fp32 and bf16 autocast, then
    generation from the fp32 run's final checkpoint at each of ``gen_sizes`` in both."""
    from bench import generator as G

    results["training"] = {}
    for precision in ("no", "bf16"):
        tcfg = replace(cfg.train_config(cfg.train_steps + 2), mixed_precision=precision)
        _, seconds, _ = G.train(exemplar, tcfg, out / f"generator_speed_{precision}")
        results["training"][precision] = {
            "steps_per_s": 1 / statistics.median(seconds[2:]),
            "n": len(seconds[2:]),
            "warmup": 2,
            "config": f"generator {tcfg.generator}, batch {tcfg.batch_size}, {tcfg.image_size} "
            f"px canvas, crop {tcfg.crop}, {tcfg.octaves} octaves, {tcfg.backbone}",
        }
        say(f"training ({precision}) {results['training'][precision]['steps_per_s']:.2f} steps/s")
    checkpoint = out / "generator_speed_no" / "final"
    results["generation"] = {}
    for side in cfg.gen_sizes:
        repeats = cfg.gen_repeats if side <= 1024 else 1
        for precision in ("fp32", "bf16"):
            row = G.generation(checkpoint, side, repeats, out, precision)
            results["generation"][f"{side} {precision}"] = {**row, "precision": precision}
            say(f"generation {side}px {precision}: {row['wall_s']:.1f} s")
            save()


def quality_part(cfg: BenchConfig, out: Path, results: dict, save) -> None:
    """Every method on every exemplar, judged; one contact sheet per exemplar."""
    from bench import quality as Q
    from data.sheets import contact_sheet

    results["quality"] = {}
    for source in cfg.exemplars:
        name = source.replace(":", " ") if source.startswith("procedural:") else Path(source).stem
        slug = name.replace(" ", "_")
        say(f"quality: {name}")
        exemplar = Q.load_exemplar(source, cfg.exemplar_side)
        images, info = Q.run_methods(exemplar, cfg, out / "runs" / slug)
        metrics = Q.judge_all(exemplar, images, (cfg.quality_size, cfg.quality_size))
        tiles = [("exemplar", exemplar)] + [
            (m, images[m]) for m in (*cfg.presets, "generator", "painter")
        ]
        sheet = contact_sheet(
            [(t, [img]) for t, img in tiles], out / "sheets" / f"{slug}.png", 256, len(tiles)
        )
        results["quality"][name] = {
            "metrics": metrics,
            "runs": info,
            "sheet": str(sheet.relative_to(out)),
        }
        save()


def race_part(cfg: BenchConfig, out: Path, results: dict, save) -> None:
    """Time to quality of optimize mode's default: ``cfg.race_old``'s path against this one."""
    from bench.race import race
    from data.images import save_image
    from data.procedural import make

    exemplar = Path(cfg.race_exemplar) if cfg.race_exemplar else SHARED / "honeycomb.jpg"
    if not cfg.race_exemplar and not exemplar.is_file():
        exemplar = out / "race_cells.png"
        save_image(make("cells", cfg.exemplar_side, seed=1), exemplar, overwrite=True)
    if not exemplar.is_file():
        raise UserError(f"race exemplar not found: {exemplar}")
    results["race"] = []

    def on_row(row: dict) -> None:
        results["race"].append(row)
        save()

    race(exemplar, cfg.race_sizes, cfg.race_old, out, log=say, on_row=on_row)


if __name__ == "__main__":
    app()
