"""Evening out an exemplar's light before synthesis (data.light, SynthConfig.even_light)."""

import json

import pytest
import torch
from edit_cli import FAST, QUICK, run

from data.errors import UserError
from data.images import save_image
from data.light import LIGHT_SPREAD, even_light, light_spread
from data.procedural import make
from optimize.editing import PatchEditor
from optimize.patches import PatchSynthesizer


def lit(size=128):
    """((3, size, size) a fine pattern under light that falls from left to right, the pattern,
    the light)."""
    y, x = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    pattern = 0.5 + 0.3 * torch.sin(2 * torch.pi * x / 8) * torch.sin(2 * torch.pi * y / 8)
    pattern = torch.stack([pattern, 0.8 * pattern, 0.6 * pattern])
    light = 1.3 - 0.9 * x / size
    return pattern * light, pattern, light


def test_the_light_is_divided_out_and_the_pattern_kept():
    u, pattern, light = lit()
    evened, spread = even_light(u), light_spread(u)
    assert evened.shape == u.shape and evened.dtype == u.dtype
    # the spread is the light's (its std over its mean: 0.30 here), less what the blur takes
    # where it reflects the ramp at the edges (measured 0.21)
    assert 0.6 * (light.std() / light.mean()) < spread < light.std() / light.mean()
    assert light_spread(evened) < 0.15 * spread
    # what is left is the pattern times one number (away from the edges, where the blur
    # reflects and the light's slope bends)
    inner = (slice(None), slice(None), slice(24, -24))
    ratio = evened[inner] / pattern[inner]
    assert ratio.std() / ratio.mean() < 0.03, float(ratio.std() / ratio.mean())
    # the channels keep their balance
    assert torch.allclose(evened[1] / evened[0], torch.full_like(evened[0], 0.8), atol=1e-3)
    # light that changes colour (white on the left, its red falling off to the right, as a
    # highlight's on blue metal) is evened in colour too
    tinted = pattern * torch.stack([light, torch.ones_like(light), torch.ones_like(light)])
    evened = even_light(tinted)
    ratio = evened[inner][0] / evened[inner][1]
    assert ratio.std() / ratio.mean() < 0.03, float(ratio.std() / ratio.mean())


def test_an_evenly_lit_texture_is_left_as_it_is():
    cells = make("cells", 128, seed=0)
    assert light_spread(cells) < LIGHT_SPREAD
    kw = dict(log=lambda m: None, **FAST)
    synth = PatchSynthesizer([cells], **kw)  # auto
    assert not synth.evened and torch.equal(synth.exemplars[0], cells)
    forced = PatchSynthesizer([cells], even_light="on", **kw)
    assert forced.evened and not torch.equal(forced.exemplars[0], cells)
    # an exemplar that tiles was lit as meant (and a light blurred with edges would not tile)
    tile = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)).repeat(1, 4, 4)
    wave = tile * (0.6 + 0.3 * torch.sin(2 * torch.pi * torch.arange(128.0) / 128))
    assert light_spread(wave) >= LIGHT_SPREAD
    synth = PatchSynthesizer([wave], **kw)
    assert synth.wraps and not synth.evened


def test_auto_evens_a_quilted_synthesis_not_a_grown_one_nor_an_edit():
    u, _, _ = lit()
    said = []
    synth = PatchSynthesizer([u], log=said.append, **FAST)
    assert synth.evened and synth.engine_metadata()["light_evened"] is True
    assert any(m.startswith("light: evened out (it varied by 2") for m in said), said
    assert light_spread(synth.exemplars[0].cpu()) < LIGHT_SPREAD
    assert not PatchSynthesizer([u], even_light="off", log=lambda m: None, **FAST).evened
    # grown from noise, nothing confines the output to one part of the light, and what looks
    # like light may be the material's (fur's dark clumps): auto keeps it, on evens it
    assert not PatchSynthesizer([u], start="noise", log=lambda m: None, **FAST).evened
    assert PatchSynthesizer([u], start="noise", even_light="on", log=lambda m: None, **FAST).evened
    # a repair's fill must meet the kept pixels in their light
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[48:80, 48:80] = True
    editor = PatchEditor.repair(u, fill, log=lambda m: None, **FAST)
    assert not editor.evened
    with pytest.raises(UserError, match="--even-light on: repair and expand keep the light"):
        PatchEditor.repair(u, fill, even_light="on", log=lambda m: None, **FAST)


def test_even_light_on_the_command_line(tmp_path):
    image, mask = tmp_path / "lit.png", tmp_path / "mask.png"
    save_image(lit()[0], image)
    fill = torch.zeros(1, 128, 128)
    fill[:, 48:80, 48:80] = 1
    save_image(fill.expand(3, -1, -1), mask)
    out = tmp_path / "out.png"
    code, output = run([image, "--size", "96", "-o", out, *QUICK])
    assert code == 0 and "light: evened out" in output, output
    assert json.loads(out.with_suffix(".json").read_text())["light_evened"] is True
    code, output = run([image, "--size", "96", "--even-light", "off", "-o", out, "--overwrite",
                        *QUICK])  # fmt: skip
    assert code == 0 and "light: evened" not in output, output
    assert json.loads(out.with_suffix(".json").read_text())["light_evened"] is False
    bad = tmp_path / "bad.png"
    code, output = run([image, "--mask", mask, "--even-light", "on", "-o", bad, *QUICK])
    assert code == 2 and "--even-light on: repair and expand keep the light" in output, output
    assert len(output.strip().splitlines()) <= 2 and not bad.exists(), output
    code, output = run([image, "--config", "gatys2015", "--even-light", "on", "-o", bad])
    assert code == 2 and "--even-light: not used by the features objective" in output, output
