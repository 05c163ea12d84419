"""The generator as a local operator: noise, folding, tiled inference, seamless output, files."""

import pytest
import safetensors.torch
import torch

from data.errors import UserError
from generator.checkpoints import load_generator, save_generator
from generator.render import generate, prepare, render_region
from losses.texture import random_crops
from models.generator import build_generator, fold_batchnorm
from models.noise import hash_noise, noise_pyramid


def trained_looking(seed=0, output="sigmoid"):
    """A 'tiny' generator whose BatchNorms hold non-trivial statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_generator("tiny", output)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def whole_image(model, size, seed):
    with torch.no_grad():
        return model(noise_pyramid([seed], size, model.scales, model.noise_channels))[0]


def test_noise_depends_only_on_coordinates():
    rows, cols = torch.arange(40), torch.arange(50)
    full = hash_noise(7, 1, 3, rows, cols)
    crop = hash_noise(7, 1, 3, torch.arange(10, 30), torch.arange(5, 45))
    assert torch.equal(crop, full[:, 10:30, 5:45])
    assert full.min() >= -1 and full.max() < 1 and abs(float(full.mean())) < 0.05
    assert not torch.equal(hash_noise(8, 1, 3, rows, cols), full)
    assert not torch.equal(hash_noise(7, 2, 3, rows, cols), full)


def test_fold_batchnorm_equals_eval_mode():
    model = trained_looking()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(whole_image(folded, (32, 40), 3), whole_image(model, (32, 40), 3))


@pytest.mark.parametrize("block,output", [(13, "sigmoid"), (32, "clamp"), (1024, "sigmoid")])
def test_tiled_equals_untiled(block, output):
    model = fold_batchnorm(trained_looking(output=output))
    expected = whole_image(model, (48, 64), 5)
    tiled = generate(prepare(model), (48, 64), seed=5, block=block)
    torch.testing.assert_close(tiled, expected, atol=1e-5, rtol=0)


def test_seamless_output_wraps_without_a_seam():
    model = prepare(fold_batchnorm(trained_looking()))
    image = generate(model, (32, 40), seed=2, seamless=True)
    # The network evaluated on a 2x2 periodic plane, straddling every wrap, is the image repeated.
    plane = render_region(model, (-16, 48, -20, 60), (32, 40), seed=2)[0]
    torch.testing.assert_close(
        plane, image.roll((16, 20), (1, 2)).repeat(1, 2, 2), atol=1e-5, rtol=0
    )


def test_any_size_is_a_crop_of_the_next_multiple():
    model = prepare(fold_batchnorm(trained_looking()))
    assert model.multiple == 4
    small = generate(model, (37, 53), seed=1)
    big = generate(model, (40, 56), seed=1)
    assert small.shape == (3, 37, 53)
    torch.testing.assert_close(small, big[:, :37, :53], atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="multiple of 4"):
        generate(model, (37, 53), seed=1, seamless=True)


def test_seeds_give_different_textures():
    model = prepare(fold_batchnorm(trained_looking()))
    a, b = generate(model, (32, 32), seed=0), generate(model, (32, 32), seed=1)
    assert not torch.allclose(a, b, atol=1e-4)


def test_training_starts_with_noise_at_the_coarsest_scale_only():
    torch.manual_seed(0)
    model = build_generator("tiny").train()
    noises = noise_pyramid([0, 1], (16, 16), model.scales, model.noise_channels)
    with torch.no_grad():
        x = model(noises)
        finer = model([noises[0]] + [torch.rand_like(z) * 2 - 1 for z in noises[1:]])
        coarser = model([torch.rand_like(noises[0]) * 2 - 1] + noises[1:])
    assert torch.equal(finer, x)
    assert (coarser - x).abs().mean() > 1e-3
    (model(noises).mean()).backward()
    assert all(u.norm.weight.grad.abs().sum() > 0 for u in model.noise_units[1:])


def test_inference_form_re_estimates_stale_batchnorm_statistics():
    from configs import TrainConfig
    from generator.training import inference_form

    model = trained_looking()  # running statistics unrelated to the weights
    stale = [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    cfg = TrainConfig(generator="tiny", image_size=32, batch_size=2)
    folded = inference_form(model, cfg, torch.device("cpu"))
    after = [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stale, after, strict=True))
    noises = noise_pyramid([0, 1, 2, 3], (32, 32), model.scales, model.noise_channels)
    with torch.no_grad():
        folded_out, stale_out = folded(noises), model(noises)
        batch_stats = model.train()(noises)  # what training saw
    assert (folded_out - batch_stats).abs().mean() < 0.3 * (stale_out - batch_stats).abs().mean()


@pytest.mark.parametrize("bias,sign,passes", [(2.0, 1, True), (2.0, -1, False), (-2.0, -1, True)])
def test_clamp_output_keeps_only_gradients_back_into_range(bias, sign, passes):
    model = build_generator("tiny", "clamp")
    with torch.no_grad():
        model.to_rgb.weight.zero_()
        model.to_rgb.bias.fill_(bias)  # every value saturated: 2.5 or -1.5 before the clamp
    x = model(noise_pyramid([0], (8, 8), model.scales, model.noise_channels))
    assert torch.equal(x, torch.full_like(x, 1.0 if bias > 0 else 0.0))
    (sign * x.mean()).backward()  # sign 1: descent lowers the values; -1: raises them
    assert (model.to_rgb.bias.grad.abs() > 0.3).all() == passes
    assert (model.to_rgb.bias.grad.abs() < 1e-12).all() != passes


@pytest.mark.parametrize("output", ["sigmoid", "clamp"])
def test_training_starts_at_the_exemplar_colour(output):
    model = build_generator("tiny", output)
    with torch.no_grad():
        model.to_rgb.weight.zero_()
    model.start_at_colour(torch.tensor([0.9, 0.2, 0.5]))
    x = model(noise_pyramid([0], (8, 8), model.scales, model.noise_channels))
    torch.testing.assert_close(x[0, :, 3, 3], torch.tensor([0.9, 0.2, 0.5]))


def test_checkpoint_round_trip(tmp_path):
    model = fold_batchnorm(trained_looking(output="clamp"))
    save_generator(model, tmp_path / "final", {"image_size": 32}, {"step": 7, "eval_loss": 1.5})
    loaded, meta = load_generator(tmp_path / "final")
    assert meta["config"] == {"image_size": 32} and meta["info"]["step"] == 7
    assert meta["arch"]["channels"] == list(model.channels) and loaded.output == "clamp"
    torch.testing.assert_close(
        whole_image(loaded, (16, 24), 1), whole_image(model, (16, 24), 1), atol=0, rtol=0
    )
    assert (tmp_path / "final" / "config.json").is_file()


def test_bad_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_generator(tmp_path / "missing")
    path = save_generator(fold_batchnorm(trained_looking()), tmp_path / "ok", {}, {})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_generator(truncated)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not a texsynth generator"):
        load_generator(foreign)
    state = safetensors.torch.load_file(str(path))
    state["to_rgb.weight"] = torch.zeros(3, 5, 1, 1)
    with safetensors.safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    mismatched = tmp_path / "mismatched.safetensors"
    safetensors.torch.save_file(state, str(mismatched), metadata)
    with pytest.raises(UserError, match="do not match"):
        load_generator(mismatched)


def test_random_crops_are_seeded_and_bounded():
    x = torch.rand(3, 3, 40, 24)
    a = random_crops(x, 16, torch.Generator().manual_seed(1))
    b = random_crops(x, 16, torch.Generator().manual_seed(1))
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b)
    assert random_crops(x, 64, None) is x


def test_a_checkpoint_saved_before_a_field_existed_resumes_with_its_default():
    import dataclasses

    from configs import TrainConfig, default_config
    from data.errors import UserError
    from generator.training import check_resumable

    cfg = default_config(TrainConfig)
    saved = dataclasses.asdict(cfg)
    del saved["patch_weight"], saved["exemplar_wraps"]  # fields added in session 24
    check_resumable(saved, cfg)
    with pytest.raises(UserError, match="patch_weight: 0.0 -> 1.0"):
        check_resumable(saved, dataclasses.replace(cfg, patch_weight=1.0))
