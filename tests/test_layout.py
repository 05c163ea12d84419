"""The layout painter (train.py --layout): blocks, tiling, checkpoints, training, the CLI."""

import json

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from PIL import Image
from typer.testing import CliRunner

import synth
import train
from generator.checkpoints import load_generator, save_generator
from generator.layout import (
    LayoutTraining,
    build_painter,
    layout_bands,
    paint_region,
    quilted_layout,
)
from models.layout import LayoutPainter

FAST = ["--image-size", "32", "--batch-size", "2", "--lr", "0.01", "--warmup-steps", "2",
        "--log-every", "1", "--sample-every", "10", "--no-progress"]  # fmt: skip


def discs(size=96, seed=0) -> torch.Tensor:
    """(3, size, size) red discs of radius 6-9 on white, placed at random."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    img = np.ones((3, size, size), np.float32)
    for _ in range(size * size // 400):
        cy, cx, r = g.uniform(0, size), g.uniform(0, size), g.uniform(6, 9)
        inside = np.hypot(y - cy, x - cx) < r
        img[1:, inside] = 0.2
    return torch.from_numpy(img)


def painter(factor=4, seed=0) -> LayoutPainter:
    """A painter of ``discs`` with random (untrained) weights that draw detail."""
    torch.manual_seed(seed)
    model = build_painter(discs(), factor, 8)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.2)
    return model.eval()


@pytest.mark.parametrize("seamless", [False, True])
def test_blocks_equal_the_whole_canvas(seamless):
    model = painter()
    whole = torch.cat(list(layout_bands(model, (72, 88), 3, seamless, 1024)), 1)
    blocks = torch.cat(list(layout_bands(model, (72, 88), 3, seamless, 16)), 1)
    assert whole.shape == (3, 72, 88)
    assert torch.allclose(whole, blocks, atol=1e-6)


def test_a_seamless_texture_repeats_across_its_edges():
    model = painter()  # factor 4: a 64x80 output, a 16x20 layout
    out = torch.cat(list(layout_bands(model, (64, 80), 5, True, 1024)), 1)
    layout = quilted_layout(model, (16, 20), 5, True)
    # the region half a canvas down and across, painted past the canvas's edges
    shifted = paint_region(model, layout, (8, 24, 10, 30), 5, True)[0]
    assert torch.allclose(shifted, out.roll((-32, -40), (1, 2)), atol=1e-6)


def test_the_texture_is_the_painted_quilt_of_the_exemplar():
    """Untrained (its output layer zero), a painter draws the enlarged quilt: the exemplar's
    own 1/f blocks, so its discs, not noise; the seed picks the blocks."""
    model = build_painter(discs(), 4, 8).eval()
    a = torch.cat(list(layout_bands(model, (96, 96), 0, False, 1024)), 1)
    b = torch.cat(list(layout_bands(model, (96, 96), 1, False, 1024)), 1)
    assert not torch.equal(a, b)
    red = (a[1] < 0.6).float().mean()
    assert 0.2 < float(red) / float((discs()[1] < 0.6).float().mean()) < 5


def test_checkpoint_round_trip_carries_the_source(tmp_path):
    model = painter()
    save_generator(model, tmp_path / "final", {"layout": 4}, {"step": 1})
    loaded, meta = load_generator(tmp_path / "final")
    assert isinstance(loaded, LayoutPainter) and meta["arch"]["kind"] == "layout"
    assert torch.equal(loaded.source, model.source)
    size = (40, 48)
    expect = torch.cat(list(layout_bands(model, size, 2, False, 1024)), 1)
    assert torch.equal(torch.cat(list(layout_bands(loaded, size, 2, False, 1024)), 1), expect)


def test_training_lowers_the_painting_error():
    from types import SimpleNamespace

    torch.manual_seed(0)
    model = build_painter(discs(), 4, 8)
    cfg = SimpleNamespace(image_size=32, seed=0, batch_size=4)
    steps = LayoutTraining(model, discs(), cfg, "cpu")
    start = steps(0)[1]
    opt = torch.optim.Adam(model.parameters(), 0.01)
    batches = steps.batches(0, 0)
    for _ in range(60):
        loss, _ = steps.loss(model, next(batches))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert steps(60)[1] < 0.8 * start


@pytest.fixture
def fresh_accelerator():
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture
def exemplar(tmp_path):
    path = tmp_path / "discs.png"
    Image.fromarray((discs().permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return path


def run(app, args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_train_and_generate_from_the_command_line(exemplar, tmp_path, fresh_accelerator):
    out = tmp_path / "run"
    args = [exemplar, "--output-dir", out, "--layout", "4", "--steps", "4", *FAST]
    trained = run(train.app, args)
    assert trained.exit_code == 0, trained.output
    assert "painted from their 1/4 copies" in trained.output
    outputs = []
    for name, seed in (("a.png", 0), ("b.png", 0), ("c.png", 1)):
        args = ["--mode", "generate", "--checkpoint", out / "final", "--size", "100x60"]
        result = run(synth.app, [*args, "--seed", seed, "-o", tmp_path / name, "--no-progress"])
        assert result.exit_code == 0, result.output
        outputs.append(np.asarray(Image.open(tmp_path / name)))
    assert outputs[0].shape == (60, 100, 3)
    assert np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[0], outputs[2])
    sidecar = json.loads((tmp_path / "a.json").read_text())
    assert sidecar["generator"]["kind"] == "layout" and sidecar["config"]["layout"] == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layout", "3"], "--layout must be 0"),
        (["--layout", "4", "--image-size", "30"], "multiple of --layout"),
        (["--layout", "8", "--image-size", "96"], "under 16 px a side"),
        (["--layout", "4", "--objective", "patches"], "--layout learns to paint"),
        (["--layout", "0", "--even-light", "on"], "only a painter (--layout)"),
        (["--config", "painter", "--octaves", "3"], "octaves: a painter (--layout 2)"),
    ],
)
def test_bad_layout_options_are_one_line(exemplar, tmp_path, fresh_accelerator, extra, message):
    args = [exemplar, "--output-dir", tmp_path / "run", *FAST, "--steps", "2", *extra]
    result = run(train.app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("error: ")
    assert "Traceback" not in result.output and not (tmp_path / "run" / "final").exists()


@pytest.mark.slow
def test_an_exemplar_smaller_than_the_crops_trains_on_its_own_side(
    exemplar, tmp_path, fresh_accelerator
):
    args = [exemplar, "--output-dir", tmp_path / "run", *FAST, "--steps", "2", "--layout", "2"]
    result = run(train.app, [*args, "--image-size", "128"])
    assert result.exit_code == 0, result.output
    assert "note: training crops of 96 px" in result.output


def test_two_exemplars_are_refused(exemplar, tmp_path, fresh_accelerator):
    args = [exemplar, exemplar, "--output-dir", tmp_path / "run", "--layout", "4", *FAST]
    result = run(train.app, args)
    assert result.exit_code == 2 and "give one exemplar" in result.output


@pytest.mark.slow
def test_a_painter_evens_an_uneven_light_unless_told_not_to(tmp_path, fresh_accelerator):
    lamp = torch.linspace(0.3, 1.0, 96).view(1, 1, 96)  # a falloff across the photo
    path = tmp_path / "lit.png"
    lit = (discs() * lamp).permute(1, 2, 0).numpy()
    Image.fromarray((lit * 255).round().astype(np.uint8)).save(path)
    for light, evened in (("auto", True), ("off", False)):
        args = [path, "--output-dir", tmp_path / light, *FAST, "--steps", "2", "--layout", "2"]
        result = run(train.app, [*args, "--even-light", light])
        assert result.exit_code == 0, result.output
        assert ("light: evened out" in result.output) == evened


@pytest.mark.slow
def test_a_resumed_painter_equals_an_uninterrupted_one(exemplar, tmp_path, fresh_accelerator):
    import shutil

    import safetensors.torch

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    args = [exemplar, *FAST, "--layout", "4", "--steps", "6", "--checkpoint-every", "3"]
    assert run(train.app, [*args, "--output-dir", full, "--keep-checkpoints", "0"]).exit_code == 0
    AcceleratorState._reset_state(True)
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    result = run(train.app, [*args, "--output-dir", resumed, "--resume", "latest"])
    assert result.exit_code == 0 and "resumed from" in result.output, result.output
    a, b = (
        safetensors.torch.load_file(str(d / "final" / "model.safetensors")) for d in (full, resumed)
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("preset", [[], ["--config", "painter"]])
def test_one_exemplar_trains_the_painter_preset(exemplar, tmp_path, fresh_accelerator, preset):
    """train.py's default for one exemplar is the painter preset, as --config painter."""
    args = [exemplar, "--output-dir", tmp_path / "run", *preset, "--steps", "2"]
    result = run(train.app, [*args, "--image-size", "32", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "painted from their 1/2 copies" in result.output
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["config"]
    assert saved["layout"] == 2 and saved["lr"] == 5e-3
