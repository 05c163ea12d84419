"""Whether an exemplar looks the same turned and mirrored (data.symmetry), and the optimize
engine matching its turned and mirrored copies where it lays an output out
(``--exemplar-turns``, optimize.patches)."""

import json

import pytest
import torch
from edit_cli import FAST, QUICK, run

from data.errors import UserError
from data.images import save_image
from data.procedural import make
from data.symmetry import TURN_DISTANCE, symmetries, symmetry, turn_distance, undone
from losses.nearest import NEAREST_STRIDE, project_to_nearest
from optimize.patches import PatchSynthesizer


def lit_from_the_left(u: torch.Tensor) -> torch.Tensor:
    """(3, H, W) ``u`` embossed: each pixel brightened by the luminance step from its left
    neighbour, as a light from the left shades the elements' edges."""
    g = u.mean(0)
    step = torch.zeros_like(g)
    step[:, 1:] = g[:, 1:] - g[:, :-1]
    return (u + 1.5 * step).clamp(0, 1)


def test_the_eight_symmetries_are_distinct_and_start_with_the_image():
    u = torch.arange(12.0).view(1, 3, 4)
    turned = symmetries(u)
    assert len(turned) == 8 and torch.equal(turned[0], u)
    assert len({(tuple(t.shape), tuple(t.flatten().tolist())) for t in turned}) == 8
    assert torch.equal(turned[2], u.flip(-1).flip(-2))  # the half turn
    assert all(torch.equal(undone(t, k), u) for k, t in enumerate(turned))


def test_cells_and_dots_look_the_same_turned_stripes_and_a_side_light_do_not():
    cells, dots = make("cells", 256), make("dots", 256)
    assert turn_distance(cells) <= TURN_DISTANCE and turn_distance(dots) <= TURN_DISTANCE
    assert turn_distance(make("stripes", 256)) > 3 * TURN_DISTANCE
    # the same cells lit from one side: a mirror puts the light on the other side
    assert turn_distance(lit_from_the_left(cells)) > TURN_DISTANCE
    # a flat image has no directions to compare
    assert turn_distance(torch.full((3, 64, 64), 0.5)) == 0


def test_the_layout_scales_match_the_turned_copies_and_the_full_size_does_not():
    cells = make("cells", 128)
    synth = PatchSynthesizer(cells, log=lambda m: None, exemplar_turns="on", **FAST)
    assert synth.turns and not PatchSynthesizer(cells, log=lambda m: None, **FAST).turns
    assert synth._turned_at(0) and not synth._turned_at(len(synth.scales) - 1)
    # the distribution at a layout scale is the eight copies'
    assert len(synth._patch_images(0, 7, turned=True)) == 8
    # the exemplar turned by a quarter and mirrored, at the coarsest scale, is its own
    # nearest patches where its patches are turned back to match (nearly: the search is in
    # NEAREST_DIMS dimensions), not as they are
    turned = symmetry(synth._pyramid[0][0], 5)
    index = synth._index(0, 7)
    error = {}
    for k in (5, 0):
        labels = torch.full(turned.shape[-2:], k, dtype=torch.long)
        projected = project_to_nearest(turned, index, NEAREST_STRIDE, False, turns=labels)
        error[k] = float((projected - turned).abs().mean())
    assert error[5] < 0.2 * error[0], error


def test_the_turns_come_in_regions_of_the_exemplars_size():
    cells = make("cells", 128)
    synth = PatchSynthesizer(cells, log=lambda m: None, exemplar_turns="on", **FAST)
    synth._regions = synth._draw_regions((512, 1024), torch.Generator().manual_seed(0))
    centres, kinds, _ = synth._regions
    assert len(centres) == 32  # 512 x 1024 px in squares of the exemplar's 128 px
    labels = synth._turn_map((268, 524))  # a canvas at half size with its 6 px margin
    assert labels.shape == (268, 524) and set(labels.unique().tolist()) <= set(range(8))
    assert len(labels.unique()) >= 4  # 32 regions draw most of the eight
    # regions, not noise: most pixels share their right neighbour's symmetry
    assert (labels[:, 1:] == labels[:, :-1]).float().mean() > 0.9
    # the same regions at every scale: the full-size map, shrunk, is the half-size one
    full = synth._turn_map((524, 1036))
    assert (full[6:-6:2, 6:-6:2] == labels[6:-6, 6:-6]).float().mean() > 0.95


def test_auto_turns_cells_not_stripes_nor_an_edit_a_remake_or_a_stack():
    assert not PatchSynthesizer(make("cells", 256), log=lambda m: None, **FAST).turns  # off
    messages = []
    auto = {"exemplar_turns": "auto", **FAST}
    assert PatchSynthesizer(make("cells", 256), log=messages.append, **auto).turns
    assert any("turned and mirrored" in m for m in messages)
    assert not PatchSynthesizer(make("stripes", 256), log=lambda m: None, **auto).turns
    from optimize.editing import PatchEditor
    from optimize.stacks import StackSynthesizer

    hole = torch.zeros(128, 128, dtype=torch.bool)
    hole[40:80, 40:80] = True
    assert not PatchEditor.repair(make("cells", 128), hole, log=lambda m: None, **auto).turns
    with pytest.raises(UserError, match="--exemplar-turns on: repair and expand fill"):
        PatchEditor.repair(make("cells", 128), hole, exemplar_turns="on", **FAST)
    with pytest.raises(UserError, match="--exemplar-turns on: material stacks"):
        StackSynthesizer({"albedo": make("cells", 64)}, exemplar_turns="on", **FAST)
    with pytest.raises(UserError, match="--exemplar-turns"):
        PatchSynthesizer(make("cells", 64), exemplar_turns="sideways")


def test_exemplar_turns_on_the_command_line(tmp_path):
    image = tmp_path / "cells.png"
    save_image(make("cells", 128), image)
    out = tmp_path / "out.png"
    code, output = run([image, "--size", "96", "--exemplar-turns", "on", "-o", out, *QUICK])
    assert code == 0, output
    assert json.loads(out.with_suffix(".json").read_text())["exemplar_turns"] is True
    bad = tmp_path / "bad.png"
    code, output = run([image, "--exemplar-turns", "sideways", "-o", bad, *QUICK])
    assert code == 2 and not bad.exists(), output
    code, output = run([image, "--config", "gatys2015", "--exemplar-turns", "on", "-o", bad])
    assert code == 2 and "--exemplar-turns: not used by the features objective" in output, output
    assert len(output.strip().splitlines()) <= 2 and not bad.exists(), output
