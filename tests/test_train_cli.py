"""train.py and synth.py --mode generate end to end, with tiny settings (a few seconds each)."""

import json
import math
import shutil

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from accelerate.state import AcceleratorState
from PIL import Image
from typer.testing import CliRunner

import synth
import train

pytestmark = pytest.mark.slow

TINY = [
    "--backbone", "random-tiny", "--generator", "tiny", "--image-size", "48", "--crop", "24",
    "--octaves", "2", "--padding", "zeros", "--batch-size", "2", "--lr", "0.01",
    "--warmup-steps", "2", "--log-every", "1", "--sample-every", "5", "--no-progress",
]  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_accelerator():
    """Each CLI run in this process builds its own Accelerator, as separate processes would."""
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def exemplar(tmp_path_factory):
    """A 48 px coloured stripes-and-dots texture."""
    y, x = np.mgrid[0:48, 0:48]
    img = np.stack(
        [
            0.5 + 0.4 * np.sin(x / 2.0),
            0.5 + 0.3 * np.sin((x + y) / 3.0),
            0.5 + 0.4 * (np.hypot(x % 8 - 4, y % 8 - 4) < 2),
        ],
        -1,
    )
    path = tmp_path_factory.mktemp("ex") / "stripes.png"
    Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(path)
    return path


def run(app, args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def train_run(exemplar, out, *extra):
    result = run(train.app, [exemplar, "--output-dir", out, *TINY, *extra])
    assert result.exit_code == 0, result.output
    return result


def weights(path):
    return safetensors.torch.load_file(str(path))


def test_training_writes_checkpoints_logs_and_lowers_the_loss(exemplar, tmp_path):
    out = tmp_path / "run"
    train_run(exemplar, out, "--steps", "30", "--checkpoint-every", "10", "--keep-checkpoints", "2")
    assert sorted(p.name for p in out.iterdir()) == [
        "best",
        "checkpoint-20",
        "checkpoint-30",
        "final",
        "logs",
    ]
    for d in ["checkpoint-30", "final", "best"]:
        with safetensors.safe_open(str(out / d / "model.safetensors"), "pt") as f:
            meta = f.metadata()
        assert json.loads(meta["config"])["steps"] == 30
        assert json.loads((out / d / "config.json").read_text())["config"]["generator"] == "tiny"
    assert (out / "checkpoint-30" / "state" / "optimizer.bin").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "logs" / "train"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/gram", "loss/gram/octave1", "lr", "steps_per_second"} <= tags
    assert "samples" in events.Tags()["images"]
    eval_loss = [e.value for e in events.Scalars("eval/loss")]
    assert eval_loss[-1] < eval_loss[0]
    total = [e.value for e in events.Scalars("loss/total")]
    assert np.mean(total[-5:]) < 0.8 * np.mean(total[:5])


def test_resumed_run_equals_uninterrupted(exemplar, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train_run(exemplar, full, "--steps", "6", "--checkpoint-every", "3", "--keep-checkpoints", "0")
    # What a run killed during step 5 leaves behind: checkpoint-3 and a half-written checkpoint.
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    (resumed / "checkpoint-6.tmp" / "state").mkdir(parents=True)
    result = train_run(
        exemplar, resumed, "--steps", "6", "--checkpoint-every", "3", "--resume", "latest"
    )
    assert "resumed from" in result.output and "step 3" in result.output
    assert not (resumed / "checkpoint-6.tmp").exists()
    a, b = (
        weights(full / "final" / "model.safetensors"),
        weights(resumed / "final" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_says_how_many_processes_run(exemplar, tmp_path, monkeypatch):
    plain = train_run(exemplar, tmp_path / "plain", "--steps", "1")
    assert "training on 1 process (cpu)" in plain.output and "--multi_gpu" not in plain.output
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # what `accelerate launch --cpu` sets
    launched = train_run(exemplar, tmp_path / "launched", "--steps", "1")
    assert "--multi_gpu --num_processes N" in launched.output


def test_auto_mixed_precision_is_resolved_and_recorded(exemplar, tmp_path, monkeypatch):
    from models import devices

    cpuinfo = tmp_path / "cpuinfo"
    for flags, expected in (("avx2", "no"), ("avx2 avx512_bf16", "bf16")):
        cpuinfo.write_text(f"flags\t\t: {flags}\n")
        monkeypatch.setattr(devices, "CPUINFO", cpuinfo)
        AcceleratorState._reset_state(True)  # one Accelerator a process, as from the shell
        out = tmp_path / expected
        result = train_run(exemplar, out, "--steps", "2", "--mixed-precision", "auto")
        assert ("mixed precision bf16" in result.output) == (expected == "bf16")
        for d in ("checkpoint-2", "final"):
            saved = json.loads((out / d / "config.json").read_text())["config"]
            assert saved["mixed_precision"] == expected
    # The bf16 run resumes under auto on the same device; a resume in fp32 is refused.
    AcceleratorState._reset_state(True)
    again = run(train.app, [exemplar, "--output-dir", tmp_path / "bf16", *TINY, "--steps", "3",
                            "--mixed-precision", "auto", "--resume", "latest"])  # fmt: skip
    assert again.exit_code == 0, again.output
    AcceleratorState._reset_state(True)
    fp32 = run(train.app, [exemplar, "--output-dir", tmp_path / "bf16", *TINY, "--steps", "4",
                           "--mixed-precision", "no", "--resume", "latest"])  # fmt: skip
    assert fp32.exit_code == 2 and "mixed_precision: 'bf16' -> 'no'" in fp32.output
    bad = run(train.app, [exemplar, "--output-dir", tmp_path / "x", "--mixed-precision", "fp16"])
    assert bad.exit_code == 2 and "Invalid value for '--mixed-precision'" in bad.output


def test_refusals_are_one_line_exit_2(exemplar, tmp_path):
    out = tmp_path / "run"
    train_run(exemplar, out, "--steps", "2", "--checkpoint-every", "2")
    again = run(train.app, [exemplar, "--output-dir", out, *TINY, "--steps", "2"])
    assert again.exit_code == 2 and "--resume latest" in again.output
    changed = run(
        train.app,
        [
            exemplar,
            "--output-dir",
            out,
            *TINY,
            "--steps",
            "4",
            "--octaves",
            "1",
            "--resume",
            "latest",
        ],
    )
    assert changed.exit_code == 2 and "octaves" in changed.output
    bad = run(train.app, [exemplar, "--output-dir", tmp_path / "x", *TINY, "--image-size", "50"])
    assert bad.exit_code == 2 and "multiple of 4" in bad.output
    (tmp_path / "kept").mkdir()
    (tmp_path / "notes.png").write_text("not an image")
    for folder in [tmp_path / "new" / "run", tmp_path / "kept"]:
        unreadable = run(train.app, [tmp_path / "notes.png", "--output-dir", folder, *TINY])
        assert unreadable.exit_code == 2 and "not an image" in unreadable.output
    # the folders a refused run made are gone; one that was there before stays
    assert not (tmp_path / "new").exists() and (tmp_path / "kept").is_dir()


@pytest.fixture(scope="module")
def checkpoint(exemplar, tmp_path_factory):
    AcceleratorState._reset_state(True)
    out = tmp_path_factory.mktemp("trained")
    train_run(exemplar, out, "--steps", "4", "--checkpoint-every", "4")
    return out / "final"


def test_generate_cli_writes_png_and_sidecar(checkpoint, tmp_path):
    out = tmp_path / "tex.png"
    args = [
        "--mode",
        "generate",
        "--checkpoint",
        checkpoint,
        "--size",
        "70x52",
        "--seed",
        "3",
        "-o",
        out,
    ]
    result = run(synth.app, [*args, "--variations", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    for name in ["tex_000", "tex_001"]:
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.size == (70, 52) and im.mode == "RGB"
        sidecar = json.loads((tmp_path / f"{name}.json").read_text())
        assert sidecar["mode"] == "generate" and sidecar["config"]["generator"] == "tiny"
        assert sidecar["size"] == {"height": 52, "width": 70} and "versions" in sidecar
    assert json.loads((tmp_path / "tex_001.json").read_text())["seed"] == 4
    refused = run(synth.app, [*args, "--variations", "2", "--no-progress"])
    assert refused.exit_code == 2 and "--overwrite" in refused.output


def test_generate_cli_seamless_tiles(checkpoint, tmp_path):
    out = tmp_path / "tile.png"
    result = run(
        synth.app,
        [
            "--mode",
            "generate",
            "--checkpoint",
            checkpoint,
            "--size",
            "64x48",
            "--tile",
            "-o",
            out,
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    img = np.asarray(Image.open(out)).astype(float)
    inside = np.abs(np.diff(img, axis=1)).mean()
    across = np.abs(img[:, 0] - img[:, -1]).mean()
    assert across < 2 * inside + 1


def test_generate_with_an_exemplar_refines_the_sample_towards_it(checkpoint, exemplar, tmp_path):
    base = ["--mode", "generate", "--checkpoint", checkpoint, "--size", "64x48", "--no-progress"]
    drawn, refined = tmp_path / "drawn.png", tmp_path / "refined.png"
    assert run(synth.app, [*base, "-o", drawn]).exit_code == 0
    result = run(synth.app, [exemplar, *base, "--refine-steps", "6", "-o", refined])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(refined.with_suffix(".json").read_text())
    assert sidecar["mode"] == "generate" and sidecar["refine_steps"] == 6
    # entered mid-pyramid by default: 6 steps at each scale from the first >= 0.25 to full size
    scales = sidecar["refine_scales"]
    assert len(scales) >= 2 and scales[0] >= 0.25 and scales[-1] == 1 and scales == sorted(scales)
    assert sidecar["iterations"] == 6 * len(scales) and sidecar["exemplars"] == [str(exemplar)]
    assert sidecar["checkpoint"].endswith("model.safetensors") and sidecar["checkpoint_sha256"]

    def colour_gap(path):  # distance between sorted pixel values, per channel
        a = np.asarray(Image.open(path).convert("RGB"), dtype=float).reshape(-1, 3)
        b = np.asarray(Image.open(exemplar).convert("RGB"), dtype=float).reshape(-1, 3)
        q = np.linspace(0, 1, 101)
        return np.abs(np.quantile(a, q, axis=0) - np.quantile(b, q, axis=0)).mean()

    with Image.open(refined) as im:
        assert im.size == (64, 48)
    assert colour_gap(refined) < 0.5 * colour_gap(drawn)

    full = tmp_path / "full.png"
    args = [exemplar, *base, "--refine-steps", "6", "--refine-scale", "1", "-o", full]
    assert run(synth.app, args).exit_code == 0
    sidecar = json.loads(full.with_suffix(".json").read_text())
    assert sidecar["refine_scales"] == [1] and sidecar["iterations"] == 6


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode", "generate", "--refine-steps", "4"], "give the exemplar"),
        (["EX", "--mode", "generate", "--refine-steps", "-1"], "--refine-steps must be"),
        (["EX", "--refine-steps", "4"], "only --mode generate"),
        (["EX", "--refine-scale", "0.5"], "only --mode generate"),
        (["--mode", "generate", "--refine-scale", "0.5"], "give the exemplar"),
        (["EX", "--mode", "generate", "--refine-scale", "0"], "--refine-scale must be"),
        (["EX", "--mode", "generate", "--refine-scale", "1.5"], "--refine-scale must be"),
    ],
)
def test_refine_refusals_are_one_line_exit_2(checkpoint, exemplar, tmp_path, args, message):
    args = [exemplar if a == "EX" else a for a in args]
    out = tmp_path / "o.png"
    result = run(synth.app, [*args, "--checkpoint", checkpoint, "-o", out, "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()


@pytest.mark.parametrize("damage", ["missing", "truncated", "mismatched"])
def test_bad_checkpoint_is_one_line_exit_2(checkpoint, tmp_path, damage):
    path = tmp_path / "model.safetensors"
    source = (checkpoint / "model.safetensors").read_bytes()
    if damage == "truncated":
        path.write_bytes(source[: len(source) // 2])
    elif damage == "mismatched":
        state = weights(checkpoint / "model.safetensors")
        with safetensors.safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
            meta = f.metadata()
        meta["arch"] = json.dumps({**json.loads(meta["arch"]), "channels": [8, 8, 8]})
        safetensors.torch.save_file(state, str(path), meta)
    result = run(
        synth.app,
        ["--mode", "generate", "--checkpoint", path, "-o", tmp_path / "o.png", "--no-progress"],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not (tmp_path / "o.png").exists()


def test_loss_of_generated_size_never_seen(checkpoint):
    from generator.render import generate, load_generator, prepare

    model, _ = load_generator(checkpoint)
    img = generate(prepare(model), (100, 36), seed=0)
    assert img.shape == (3, 100, 36) and math.isfinite(float(img.sum()))
    assert 0 <= float(img.min()) and float(img.max()) <= 1


def test_generate_in_bf16_is_close_to_fp32_and_says_so(checkpoint, tmp_path):
    args = ["--mode", "generate", "--checkpoint", checkpoint, "--size", "64x48", "--no-progress"]
    images, sidecars = {}, {}
    for precision in ["fp32", "bf16"]:
        out = tmp_path / f"{precision}.png"
        result = run(synth.app, [*args, "-o", out, "--precision", precision])
        assert result.exit_code == 0, result.output
        images[precision] = np.asarray(Image.open(out)).astype(float)
        sidecars[precision] = json.loads(out.with_suffix(".json").read_text())
    assert [sidecars[p]["precision"] for p in images] == ["fp32", "bf16"]
    levels = np.abs(images["fp32"] - images["bf16"])
    assert 0 < levels.mean() < 2 and levels.max() < 40, (levels.mean(), levels.max())
    refused = run(synth.app, [*args, "-o", tmp_path / "o.png", "--precision", "fp16"])
    assert refused.exit_code == 2 and not (tmp_path / "o.png").exists()


def test_target_benchmark_scores_under_the_checkpoint_objective(exemplar, tmp_path):
    from experiments.target import app as target_app

    train_run(exemplar, tmp_path / "run", "--steps", "4")
    out = tmp_path / "target"
    args = [tmp_path / "run/final", exemplar, "--size", "48", "--seeds", "2"]
    args += ["--iterations", "10", "--reference", exemplar, "--out", out]
    result = run(target_app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "target.json").read_text())["rows"]
    assert rows["real: stripes.png"]["total"] < 1e-6  # the exemplar itself matches its targets
    optimize = next(v for k, v in rows.items() if k.startswith("optimize"))
    generator = next(v for k, v in rows.items() if k.startswith("generator"))
    assert optimize["vs_optimize"] == 1.0
    assert len(generator["octaves"]) == 2  # the checkpoint's octaves, not the preset's 4
    assert generator["total"] > 0 and (out / "sheet.png").is_file()

    for bad in (
        [tmp_path / "nothing", exemplar],
        [tmp_path / "run/final", exemplar, "--seeds", "0"],
    ):
        refused = run(target_app, [*bad, "--out", out])
        assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1


def test_the_default_preset_follows_what_train_is_given(tmp_path):
    """One exemplar and no generator option: the painter preset. Several exemplars, --layout 0,
    an option only a generator of noise reads, or a resumed run that trained one: the
    generator preset, said in one line where the user did not ask by name."""
    from configs import train_config
    from data.errors import UserError
    from training.runs import saved_config

    lines = []
    painter = train_config(None, {})
    assert painter.layout == 2 and painter.lr == 5e-3 and painter.steps == 1000
    assert train_config(None, {"layout": 4}).layout == 4
    cases = [({"octaves": 3}, 1, None), ({}, 2, None), ({"layout": 0}, 1, None), ({}, 1, {})]
    for values, exemplars, resumed in cases:
        cfg = train_config(None, values, exemplars, resumed, log=lines.append)
        assert cfg.layout == 0 and cfg.generator == "base" and cfg.output == "clamp"
    assert lines == [
        "--octaves: training a generator of noise (generator preset)",
        "several exemplars: training a generator of noise (generator preset)",
    ]
    assert train_config(None, {}, resumed={"layout": 2}).layout == 2
    with pytest.raises(UserError, match="octaves: a painter"):
        train_config("painter", {"octaves": 3})
    with pytest.raises(UserError, match="crop, generator, layers.*--layout 0 for a generator"):
        train_config("generator", {"layout": 2})

    # the saved config a resume reads: none without a checkpoint or with a damaged one
    run = tmp_path / "run"
    assert saved_config(run, "latest") is None and saved_config(run, None) is None
    (run / "checkpoint-5" / "state").mkdir(parents=True)
    (run / "checkpoint-5" / "config.json").write_text('{"config": {"layout": 0}}')
    assert saved_config(run, "latest") == {"layout": 0}
    (run / "checkpoint-5" / "config.json").write_text("{not json")
    assert saved_config(run, "latest") is None


def test_the_generator_preset_trains_on_its_own_octaves():
    """The generator preset's octaves fit its own training images (the dataclass defaults
    alone, 5 valid octaves, do not)."""
    from configs import DEFAULT_PRESET, TrainConfig, build_config, default_values
    from losses.objective import min_image_size
    from models.backbones import build_backbone

    assert DEFAULT_PRESET["TrainConfig"] == "generator"
    cfg = build_config(TrainConfig, default_values(TrainConfig, None), {})
    backbone = build_backbone("random-tiny", cfg.layers, padding=cfg.padding)
    assert min_image_size(backbone, cfg.octaves) <= cfg.image_size
    assert cfg.mixed_precision == "auto"  # bf16 where native: 1.7x faster on a bf16 CPU
    bare = TrainConfig()
    assert min_image_size(backbone, bare.octaves) > bare.image_size


def test_generator_trains_on_the_autocorrelation_objective(exemplar, tmp_path):
    out = tmp_path / "run"
    train_run(
        exemplar, out, "--steps", "3", "--autocorr-layers", "pool1", "--autocorr-weight", "0.5"
    )
    meta = json.loads((out / "final" / "config.json").read_text())
    assert meta["config"]["autocorr_layers"] == ["pool1"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "logs" / "train"))
    events.Reload()
    assert "loss/autocorr" in events.Tags()["scalars"]


def test_generator_trains_on_the_patch_objective_and_resumes_exactly(exemplar, tmp_path):
    patches = ["--objective", "patches", "--coarsest", "16", "--projections", "16"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    args = ["--steps", "20", "--checkpoint-every", "10", "--keep-checkpoints", "0", *patches]
    result = train_run(exemplar, full, *args)
    assert "backbone: none: pixel patches 7x7" in result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(full / "logs" / "train"))
    events.Reload()
    assert "loss/patches/scale0" in events.Tags()["scalars"]
    total = [e.value for e in events.Scalars("loss/total")]
    assert np.mean(total[-5:]) < 0.8 * np.mean(total[:5])
    # The step's directions come from its own seeded generator: resuming repeats them.
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-10", resumed / "checkpoint-10")
    train_run(exemplar, resumed, *args, "--resume", "latest")
    a = weights(full / "final" / "model.safetensors")
    b = weights(resumed / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A backbone-only term cannot be combined with it.
    bad = run(train.app, [exemplar, "--output-dir", tmp_path / "x", *TINY, *patches,
                          "--diversity-weight", "1"])  # fmt: skip
    assert bad.exit_code == 2 and "features objective" in bad.output


def test_adversarial_training_logs_its_discriminator_and_resumes_exactly(exemplar, tmp_path):
    full, resumed, plain = tmp_path / "full", tmp_path / "resumed", tmp_path / "plain"
    args = ["--steps", "6", "--checkpoint-every", "3", "--keep-checkpoints", "0"]
    train_run(exemplar, full, *args, "--adversarial-weight", "0.01")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(full / "logs" / "train"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/adversarial", "loss/discriminator", "loss/real_logit"} <= tags
    saved = json.loads((full / "final" / "config.json").read_text())["config"]
    assert saved["adversarial_weight"] == 0.01
    # The discriminator and its optimizer travel in the checkpoint: resuming repeats the run.
    assert sorted(p.name for p in (full / "checkpoint-3" / "state").glob("custom_*")) == [
        "custom_checkpoint_0.pkl",
        "custom_checkpoint_1.pkl",
    ]
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    train_run(exemplar, resumed, *args, "--adversarial-weight", "0.01", "--resume", "latest")
    a = weights(full / "final" / "model.safetensors")
    b = weights(resumed / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The term moves the generator: the same run without it ends elsewhere.
    train_run(exemplar, plain, *args)
    c = weights(plain / "final" / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # Another weight is another objective: not resumable; a negative weight is refused.
    other = run(train.app, [exemplar, "--output-dir", full, *TINY, *args,
                            "--adversarial-weight", "0.02", "--resume", "latest"])  # fmt: skip
    assert other.exit_code == 2 and "adversarial_weight: 0.01 -> 0.02" in other.output
    bad = run(train.app, [exemplar, "--output-dir", tmp_path / "x", *TINY,
                          "--adversarial-weight", "-1"])  # fmt: skip
    assert bad.exit_code == 2 and "--adversarial-weight must be" in bad.output
    assert not (tmp_path / "x").exists()
