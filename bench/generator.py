"""Generator engine: training steps per second, and generation seconds and peak memory.

Training runs ``train.py``'s own ``train`` in this process, which times each step; its final
checkpoint is the one generation runs on. Generation runs the real command, ``synth.py --mode
generate``, in a child process whose wall time and peak resident memory are measured.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from configs import TrainConfig
from generator.checkpoints import load_generator

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


def train(exemplar: torch.Tensor, cfg: TrainConfig, workdir: Path):
    """Train ``cfg.steps`` steps on one (3, H, W) exemplar in [0, 1] with ``train.py``'s own
    ``train`` (accelerate, checkpoints and all) into ``workdir`` (replaced).

    Returns:
        (the final folded generator, seconds of each step, its evaluation loss).
    """
    from accelerate.state import AcceleratorState

    import train as entry

    # accelerate keeps one state per process; a run in another precision needs a fresh one
    AcceleratorState._reset_state(True)
    shutil.rmtree(workdir, ignore_errors=True)
    result = entry.train(cfg, [exemplar], workdir, progress=False)
    model, meta = load_generator(result["final"])
    return model, result["step_seconds"], meta["info"]["eval_loss"]


def generation_run(checkpoint: Path, side: int, workdir: Path, precision: str = "fp32") -> dict:
    """Run ``synth.py --mode generate --precision PRECISION`` at side x side in a child
    process, with this process's torch threads unless OMP_NUM_THREADS is set (then the child
    inherits it).

    Returns wall seconds (with start-up), render + PNG seconds (the sidecar's), and peak RSS
    in bytes of the child (its VmHWM on Linux). The PNG is deleted afterwards (16384^2 is ~0.7 GB).
    """
    out = workdir / f"gen_{side}.png"
    linux = Path("/proc/self/status").exists()
    cmd = [sys.executable, *(["-c", _PEAK_WRAPPER] if linux else [])]
    cmd += ["synth.py", "--mode", "generate", "--checkpoint", str(checkpoint)]
    cmd += ["--size", f"{side}x{side}", "-o", str(out), "--overwrite", "--no-progress"]
    cmd += ["--precision", precision]
    env = {"OMP_NUM_THREADS": str(torch.get_num_threads()), **os.environ}
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


def generation(
    checkpoint: Path, side: int, repeats: int, workdir: Path, precision: str = "fp32"
) -> dict:
    """Median wall and render seconds and the largest peak RSS of ``repeats`` generations."""
    runs = [generation_run(checkpoint, side, workdir, precision) for _ in range(repeats)]
    return {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "render_s": statistics.median(r["render_s"] for r in runs),
        "peak_rss": max(r["peak_rss"] for r in runs),
        "n": len(runs),
    }
