"""End-to-end runs of ``synth.py --mode optimize`` on tiny images and a tiny backbone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import synth
from data.images import save_image

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "--objective", "features", "--backbone", "random-tiny", "--octaves", "2", "--iterations", "15",
    "--no-progress",
]  # fmt: skip


def run(args):
    """Run the CLI in-process; returns (exit code, combined output)."""
    result = CliRunner().invoke(synth.app, [str(a) for a in args])
    return result.exit_code, result.output


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255


@pytest.mark.slow
def test_end_to_end_writes_image_and_sidecar(exemplar_path, tmp_path):
    out = tmp_path / "out.png"
    code, output = run([exemplar_path, "-o", out, "--size", "96x80", *FAST])
    assert code == 0, output
    img = Image.open(out)
    assert img.size == (96, 80) and img.mode == "RGB"
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["octaves"] == 2 and meta["seed"] == 0
    assert meta["backbone"]["name"] == "random-tiny"
    assert meta["iterations"] == 15 and meta["evaluations"] >= 15
    assert {"gram", "total"} <= set(meta["losses"]) and meta["seconds"] > 0
    assert "torch" in meta["versions"]


@pytest.mark.slow
def test_optimisation_lowers_the_loss(exemplar_path, tmp_path):
    from optimize.features import TextureSynthesizer

    synth_ = TextureSynthesizer(
        exemplar_path, backbone="random-tiny", octaves=2, log=lambda m: None
    )
    start = synth_.synthesize(iterations=0)
    result = synth_.synthesize(iterations=40)
    assert result.terms["total"] < 0.2 * start.terms["total"]
    again = synth_.synthesize(init=result.image, iterations=10)  # continue optimising
    assert again.terms["total"] <= result.terms["total"]
    assert result.image.min() >= 0 and result.image.max() <= 1


def highfreq_power_fraction(x: torch.Tensor) -> float:
    """Share of the power (mean removed) above 1/4 cycle per pixel, over all channels."""
    spec = torch.fft.fft2(x - x.mean((-2, -1), keepdim=True)).abs().pow(2).sum(-3)[0]
    h, w = spec.shape
    radius = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2).sqrt()
    return float(spec[radius >= 0.25].sum() / spec.sum())


def test_start_image_is_smooth_noise_around_the_mean_colour():
    from optimize.features import initial_noise

    exemplar = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0)) * 0.5
    start = initial_noise([exemplar], (96, 80), seed=3)
    assert start.shape == (1, 3, 96, 80)
    assert torch.allclose(start.mean((2, 3)), exemplar.mean((1, 2))[None], atol=0.03)
    assert start.std() > 0.05  # still noise, not a flat colour
    # The objective barely sees pixel-level noise, so the start must hold none of it;
    # white noise (the control) puts most of its power there.
    assert highfreq_power_fraction(start) < 0.02
    assert highfreq_power_fraction(torch.randn(1, 3, 96, 80)) > 0.5
    # Periodic, so a tile-mode start has no seam: the step across the wrap is an ordinary one.
    steps = (start[..., 1:] - start[..., :-1]).abs().mean()
    assert (start[..., 0] - start[..., -1]).abs().mean() < 1.3 * steps
    assert torch.equal(start, initial_noise([exemplar], (96, 80), seed=3))
    assert not torch.equal(start, initial_noise([exemplar], (96, 80), seed=4))


@pytest.mark.slow
def test_same_seed_same_bytes_and_other_seed_differs(exemplar_path, tmp_path):
    outs = []
    for name, seed in [("a", 5), ("b", 5), ("c", 6)]:
        out = tmp_path / f"{name}.png"
        code, output = run([exemplar_path, "-o", out, "--seed", seed, *FAST])
        assert code == 0, output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


@pytest.mark.slow
def test_tile_output_wraps_without_a_seam(tmp_path):
    from data.procedural import make

    exemplar = tmp_path / "stripes.png"
    save_image(make("stripes", 64, seed=1), exemplar)
    args = [
        "--size",
        "64x64",
        "--backbone",
        "random-tiny",
        "--octaves",
        "2",
        "--iterations",
        "40",
        "--no-progress",
        "--layers",
        "conv1_1,pool1,conv2_1",
    ]
    tiled = tmp_path / "tiled.png"
    assert run([exemplar, "-o", tiled, "--tile", *args])[0] == 0

    def seam_ratio(x):
        interior = np.mean([np.abs(x[:, i + 1] - x[:, i]).mean() for i in range(x.shape[1] - 1)])
        wrap = np.abs(x[:, 0] - x[:, -1]).mean()
        interior_v = np.mean([np.abs(x[i + 1] - x[i]).mean() for i in range(x.shape[0] - 1)])
        wrap_v = np.abs(x[0] - x[-1]).mean()
        return max(wrap / interior, wrap_v / interior_v)

    # Control: the metric sees the seam of a crop that breaks the stripes' period.
    assert seam_ratio(pixels(exemplar)[:45, :45]) > 2
    assert seam_ratio(pixels(tiled)) < 1.5


@pytest.mark.slow
def test_variations_snapshots_and_overwrite(exemplar_path, tmp_path):
    out = tmp_path / "v.png"
    code, output = run([exemplar_path, "-o", out, "--variations", 2, "--save-every", 5, *FAST])
    assert code == 0, output
    assert (tmp_path / "v_000.png").exists() and (tmp_path / "v_001.png").exists()
    seeds = [json.loads((tmp_path / f"v_00{i}.json").read_text())["seed"] for i in (0, 1)]
    assert seeds == [0, 1]
    assert len(list((tmp_path / "v_000_snapshots").glob("*.png"))) == 3
    before = (tmp_path / "v_000.png").read_bytes()
    code, output = run([exemplar_path, "-o", out, "--variations", 2, *FAST])
    assert code == 2 and "--overwrite" in output
    assert (tmp_path / "v_000.png").read_bytes() == before


@pytest.mark.slow
def test_ctrl_c_saves_the_image_reached(exemplar_path, tmp_path):
    import signal
    import time

    out = tmp_path / "c.png"
    cmd = [sys.executable, str(ROOT / "synth.py"), exemplar_path, "-o", out, *FAST]
    cmd[cmd.index("15")] = "100000"  # would run for hours
    proc = subprocess.Popen(
        [str(c) for c in cmd + ["--save-every", "1"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
        # A shell that starts the test run in the background (nohup ... &) ignores SIGINT and
        # its children inherit that; a user's terminal does not. Restore the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    snapshots = tmp_path / "c_snapshots"
    deadline = time.monotonic() + 120
    while not (snapshots.is_dir() and len(list(snapshots.glob("*.png"))) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["interrupted"] and 3 <= meta["iterations"] < 100000
    assert Image.open(out).size == (64, 64)


def test_every_preset_resolves(exemplar_path):
    from configs import SynthConfig, TrainConfig, build_config, preset_names, read_config_file

    names = preset_names()
    assert {"gatys2015", "snelgrove2017", "liu2016_spectrum", "coarse_to_fine"} <= set(names)
    assert {"generator", "painter"} <= set(preset_names(TrainConfig))
    for name in names:
        if name in ("generator", "painter"):  # train.py's
            continue
        cfg = build_config(SynthConfig, read_config_file(name), {"iterations": 3})
        assert cfg.iterations == 3
    snel = build_config(SynthConfig, read_config_file("snelgrove2017"), {})
    assert snel.octaves == 5 and snel.padding == "valid"


BAD_CASES = {
    "missing exemplar": (["missing.png"], "not found"),
    "directory exemplar": (["."], "directory"),
    "text exemplar": (["notes.png"], "image"),
    "too small for octaves": (["small.png", "--octaves", "5", "--padding", "valid"], "at least"),
    "bad size": (["small.png", "--size", "12by3"], "size"),
    "absurd size": (["small.png", "--size", "100000x100000"], "size"),
    "unknown preset": (["small.png", "--config", "nope"], "preset"),
    "unknown layer": (["small.png", "--layers", "conv9_9"], "conv9_9"),
    "wrong layer weights": (
        ["small.png", "--octaves", "1", "--layer-weights", "1,2,3"],
        "layer_weights",
    ),
    "bad output suffix": (["small.png", "-o", "out.jpg"], ".png"),
    "unwritable output": (["small.png", "-o", "no/such/dir/out.png"], "no/such/dir"),
    "missing weights file": (
        ["small.png", "--backbone", "vgg19", "--weights", "nope.pth"],
        "nope.pth",
    ),
    # Values that used to run and write nonsense, or end in a traceback (issue 15, 5-6).
    "nan weight": (["small.png", "--layer-weights", "nan,1"], "finite"),
    "inf spectrum weight": (["small.png", "--spectrum-weight", "inf"], "finite"),
    "negative tv weight": (["small.png", "--tv-weight", "-1"], "negative"),
    "no history": (["small.png", "--history", "0"], "history"),
    "negative save-every": (["small.png", "--save-every", "-1"], "save-every"),
    "huge seed": (["small.png", "--seed", str(2**70)], "seed"),
    "negative seed": (["small.png", "--seed", "-1"], "seed"),
    "zero variations": (["small.png", "--variations", "0"], "variations"),
    "toml value of the wrong type": (["small.png", "--config", "bad.toml"], "octaves"),
    # Messages that named the wrong cause (issue 15, item 10).
    "config is a directory": (["small.png", "--config", "."], "is a directory"),
    "weights is a directory": (
        ["small.png", "--backbone", "vgg19", "--weights", "."],
        "is a directory",
    ),
    "empty output path": (["small.png", "-o", ""], "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    args, needle = BAD_CASES[case]
    save_image(torch.rand(3, 40, 40), tmp_path / "small.png")
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "bad.toml").write_text('octaves = "five"\n')
    cmd = [
        sys.executable,
        str(ROOT / "synth.py"),
        *args,
        "--backbone",
        "random-tiny",
        "--iterations",
        "1",
    ]
    if case in ("missing weights file", "weights is a directory"):
        cmd = cmd[:-4] + cmd[-2:]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_features_objective_defaults_to_the_autocorrelation_pyramid(exemplar_path, tmp_path):
    out = tmp_path / "out.png"
    args = ["--objective", "features", "--backbone", "random-tiny", "--iterations", "3"]
    code, output = run([exemplar_path, "-o", out, *args])
    assert code == 0, output
    cfg = json.loads(out.with_suffix(".json").read_text())["config"]
    assert cfg["layers"] == ["conv1_1", "pool1", "pool2", "pool3"]
    assert cfg["autocorr_layers"] == ["pool2", "pool3"] and cfg["autocorr_weight"] == 0.01
    assert cfg["normalisation"] == "global" and cfg["padding"] == "reflect"
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["losses"]["autocorr"] > 0 and "gram/octave0" in meta["losses"]
    # The seed presets keep their papers' objectives: no autocorrelation term.
    code, output = run([exemplar_path, "-o", out, "--config", "gatys2015", "--overwrite", *FAST])
    assert code == 0, output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["autocorr_layers"] == [] and "autocorr" not in meta["losses"]


def test_preset_octaves_are_fitted_to_a_small_output_too(tmp_path):
    from data.procedural import make

    exemplar = tmp_path / "big.png"
    save_image(make("cells", 160, seed=1), exemplar)
    out = tmp_path / "small.png"
    args = ["--config", "snelgrove2017", "--backbone", "random-tiny", "--size", "48x48"]
    code, output = run([exemplar, "-o", out, *args, "--iterations", "2", "--no-progress"])
    assert code == 0, output
    assert "using" in output and "for 48 px" in output
    assert json.loads(out.with_suffix(".json").read_text())["config"]["octaves"] < 5


def test_a_second_ctrl_c_cannot_cut_short_the_save():
    import os
    import signal

    from cli.console import first_interrupt_only

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under `nohup ... &`, not the default
    saved = False
    with first_interrupt_only():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            raise AssertionError("the first Ctrl-C must interrupt")
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGINT)  # a second press while saving: ignored
            saved = True
    assert saved
    assert signal.getsignal(signal.SIGINT) is before
