"""Time to quality of optimize mode's default: an earlier commit's code path against this one's.

Both paths run the real command, ``synth.py EXEMPLAR --size WxH --seed 0``, in child
processes one after the other; the old one from a git worktree of commit ``old`` (by default
``OLD``, the default as it was before session 8's schedule). The quality bar is the old path's
result, judged by the benchmark's judge (``judge.relative_judge``, the structure measure
included) on ``TILES`` squares spread over the output, each half the exemplar's short side,
metrics averaged over them. The new path reaches that quality if its score and structure are
each at most ``1 + TOLERANCE`` times the old one's; the race's figure is then its wall time
over the old path's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import judge as J
from data.errors import UserError
from data.images import load_image

ROOT = Path(__file__).resolve().parents[1]
OLD = "0ff7b18"  # session 7's schedule: 300 steps at every fine scale, all exemplar patches
TOLERANCE = 0.1
TILES = 4


def tiled_judge(exemplar: torch.Tensor):
    """``judged(image)``: judge metrics of a (3, H, W) image averaged over ``TILES`` squares of
    half the (3, h, w) exemplar's short side, centred on the quarters of its diagonal band
    (the real-crop references are computed once, here)."""
    side = min(exemplar.shape[-2:]) // 2
    rate = J.relative_judge(exemplar, (side, side))

    def judged(image: torch.Tensor) -> dict[str, float]:
        h, w = image.shape[-2:]
        rows = []
        for k in range(TILES):
            y = min(max(0, round((k + 0.5) * h / TILES) - side // 2), h - side)
            x = min(max(0, round((k + 0.5) * w / TILES) - side // 2), w - side)
            rows.append(rate(image[:, y : y + side, x : x + side]))
        return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}

    return judged


def run_path(
    code: Path, exemplar: Path, size: str, out: Path, seed: int = 0, options: tuple = ()
) -> dict:
    """Run ``code``'s synth.py on ``exemplar`` at ``size`` (WxH or a side) with its default
    and ``seed`` (and ``options``, more of synth.py's arguments), in a child process with
    this process's threads; wall seconds include start-up."""
    cmd = [sys.executable, "synth.py", str(exemplar), "-o", str(out), "--size", size]
    cmd += ["--seed", str(seed), "--overwrite", "--no-progress", *options]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]  # its one-line error
        raise UserError(f"{code.name}: synth.py at {size} failed: {last[-300:]}")
    return {"wall_s": wall}


def worktree(rev: str, folder: Path) -> Path:
    """A detached git worktree of ``rev`` of this repository in ``folder``."""
    cmd = ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(folder), rev]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"the race's old path needs commit {rev} of this clone's history (git)")
    return folder


def race(exemplar: Path, sizes: list[str], old: str, out: Path, log=print, on_row=None):
    """Per size: the old path, then the new one, judged, in one worktree of ``old``.

    Returns:
        The rows of ``results["race"]``; ``on_row(row)`` is called as each one is done.
    """
    ref, _ = load_image(exemplar)
    judged = tiled_judge(ref)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"old": worktree(old, Path(tmp) / "old"), "new": ROOT}
        try:
            for size in sizes:
                row = {"size": size, "exemplar": exemplar.name, "old_rev": old}
                for name, code in paths.items():
                    png = out / f"race_{name}_{size}.png"
                    run = run_path(code, exemplar.resolve(), size, png.resolve())
                    run.update(judged(load_image(png)[0]))
                    row[name] = run
                    log(f"race {size} {name}: {run['wall_s']:.0f} s, score {run['score']:.2f}, "
                        f"structure {run['structure']:.2f}")  # fmt: skip
                reached = all(
                    row["new"][k] <= (1 + TOLERANCE) * row["old"][k] for k in ("score", "structure")
                )
                row["reached"] = reached
                row["ratio"] = row["new"]["wall_s"] / row["old"]["wall_s"]
                rows.append(row)
                if on_row is not None:
                    on_row(row)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(paths["old"])],
                capture_output=True,
            )
            shutil.rmtree(paths["old"], ignore_errors=True)
    return rows
