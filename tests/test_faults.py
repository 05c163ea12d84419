"""The fault loop (issue 15): kill -9 runs at random points, a few dozen times, and check after
each kill what a user would find.

- optimize and generate, writing over an existing pair with --overwrite: after the next
  run's start (which finishes or rolls back a killed write), the pair is the old one byte
  for byte or a complete new one, and no temporary file is left;
- train: a run killed anywhere (start-up, a step, a checkpoint write), resumed with
  ``--resume latest``, ends with the same final weights, byte for byte, as a run never
  killed, and leaves no ``checkpoint-*.tmp``.

Kill points: random times over a whole run (start-up and optimisation), the appearance of a
temporary file (the PNG or checkpoint write under way), and exact calls injected in a child
(the sidecar's staging, each rename of the commit). Long: run with ``pytest -m faults``.
"""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from PIL import Image

from data.images import check_output_path, save_image

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[1]
ENV = {"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(ROOT)}
KILLS = 12  # random-time kills per kind of run
OPTIMIZE = ["ex.png", "-o", "out.png", "--overwrite", "--iterations", "20",
            "--coarse-iterations", "20", "--no-progress"]  # fmt: skip
GENERATE = ["--mode", "generate", "--checkpoint", "run/final", "-o", "out.png", "--overwrite",
            "--size", "3072x3072", "--no-progress"]  # fmt: skip
TRAIN = [
    "ex.png", "--output-dir", "run", "--backbone", "random-tiny", "--generator", "tiny",
    "--image-size", "48", "--crop", "24", "--octaves", "2", "--padding", "zeros",
    "--batch-size", "2", "--steps", "8", "--checkpoint-every", "2", "--log-every", "1",
    "--sample-every", "4", "--keep-checkpoints", "2", "--no-progress",
]  # fmt: skip
# Runs a script after arranging for this process to SIGKILL itself at one call: argv is
# (what, n, script, args...): what = "stage-json" (once the sidecar is staged) or
# "replace" (at the n-th os.replace, i.e. inside the commit).
INJECT = """
import os, runpy, signal, sys
import data.sidecar as sidecar
what, n = sys.argv[1], int(sys.argv[2])
calls = [0]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if what == "stage-json":
    real_stage = sidecar.stage_file
    def stage(path, data, token=None):
        tmp = real_stage(path, data, token)
        if path.suffix == ".json":
            die()
        return tmp
    sidecar.stage_file = stage
else:
    real_replace = os.replace
    def replace(src, dst):
        calls[0] += 1
        if calls[0] == n:
            die()
        return real_replace(src, dst)
    os.replace = replace
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def start(folder: Path, *args, inject: tuple[str, int] | None = None) -> subprocess.Popen:
    head = [sys.executable]
    if inject:
        head += ["-c", INJECT, inject[0], str(inject[1])]
    return subprocess.Popen(
        [*head, *[str(a) for a in args]],
        cwd=folder,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    return proc.returncode


def kill_after(proc: subprocess.Popen, seconds: float, appears: tuple[Path, str] | None = None):
    """SIGKILL ``proc`` ``seconds`` after its start, or after a file matching ``appears``
    (folder, glob) shows up; returns whether it was killed (False: it had ended)."""
    deadline = time.monotonic() + 600
    if appears is not None:
        while not list(appears[0].glob(appears[1])):
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
    time.sleep(seconds)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def hidden(folder: Path) -> list[str]:
    """Temporary files (hidden names) anywhere under ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*"))


def pair(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "out.png").read_bytes(), (folder / "out.json").read_bytes()


def complete(folder: Path) -> bool:
    """out.png decodes and out.json is its sidecar (the same size)."""
    with Image.open(folder / "out.png") as im:
        im.load()
        size = im.size
    meta = json.loads((folder / "out.json").read_text())
    return (meta["size"]["width"], meta["size"]["height"]) == size


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """An exemplar and a trained tiny generator (run/final)."""
    folder = tmp_path_factory.mktemp("faults")
    save_image(torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0)),
               folder / "ex.png")  # fmt: skip
    assert finish(start(folder, ROOT / "train.py", *TRAIN)) == 0
    return folder


def timed(folder: Path, *args) -> float:
    begin = time.monotonic()
    assert finish(start(folder, *args)) == 0
    return time.monotonic() - begin


@pytest.mark.parametrize("mode", ["optimize", "generate"])
def test_killed_writes_leave_the_old_pair_or_a_complete_new_one(folder, tmp_path, mode):
    shutil.copy(folder / "ex.png", tmp_path)
    shutil.copytree(folder / "run", tmp_path / "run")
    script = [ROOT / "synth.py", *(OPTIMIZE if mode == "optimize" else GENERATE)]
    whole = timed(tmp_path, *script)  # also the first pair
    rng = random.Random(mode)
    plan = [("time", rng.uniform(0, whole), None) for _ in range(KILLS)]
    plan += [("png", rng.uniform(0, 0.2), None) for _ in range(KILLS // 3)]
    plan += [("inject", 0, ("stage-json", 0))] + [
        ("inject", 0, ("replace", n)) for n in (1, 2, 3, 4)
    ]
    counts = {"killed": 0, "old pair": 0, "new pair": 0, "finished by the next run": 0}
    for kind, delay, inject in plan:
        old = pair(tmp_path)
        proc = start(tmp_path, *script, inject=inject)
        appears = (tmp_path, ".out.png.*.tmp") if kind == "png" else None
        killed = kill_after(proc, delay, appears) if kind != "inject" else proc.wait() < 0
        if not killed:
            assert finish(proc) == 0
            continue
        counts["killed"] += 1
        said = []
        check_output_path(tmp_path / "out.png", overwrite=True, log=said.append)  # the next run
        counts["finished by the next run"] += any("finished" in s for s in said)
        assert hidden(tmp_path) == [], (kind, delay, inject)
        assert complete(tmp_path), (kind, delay, inject)
        counts["old pair" if pair(tmp_path) == old else "new pair"] += 1
    print(f"\n{mode}: {len(plan)} runs, {counts}")
    assert counts["killed"] >= len(plan) // 2


def weights(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def test_killed_training_resumes_to_the_same_final_weights(folder, tmp_path):
    reference = (folder / "run" / "final" / "model.safetensors").read_bytes()
    shutil.copy(folder / "ex.png", tmp_path)
    train = [ROOT / "train.py", *TRAIN]
    whole = timed(tmp_path, *train)
    rng = random.Random("train")
    plan = [("time", rng.uniform(0, whole)) for _ in range(KILLS)]
    plan += [("checkpoint", rng.uniform(0, 0.05)) for _ in range(KILLS // 2)]
    counts = {"killed": 0, "resumed": 0, "identical final weights": 0}
    for kind, delay in plan:
        shutil.rmtree(tmp_path / "run")
        proc = start(tmp_path, *train)
        appears = (tmp_path / "run", "checkpoint-*.tmp") if kind == "checkpoint" else None
        if not kill_after(proc, delay, appears):
            assert finish(proc) == 0
            continue
        counts["killed"] += 1
        resumed = start(tmp_path, *train, "--resume", "latest")
        assert finish(resumed) == 0
        counts["resumed"] += 1
        run = tmp_path / "run"
        assert not list(run.glob("checkpoint-*.tmp")) and not hidden(run)
        final = (run / "final" / "model.safetensors").read_bytes()
        counts["identical final weights"] += final == reference
        assert final == reference, (kind, delay)
    print(f"\ntrain: {len(plan)} runs, {counts}")
    assert counts["killed"] >= len(plan) // 2
