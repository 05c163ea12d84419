"""Collections: class-folder datasets, crop preparation, backbone training, batch synthesis."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, PartialState
from typer.testing import CliRunner

import synth
import train
from data import datasets as D
from data.errors import UserError
from data.images import save_image
from data.prepare import prepare
from data.procedural import make
from models.backbones import build_backbone, resolve_backbone
from models.classifier import VGGClassifier, folded_trunk, read_backbone
from models.vgg import FeatureExtractor

ROOT = Path(__file__).resolve().parents[1]
SYNTH_FAST = [
    "--objective", "features", "--backbone", "random-tiny", "--iterations", "3", "--octaves", "1",
    "--no-progress",
]  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_accelerator():
    """Each CLI run in this process builds its own Accelerator, as separate processes would."""
    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    PartialState._reset_state()


def noise(size: int, seed: int) -> torch.Tensor:
    """Grey-ish smooth noise: a third class, unlike both stripes and dots."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(small[None], size=(size, size), mode="bilinear")[0]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """DATASET/{dots,noise,stripes}/*.png: 12 procedural 48 px images per class, plus one
    corrupt file in dots."""
    root = tmp_path_factory.mktemp("collection")
    makers = {
        "dots": lambda s: make("dots", 48, s),
        "noise": lambda s: noise(48, s),
        "stripes": lambda s: make("stripes", 48, s),
    }
    for name, maker in makers.items():
        (root / name).mkdir()
        for seed in range(12):
            save_image(maker(seed), root / name / f"{seed:02d}.png")
    (root / "dots" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def cli(app, args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_scan_split_and_corrupt_files_are_skipped(collection):
    classes, items = D.scan_classes(collection)
    assert classes == ["dots", "noise", "stripes"]
    train_items, val_items = D.split(items, 0.25, seed=1)
    assert set(train_items).isdisjoint(val_items) and len(train_items) + len(val_items) == 37
    assert D.split(items, 0.25, seed=1) == (train_items, val_items)  # deterministic
    assert all(any(y == c for _, y in val_items) for c in range(3))
    notes = []
    loaded = D.load_items(items, 32, notes.append)
    assert len(loaded) == 36 and any("broken.png" in n for n in notes)
    x, y = D.CropDataset(loaded, 32, train=True)[0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and y == 0


def test_split_holds_out_whole_photos_when_a_class_has_several():
    items = [(Path(f"c/{photo}_{i:04d}.png"), 0) for photo in "abcd" for i in range(5)]
    items += [(Path(f"d/only_{i:04d}.png"), 1) for i in range(4)]
    train_items, val_items = D.split(items, 0.25, seed=0)
    held = {D.source_photo(p) for p, y in val_items if y == 0}
    assert len(held) == 1 and held.isdisjoint(D.source_photo(p) for p, y in train_items if y == 0)
    assert sum(y == 1 for _, y in val_items) == 1  # one photo: its crops are split


def test_scan_needs_two_classes(tmp_path):
    (tmp_path / "only").mkdir()
    save_image(make("dots", 32), tmp_path / "only" / "a.png")
    with pytest.raises(UserError, match="at least 2"):
        D.scan_classes(tmp_path)


def test_prepare_cuts_crops_per_class_and_resumes(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    save_image(make("cells", 100), src / "bark.png")
    save_image(make("stripes", 64), src / "knit.png")
    (src / "bad.jpg").write_bytes(b"nope")
    counts = prepare(src, tmp_path / "ds", 32, 32, None, 0, 0)
    assert counts == {"bark": 9, "knit": 4}
    assert "skipped" in capsys.readouterr().out
    assert prepare(src, tmp_path / "ds", 32, 32, None, 3, 0) == counts  # existing crops kept


def test_folded_trunk_equals_classifier_features():
    model = VGGClassifier("vgg19-tiny", 3, (2.0, 2.0, 2.0), (-1.0, -1.0, -1.0))
    model.train()
    for _ in range(3):  # non-trivial BatchNorm running statistics
        model(torch.rand(4, 3, 32, 32))
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    state = folded_trunk(model)
    fx = FeatureExtractor(
        "t", "vgg19-tiny", ["conv3_2"], pooling="max", padding="zeros",
        scale=(2.0, 2.0, 2.0), shift=(-1.0, -1.0, -1.0), description="t",
    )  # fmt: skip
    ids = sorted(int(k.split(".")[1]) for k in state if k.endswith("weight"))
    fx.load_convs_([(state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in ids], "t")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = model.features[:20](torch.addcmul(model.shift, x, model.scale))  # ReLU of conv3_2
        got = fx(x)["conv3_2"]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_backbone_trains_above_chance_resumes_and_drives_synthesis(collection, tmp_path):
    out = tmp_path / "bb"
    args = [
        "--task", "backbone", collection, "--output-dir", out, "--arch", "vgg19-tiny",
        "--steps", "40", "--batch-size", "16", "--image-size", "32", "--lr", "3e-3",
        "--warmup-steps", "5", "--checkpoint-every", "20", "--val-fraction", "0.25",
        "--no-progress",
    ]  # fmt: skip
    result = cli(train.app, args)
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output and "held-out accuracy" in result.output
    arch, params, info = read_backbone(out / "final")
    assert arch == "vgg19-tiny" and len(params) == 16
    assert info["classes"] == ["dots", "noise", "stripes"]
    assert info["accuracy"]["overall"] > 0.6  # chance is 1/3
    assert set(info["accuracy"]["per_class"]) == set(info["classes"])
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint-20",
        "checkpoint-40",
        "final",
        "logs",
    ]
    assert list((out / "logs").rglob("events.out.tfevents.*"))

    # A rerun without --resume is refused; with it, training continues from checkpoint-40.
    assert cli(train.app, args).exit_code == 2
    AcceleratorState._reset_state(True)
    result = cli(train.app, [*args[:-1], "--steps", "50", "--resume", "latest", "--no-progress"])
    assert result.exit_code == 0 and "resumed from" in result.output, result.output
    assert json.loads((out / "final" / "config.json").read_text())["step"] == 50

    # The file is a backbone for both the registry and synth.py, normalisation included.
    name, _ = resolve_backbone(str(out / "final"))
    fx = build_backbone(name, ["pool1", "conv3_2"])
    assert tuple(fx.scale.flatten().tolist()) == pytest.approx(info["scale"])
    assert "held-out accuracy" in fx.description
    exemplar = collection / "stripes" / "00.png"
    png = tmp_path / "synth.png"
    result = cli(
        synth.app,
        [exemplar, "-o", png, "--objective", "features",
         "--backbone", out / "final" / "backbone.safetensors",
         "--iterations", "5", "--octaves", "1", "--padding", "zeros", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sidecar = json.loads(png.with_suffix(".json").read_text())
    assert sidecar["backbone"]["weights_sha256"]

    # Fine-tuning from a known backbone keeps its normalisation.
    AcceleratorState._reset_state(True)
    tuned = tmp_path / "tuned"
    result = cli(
        train.app,
        ["--task", "backbone", collection, "--output-dir", tuned, "--init", "random-tiny",
         "--steps", "2", "--batch-size", "4", "--image-size", "32", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fine-tuning from random-tiny" in result.output
    assert read_backbone(tuned)[2]["scale"] == pytest.approx(
        tuple(build_backbone("random-tiny", ["conv1_1"]).scale.flatten().tolist())
    )


def test_backbone_errors_are_one_line(tmp_path, collection):
    result = cli(train.app, ["--task", "backbone", tmp_path / "missing", "--output-dir", tmp_path])
    assert result.exit_code == 2 and "one folder" in result.output
    result = cli(
        synth.app,
        [
            collection / "dots" / "00.png",
            "--backbone",
            tmp_path / "x.safetensors",
            "-o",
            tmp_path / "o.png",
        ],
    )
    assert result.exit_code == 2 and "backbone file not found" in result.output
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    result = cli(
        synth.app, [collection / "dots" / "00.png", "--backbone", bad, "-o", tmp_path / "o.png"]
    )
    assert result.exit_code == 2 and "corrupt" in result.output


@pytest.mark.slow
def test_batch_one_output_per_item_resume_and_bad_file(tmp_path, collection):
    src = tmp_path / "in"
    src.mkdir()
    for name in ["a", "b", "c"]:
        shutil.copy(collection / "stripes" / "00.png", src / f"{name}.png")
    (src / "bad.png").write_bytes(b"not an image")
    shutil.copytree(collection / "dots", src / "dotclass")  # a class folder with a broken file
    out = tmp_path / "out"

    result = cli(synth.app, [src, "-o", out, *SYNTH_FAST])
    assert result.exit_code == 2, result.output  # one item failed ...
    assert "error: bad:" in result.output and "1 item(s) failed: bad" in result.output
    names = ["a", "b", "c", "dotclass"]  # ... and every other one is written
    assert sorted(p.stem for p in out.glob("*.png")) == sorted([*names, "contact_sheet"])
    assert all((out / f"{n}.json").is_file() for n in names)
    assert len(json.loads((out / "dotclass.json").read_text())["exemplars"]) == 12

    # A rerun skips finished items; an item whose output was removed is redone.
    (src / "bad.png").unlink()
    stamp = (out / "a.png").stat().st_mtime_ns
    (out / "b.png").unlink()
    PartialState._reset_state()
    result = cli(synth.app, [src, "-o", out, *SYNTH_FAST])
    assert result.exit_code == 0, result.output
    assert "4 items, 3 already done" in result.output and "items: b" in result.output
    assert (out / "a.png").stat().st_mtime_ns == stamp and (out / "b.png").is_file()


def test_batch_needs_an_output_folder(tmp_path, collection):
    result = cli(synth.app, [collection, "-o", tmp_path / "x.png", *SYNTH_FAST])
    assert result.exit_code == 2 and "give -o OUTDIR" in result.output


@pytest.mark.slow
def test_two_processes_split_the_list_without_duplicates(tmp_path, collection):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        shutil.copy(collection / "noise" / f"{i:02d}.png", src / f"n{i}.png")
    out = tmp_path / "out"
    accelerate = Path(sys.executable).with_name("accelerate")
    # --multi_gpu is accelerate's torchrun launcher; on a machine without CUDA the processes
    # join a gloo group (accelerate's --cpu alone starts one process unless MPI is set up).
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
        ROOT / "synth.py", src, "-o", out, *SYNTH_FAST, "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=env, cwd=ROOT, timeout=240
    )
    assert run.returncode == 0, run.stdout + run.stderr
    wrote = re.findall(r"\[process (\d)/2\] \[\d+/\d+\] wrote \S*?(n\d)\.png", run.stdout)
    assert sorted(name for _, name in wrote) == [f"n{i}" for i in range(5)], run.stdout
    assert {rank for rank, _ in wrote} == {"1", "2"}  # each item once, both processes busy
    assert (out / "contact_sheet.png").is_file()


@pytest.mark.slow
def test_generate_mode_batch_writes_one_output_per_checkpoint(tmp_path, collection):
    runs = tmp_path / "runs"
    result = cli(
        train.app,
        [collection / "dots" / "00.png", "--output-dir", runs / "dots", "--backbone",
         "random-tiny", "--generator", "tiny", "--image-size", "32", "--crop", "0",
         "--octaves", "1", "--padding", "zeros", "--steps", "2", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shutil.copytree(runs / "dots", runs / "copy")
    out = tmp_path / "out"
    args = [
        "--mode",
        "generate",
        "--checkpoint",
        runs,
        "-o",
        out,
        "--size",
        "40x40",
        "--no-progress",
    ]
    result = cli(synth.app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == [
        "contact_sheet.png",
        "copy.png",
        "dots.png",
    ]
    PartialState._reset_state()
    result = cli(synth.app, args)
    assert result.exit_code == 0 and "2 already done" in result.output
