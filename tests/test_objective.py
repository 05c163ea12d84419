"""The combined objective on a tiny random backbone."""

import dataclasses

import torch

from configs import LossConfig
from data.procedural import make
from losses import gram_matrix
from losses.objective import build_backbone_for, build_objective, min_image_size
from models.backbones import build_backbone


def tiny_backbone(padding="circular", layers=("conv1_1", "pool1", "conv2_1", "pool2")):
    return build_backbone("random-tiny", list(layers), padding=padding, seed=0)


def test_exemplar_tiled_2x2_has_the_exemplar_gram():
    u = make("cells", 48, seed=1)  # periodic by construction
    backbone = tiny_backbone()
    loss = build_objective(LossConfig(octaves=2), [u], backbone, tile=True)
    tiled = u.repeat(1, 2, 2)[None]
    # With a periodic pyramid on both, every Gram of the 2x2 tiling equals the exemplar's.
    for single, double in zip(loss._features(u[None]), loss._features(tiled), strict=True):
        for name in single:
            a, b = gram_matrix(single[name]), gram_matrix(double[name])
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    # The targets' pyramid reflects (exemplars are not periodic in general): a small
    # difference at the coarse octave's borders, far below a random image's.
    assert loss(tiled)["gram"] < 1e-5
    assert loss(torch.rand(1, 3, 96, 96))["gram"] > 1e-2


def test_exemplar_loss_is_near_zero_and_noise_is_large():
    u = make("dots", 64, seed=2)
    backbone = tiny_backbone(padding="zeros")
    backbone.rescale_([u[None]])
    cfg = LossConfig(octaves=3, spectrum_weight=1.0, tv_weight=0.1)
    loss = build_objective(cfg, [u], backbone, tile=False)
    own = loss(u[None])
    noise = loss(torch.rand(1, 3, 64, 64))
    assert own["gram"] < 1e-10 and own["spectrum"] < 1e-3
    assert noise["gram"] > 1e4 * max(own["gram"].item(), 1e-12)
    assert noise["spectrum"] > 10 * own["spectrum"]
    assert set(own) >= {"total", "gram", "spectrum", "tv", "gram/octave0", "gram/octave2"}
    expected = own["gram"] + own["spectrum"] + 0.1 * own["tv"]
    assert torch.isclose(own["total"], expected)


def test_rescaled_backbone_balances_layers():
    u = make("stripes", 64)
    backbone = tiny_backbone(padding="zeros")
    backbone.rescale_([u[None]])
    feats = backbone(u[None])
    for name, f in feats.items():
        if name.startswith("conv"):
            means = f.mean((0, 2, 3))
            unit = (means - 1).abs() < 1e-3
            assert unit.float().mean() > 0.5 and torch.all(means < 1 + 1e-3), name


def test_min_image_size_matches_backbone():
    backbone = tiny_backbone(padding="valid", layers=("pool1", "conv3_2"))
    assert min_image_size(backbone, 1) == backbone.min_input_size()
    assert min_image_size(backbone, 3) == (backbone.min_input_size() - 1) * 4 + 1


def test_autocorrelation_term_sees_what_the_gram_misses():
    # Stripes cut into 16 px blocks put back in random order keep their local statistics (the
    # Gram terms move little) but lose the period: the autocorrelation term grows much more.
    u = make("stripes", 64, seed=1)
    backbone = tiny_backbone(padding="zeros", layers=("conv1_1", "pool1", "pool2"))
    cfg = LossConfig(octaves=1, layers=["conv1_1", "pool1", "pool2"], autocorr_layers=["pool2"])
    loss = build_objective(cfg, [u], backbone, tile=False)
    assert loss.layer_weights == [1.0, 1.0, 1.0] and loss.autocorr_weights == [0.0, 0.0, 1.0]
    own = loss(u[None])
    assert own["autocorr"] < 1e-8 and own["gram"] < 1e-8
    blocks = u.unfold(1, 16, 16).unfold(2, 16, 16)  # (3, 4, 4, 16, 16)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    shuffled = blocks.reshape(3, 16, 16, 16)[:, order].reshape(3, 4, 4, 16, 16)
    shuffled = shuffled.permute(0, 1, 3, 2, 4).reshape(3, 64, 64)
    terms = loss(shuffled[None])
    assert terms["autocorr"] > 5 * terms["gram"]


def test_autocorrelation_layers_are_added_to_the_backbone_without_a_gram_term():
    u = make("dots", 64, seed=2)
    cfg = LossConfig(
        octaves=1, layers=["conv1_1"], autocorr_layers=["block2_pool"], padding="zeros"
    )
    backbone = build_backbone_for(
        dataclasses.replace(cfg, backbone="random-tiny"), False, torch.device("cpu")
    )
    assert backbone.layers == ["conv1_1", "pool2"]
    loss = build_objective(cfg, [u], backbone, tile=False)
    assert loss.layer_weights == [1.0, 0.0] and loss.autocorr_weights == [0.0, 1.0]


def test_the_patch_share_adds_the_patch_objective_in_units_of_the_flat_start():
    from configs import TrainConfig, default_config
    from losses.objective import flat_start, generator_objective

    u = make("cells", 64, seed=2)
    values = dict(backbone="random-tiny", octaves=1, image_size=64, coarsest=16, projections=16)
    plain = default_config(TrainConfig, **values)
    mixed = default_config(TrainConfig, patch_weight=2.0, nearest_weight=1.0, **values)
    features, _ = generator_objective(plain, [u], build_backbone_for(plain, False, "cpu"))
    loss, described = generator_objective(mixed, [u], build_backbone_for(mixed, False, "cpu"))
    assert "(share 2) pixel patches 7x7" in described
    start = flat_start([u], (3, 64, 64))
    # each objective counts in units of its value on the flat start: 1 + 2 there
    assert abs(float(loss(start)["total"]) - 3.0) < 1e-4
    terms = loss(u[None])
    assert {"features/total", "patches/total", "patches/nearest"} <= set(terms)
    # the features part is the features objective itself, scaled
    torch.testing.assert_close(terms["features/total"], features(u[None])["total"])
    assert float(terms["total"]) < 0.2 * float(loss(start)["total"])  # the exemplar is near


def test_the_patch_share_needs_the_features_objective():
    import pytest

    from configs import TrainConfig, default_config
    from data.errors import UserError

    with pytest.raises(UserError, match="--patch-weight adds the patch objective"):
        default_config(TrainConfig, objective="patches", patch_weight=1.0)
    with pytest.raises(UserError, match="--patch-weight must be a number >= 0"):
        default_config(TrainConfig, patch_weight=-1.0)
    # with a share, the patch objective's own fields are allowed
    default_config(TrainConfig, patch_weight=1.0, nearest_weight=1.0, exemplar_wraps="on")
