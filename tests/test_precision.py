"""The backbone's precision: detection of native bf16, bf16 only in the backbone, same bytes
within a precision, and the resolved precision in sidecars and training configs."""

import contextlib
import json

import pytest
import torch
from typer.testing import CliRunner

import synth
from losses import TextureLoss
from models import devices
from models.backbones import build_backbone

CPU = torch.device("cpu")
FAST = [
    "--objective", "features", "--backbone", "random-tiny", "--octaves", "2", "--iterations", "8",
    "--no-progress",
]  # fmt: skip


def cpuinfo(monkeypatch, tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr(devices, "CPUINFO", path)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", "bf16"),
        ("fpu sse2 avx2 amx_bf16 amx_tile", "bf16"),
        ("fpu sse2 avx2 avx512f avx512_vnni", "fp32"),  # AVX-512 alone emulates bf16
    ],
)
def test_auto_reads_the_cpu_flags(monkeypatch, tmp_path, flags, expected):
    cpuinfo(monkeypatch, tmp_path, flags)
    assert devices.resolve_precision("auto", CPU)[0] == expected
    assert devices.resolve_precision("fp32", CPU)[0] == "fp32"  # explicit choices stand
    assert devices.resolve_precision("bf16", CPU)[0] == "bf16"


def test_auto_without_cpuinfo_asks_torch_and_needs_onednn(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda n=native: n)
        assert devices.resolve_precision("auto", CPU)[0] == ("bf16" if native else "fp32")
    cpuinfo(monkeypatch, tmp_path, "avx512_bf16")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert devices.resolve_precision("auto", CPU) == (
        "fp32",
        "auto: torch was built without oneDNN",
    )


def test_auto_on_cuda_takes_cudas_answer_without_emulation(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "GPU")
    for native, expected in ((True, "bf16"), (False, "fp32")):

        def supported(including_emulation=True, native=native):
            asked.append(including_emulation)
            return native

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
        assert devices.resolve_precision("auto", torch.device("cuda:0"))[0] == expected
    assert asked == [False, False]


def tiny_loss(precision: str) -> TextureLoss:
    backbone = build_backbone("random-tiny", ["conv1_1", "pool2"], padding="reflect", seed=0)
    exemplar = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    return TextureLoss(
        [exemplar], backbone, [1.0, 1.0], [1.0, 1.0], spectrum_weight=1.0, tv_weight=1e-3,
        autocorr_weights=[0.0, 0.01], swd_weights=[0.0, 1.0], precision=precision,
    )  # fmt: skip


def test_bf16_runs_only_the_backbone_in_bf16():
    x = torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(1))
    values, grads = {}, {}
    for precision in ("fp32", "bf16"):
        loss = tiny_loss(precision)
        seen = []
        loss.backbone.register_forward_hook(
            lambda m, i, out, seen=seen: seen.extend(f.dtype for f in out.values())
        )
        xi = x.clone().requires_grad_(True)
        terms = loss(xi)
        terms["total"].backward()
        want = torch.bfloat16 if precision == "bf16" else torch.float32
        assert seen and set(seen) == {want}  # the backbone ran in the precision asked for
        assert all(t.dtype == torch.float32 for t in terms.values())  # statistics, sum: fp32
        assert all(b.dtype == torch.float32 for b in loss.buffers())  # targets from fp32
        assert xi.grad.dtype == torch.float32
        values[precision], grads[precision] = float(terms["total"].detach()), xi.grad
    assert values["bf16"] != values["fp32"]
    assert values["bf16"] == pytest.approx(values["fp32"], rel=0.05)
    cosine = torch.nn.functional.cosine_similarity(
        grads["bf16"].flatten(), grads["fp32"].flatten(), 0
    )
    assert cosine > 0.98


def run(args):
    result = CliRunner().invoke(synth.app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.slow
def test_same_seed_same_bytes_in_bf16_and_sidecar_says_so(exemplar_path, tmp_path):
    outs = {}
    for name, precision in [("a", "bf16"), ("b", "bf16"), ("c", "fp32")]:
        out = tmp_path / f"{name}.png"
        code, output = run([exemplar_path, "-o", out, "--precision", precision, *FAST])
        assert code == 0, output
        assert f"precision {precision} (asked for)" in output
        outs[name] = out.read_bytes()
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["precision"] == precision == meta["config"]["precision"]
    assert outs["a"] == outs["b"]
    assert outs["a"] != outs["c"]  # bf16 did reach the result


@pytest.mark.slow
def test_auto_is_resolved_in_the_sidecar(exemplar_path, tmp_path, monkeypatch):
    for flags, expected in (("avx2", "fp32"), ("avx2 avx512_bf16", "bf16")):
        cpuinfo(monkeypatch, tmp_path, flags)
        out = tmp_path / f"{expected}.png"
        code, output = run([exemplar_path, "-o", out, "--precision", "auto", *FAST])
        assert code == 0, output
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["config"]["precision"] == "auto" and meta["precision"] == expected


def test_bad_precision_is_a_usage_error(exemplar_path, tmp_path):
    code, output = run([exemplar_path, "-o", tmp_path / "x.png", "--precision", "fp16", *FAST])
    assert code == 2 and "Invalid value for '--precision'" in output
    assert "Traceback" not in output


def test_bf16_is_refused_for_the_patch_objective_and_fp32_is_not(exemplar_path, tmp_path):
    from configs import SynthConfig
    from data.errors import UserError

    code, output = run([exemplar_path, "-o", tmp_path / "x.png", "--precision", "bf16"])
    assert code == 2 and "patches objective has no network" in output
    assert len(output.strip().splitlines()) == 1
    with pytest.raises(UserError, match="no network"):
        SynthConfig(objective="patches", precision="bf16")
    assert SynthConfig(objective="patches", precision="auto").precision == "auto"
    with pytest.raises(UserError, match="precision"):
        SynthConfig(objective="features", precision="fp16")  # the API is checked too


def test_training_resolves_auto_before_accelerate(monkeypatch, tmp_path):
    from configs import TrainConfig
    from training.runs import resolved_precision

    cfg = TrainConfig(mixed_precision="auto", device="cpu")
    for flags, expected in (("avx2", "no"), ("amx_bf16 amx_tile", "bf16")):
        cpuinfo(monkeypatch, tmp_path, flags)
        assert resolved_precision(cfg).mixed_precision == expected
    assert resolved_precision(TrainConfig(mixed_precision="no")).mixed_precision == "no"


def test_statistics_stay_fp32_under_an_outer_autocast():
    """accelerate's bf16 autocast wraps the whole training loss: the backbone runs in bf16
    there, the Gram matrices and projections must not."""
    loss = tiny_loss("fp32")
    x = torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(1))
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.no_grad():
        with bf16:
            feats = loss._features(x)
            mixed = loss(x)
            cast = [sum(loss.feature_terms(s, f).values()) for s, f in enumerate(feats)]
        fp32 = [sum(loss.feature_terms(s, f).values()) for s, f in enumerate(feats)]
    assert all(f.dtype == torch.float32 for level in feats for f in level.values())
    for s in range(len(feats)):
        assert float(mixed[f"gram/octave{s}"]) == float(fp32[s])  # fp32 statistics exactly
        assert float(cast[s]) != float(fp32[s])  # what autocast would have made of them
