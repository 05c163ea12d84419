"""Generator engine: training steps per second, and generation seconds and peak memory.

Training replays ``train.py``'s step (same noise, crops, objective, Adam and schedule) in this
process, without accelerate, timing each step; the folded network is saved as a checkpoint in
``train.py``'s format. Generation runs the real command, ``synth.py --mode generate``, in a
child process whose wall time and peak resident memory (``wait4`` rusage) are measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from configs import TrainConfig, build_config, read_config_file
from generator import training as T
from generator.checkpoints import save_generator
from generator.render import generate, prepare
from losses.objective import build_backbone_for, build_objective
from models.generator import build_generator

ROOT = Path(__file__).resolve().parents[1]

# Runs a script and reports its own peak RSS on exit. The child's rusage cannot be used: a
# child spawned (vfork + exec) from this large process inherits this process's peak in
# ru_maxrss, whereas VmHWM belongs to the address space the script itself ran in (Linux).
_PEAK_WRAPPER = """
import atexit, runpy, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("peak_rss_kb", line.split()[1], file=sys.stderr)
atexit.register(_peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def train_config(**overrides) -> TrainConfig:
    """The ``generator`` preset with ``overrides`` (None values ignored)."""
    return build_config(TrainConfig, read_config_file("generator"), overrides)


def train(exemplar: torch.Tensor, cfg: TrainConfig):
    """Train ``cfg.steps`` steps on one (3, H, W) exemplar in [0, 1] (CPU).

    Returns:
        (folded eval-mode generator, seconds of each step, final training loss).
    """
    device = torch.device("cpu")
    backbone = build_backbone_for(cfg, cfg.tile, device, log=lambda *_: None)
    T.check_config(cfg, backbone.min_input_size())
    if cfg.activation_norm:
        backbone.rescale_([exemplar[None]])
    objective = build_objective(cfg, [exemplar], backbone, cfg.tile)
    torch.manual_seed(cfg.seed)
    model = build_generator(cfg.generator, cfg.output)
    model.start_at_colour(exemplar.mean((1, 2)))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, T.Schedule(cfg, 1))
    model.train()
    seconds, loss = [], float("nan")
    for step in range(cfg.steps):
        start = time.perf_counter()
        noises, crops = T.step_inputs(model, cfg, step, 0, device)
        terms = objective(model(noises).float(), crop=cfg.crop or None, generator=crops)
        terms["total"].backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
        loss = float(terms["total"].detach())
    return T.inference_form(model, cfg, device), seconds, loss


def save(model, cfg: TrainConfig, directory: Path, info: dict) -> Path:
    """Write the checkpoint ``synth.py --mode generate --checkpoint DIR`` reads."""
    save_generator(model, directory, dataclasses.asdict(cfg), info)
    return directory


@torch.inference_mode()
def samples(model, size: tuple[int, int], seeds, seamless: bool = True) -> list[torch.Tensor]:
    """(3, H, W) textures in [0, 1], one per seed."""
    net = prepare(model)
    return [generate(net, size, seed=s, seamless=seamless) for s in seeds]


def generation_run(checkpoint: Path, side: int, workdir: Path, threads: int) -> dict:
    """Run ``synth.py --mode generate`` at side x side in a child process.

    Returns wall seconds (with start-up), render + PNG seconds (the sidecar's), and peak RSS
    in bytes of the child (its VmHWM on Linux). The PNG is deleted afterwards (16384^2 is ~0.7 GB).
    """
    out = workdir / f"gen_{side}.png"
    linux = Path("/proc/self/status").exists()
    cmd = [sys.executable, *(["-c", _PEAK_WRAPPER] if linux else [])]
    cmd += ["synth.py", "--mode", "generate", "--checkpoint", str(checkpoint)]
    cmd += ["--size", f"{side}x{side}", "-o", str(out), "--overwrite", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"generation at {side} px failed: {output.strip()[-500:]}")
    sidecar = json.loads(out.with_suffix(".json").read_text())
    out.unlink()
    out.with_suffix(".json").unlink()
    peaks = [int(line.split()[1]) for line in output.splitlines() if line.startswith("peak_rss_kb")]
    peak_kb = peaks[-1] if peaks else usage.ru_maxrss  # rusage: an upper bound (see above)
    return {"wall_s": wall, "render_s": sidecar["seconds"], "peak_rss": peak_kb * 1024}


def generation(checkpoint: Path, sides, repeats: int, workdir: Path, threads: int) -> dict:
    """Per side: median wall and render seconds and the largest peak RSS over ``repeats``."""
    table = {}
    for side in sides:
        runs = [generation_run(checkpoint, side, workdir, threads) for _ in range(repeats)]
        table[side] = {
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "render_s": statistics.median(r["render_s"] for r in runs),
            "peak_rss": max(r["peak_rss"] for r in runs),
            "n": len(runs),
        }
    return table
