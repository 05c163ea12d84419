"""A deep hole's start from copied blocks (optimize.quilting) and its use by the editor."""

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from edit_cli import FAST, QUICK, run
from test_repeats import between_joints, brick_lengths, pale_joints, panel, running_bond

from data.errors import UserError
from data.images import load_image, save_image
from data.procedural import make
from data.repeats import lattice_shifts
from judge import seam_ratio
from losses.nearest import PatchIndex
from optimize import editing, quilting
from optimize.blending import membrane
from optimize.coherence import Coherence
from optimize.editing import PatchEditor, conditional_patches
from optimize.patches import LATTICE_SHARE, START_BLOCK, START_REPEAT, PatchSynthesizer
from optimize.quilting import (
    HEALS,
    LATTICE_HEALS,
    LATTICE_SEAMS,
    OVERLAP,
    SEAMS,
    _cut,
    _Paste,
    block_side,
    lattice_overlap,
    quilt,
    quilt_periodic,
    seam_error,
    whole_blocks,
)


def columns(size=96, period=12):
    """(3, size, size): a pattern that varies along x only, with ``period`` px."""
    x = torch.arange(size).remainder(period).float() / period
    row = torch.stack([x, x.flip(0), (2 * x).remainder(1)])
    return row[:, None, :].expand(3, size, size).clone()


def test_blocks_placed_by_the_pixels_around_them_continue_a_pattern_exactly():
    img = columns()
    fill = torch.zeros(96, 96, dtype=torch.bool)
    fill[32:64, 32:64] = True
    canvas = torch.where(fill, torch.full((3, 1, 1), 0.5), img)
    g = torch.Generator().manual_seed(0)
    out = quilt(canvas, fill, [canvas], [~fill], 16, g)
    assert torch.equal(out[:, ~fill], img[:, ~fill])
    # only blocks in phase with the period agree with the kept ring: a block placed at
    # random would be off phase 11 times in 12
    assert torch.allclose(out, img)


def _offset_runs(out: torch.Tensor, h: int, w: int) -> int:
    """The longest run, along any row of ``out`` quilted from a ``_ramps`` source (h, w), of
    pixels copied at one offset (source position less place): one copied strip."""
    sy = (out[0] * (h - 1)).round().long() - torch.arange(out.shape[1])[:, None]
    sx = (out[1] * (w - 1)).round().long() - torch.arange(out.shape[2])[None]
    same = (sy[:, 1:] == sy[:, :-1]) & (sx[:, 1:] == sx[:, :-1])
    longest = 0
    for row in same.tolist():
        run = 0
        for s in row:
            run = run + 1 if s else 0
            longest = max(longest, run)
    return longest + 1


def _ramps(h: int, w: int) -> torch.Tensor:
    """(3, h, w): each pixel's row and column as colours (and noise): a quilt of it shows
    where each of its pixels was copied from."""
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None].expand(h, w)
    return torch.stack([y, x, torch.rand(h, w, generator=torch.Generator().manual_seed(0))])


@pytest.mark.parametrize("seed", [0, 1])
def test_fresh_blocks_never_continue_their_neighbours_source(seed):
    source, side = _ramps(128, 128), 16
    everything = torch.ones(64, 96, dtype=torch.bool)
    valid = [torch.ones(128, 128, dtype=torch.bool)]

    def quilted(fresh):
        g = torch.Generator().manual_seed(seed)
        return quilt(torch.zeros(3, 64, 96), everything, [source], valid, side, g,
                     blend=False, heals=0, fresh=fresh)  # fmt: skip

    # the block that continues its neighbour as the source does matches the overlap exactly
    # and wins: plain quilts copy strips several blocks long; fresh ones, none past a block
    assert _offset_runs(quilted(False), 128, 128) > 2 * side
    assert _offset_runs(quilted(True), 128, 128) <= side


@pytest.mark.parametrize("ring_side", [None, 8])
def test_an_expand_grown_from_its_kept_middle_continues_a_pattern_to_the_corners(ring_side):
    img = columns()
    fill = torch.ones(96, 96, dtype=torch.bool)
    fill[32:64, 24:72] = False  # an expand: the kept middle, the hole all around it
    canvas = torch.where(fill, torch.full((3, 1, 1), 0.5), img)

    def blocks(**kw):
        g = torch.Generator().manual_seed(0)
        return quilt(canvas, fill, [canvas], [~fill], 16, g, blend=False, **kw)

    grown = blocks(grow=True, ring_side=ring_side)
    assert torch.equal(grown[:, ~fill], img[:, ~fill])
    # every grown block meets known pixels, so each takes the period's phase from them; in
    # raster order the first block, in the corner, meets nothing and draws a phase at random
    assert torch.allclose(grown, img)
    assert not torch.allclose(blocks(), img)


def test_a_grown_fill_starts_beside_the_kept_pixels_and_reaches_an_overlap_into_them():
    fill = torch.ones(64, 64, dtype=torch.bool)
    fill[24:40, 20:44] = False
    known = ~fill
    y, x = next(quilting._grown(fill, known, 16, 4))
    window = known[y : y + 16, x : x + 16]
    # the first front pixel with the most known around it lies along the kept block's top
    # edge, away from its corners; its window holds 4 kept rows and no unknown pixel among them
    assert window[-4:].all() and not window[:-4].any()
    assert (y, x) == (24 + 4 - 16, 20)


def test_blocks_from_a_brighter_source_are_blended_into_the_ring():
    img = 0.1 + 0.6 * columns()
    brighter = img + 0.2  # the same pattern in other light, as a second photo would be
    fill = torch.zeros(96, 96, dtype=torch.bool)
    fill[24:72, 24:72] = True
    canvas = torch.where(fill, torch.full((3, 1, 1), 0.5), img)
    every = [torch.ones(96, 96, dtype=torch.bool)]
    pasted = quilt(canvas, fill, [brighter], every, 16, torch.Generator().manual_seed(0), False)
    assert torch.allclose(pasted[:, fill], img[:, fill] + 0.2, atol=1e-5)  # a step at the edge
    out = quilt(canvas, fill, [brighter], every, 16, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, ~fill], img[:, ~fill])
    # the blocks' offset from the ring is spread over the hole: here it is constant, so the
    # membrane removes it everywhere and the pattern continues at the ring's brightness
    assert torch.allclose(out, img, atol=1e-3)


def test_an_element_cut_by_the_edge_is_not_spread_into_the_hole_as_a_glow():
    img = 0.1 + 0.3 * columns()
    fill = torch.zeros(96, 96, dtype=torch.bool)
    fill[24:72, 24:72] = True
    canvas = torch.where(fill, torch.full((3, 1, 1), 0.5), img)
    canvas[:, 14:30, 40:52] = 1.0  # a white element that the hole's top edge cuts
    every = [torch.ones(96, 96, dtype=torch.bool)]
    blocks = lambda **kw: quilt(canvas, fill, [img], every, 16,  # noqa: E731
                                torch.Generator().manual_seed(0), **kw)  # fmt: skip
    pasted = blocks(blend=False)
    far = fill.clone()
    far[:34] = False  # 10 px and more inside the hole's top edge
    glow = (blocks() - pasted)[:, far].abs().max()
    limited = (blocks(offset_limit=0.1) - pasted)[:, far].abs().max()
    assert glow > 0.15  # the element's white, spread harmonically deep into the hole
    assert limited <= 0.1  # the ring agrees elsewhere (median 0): the light's part is clamped


def test_a_screened_membrane_fades_within_its_reach():
    fill = torch.zeros(64, 64, dtype=torch.bool)
    fill[2:62, 2:62] = True
    ring = torch.ones(1, 64, 64)
    assert torch.allclose(membrane(ring, fill)[:, fill], torch.ones(1, int(fill.sum())), atol=1e-3)
    d = membrane(ring, fill, reach=3.0)[0]
    assert d[2, 32] > 0.5  # beside the edge: most of the ring's value
    assert d[12, 32] < 0.05 and d[32, 32] < 1e-3  # 10 px in: faded; the middle: nothing


def test_the_membrane_is_harmonic_and_meets_the_ring():
    fill = torch.zeros(40, 50, dtype=torch.bool)
    fill[8:30, 12:41] = True
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(50.0), indexing="ij")
    plane = torch.stack([0.01 * x, -0.02 * y, 0.005 * (x + y)])  # harmonic: reproduced
    d = membrane(plane, fill)
    assert torch.allclose(d[:, fill], plane[:, fill], atol=1e-4)
    assert torch.equal(d[:, ~fill], torch.zeros_like(plane[:, ~fill]))
    big = torch.zeros(130, 150, dtype=torch.bool)
    big[10:120, 12:140] = True  # over COARSE_PIXELS: started from the half-size membrane
    y2, x2 = torch.meshgrid(torch.arange(130.0), torch.arange(150.0), indexing="ij")
    plane2 = torch.stack([0.01 * x2, -0.02 * y2, 0.005 * (x2 + y2)])
    assert torch.allclose(membrane(plane2, big)[:, big], plane2[:, big], atol=1e-3)
    odd, plane3 = big[:129, :147], plane2[:, :129, :147]  # odd sides: padded at half size
    assert torch.allclose(membrane(plane3, odd)[:, odd], plane3[:, odd], atol=1e-3)
    wavy = torch.sin(0.3 * x + 0.1 * y).expand(3, -1, -1)  # not harmonic: a smooth surface
    d = membrane(wavy, fill)
    inner = d[:, 9:29, 13:40]
    assert inner.abs().max() <= wavy.abs().max() + 1e-5  # the maximum principle
    assert (inner[:, 1:] - inner[:, :-1]).abs().max() < 0.2  # smooth inside


def test_the_cut_runs_where_the_blocks_agree():
    error = torch.ones(8, 8)
    error[:, 3] = 0  # the old and the new block agree on column 3
    side, cost = _cut(error, 6)
    assert side[:, 4:].all() and not side[:, :4].any() and cost == 0
    error[2] = 0  # and on row 2: the new block's side is below it and right of column 3
    both = _cut(error, 6)[0] & _cut(error.T, 6)[0].T
    assert both[3:, 4:].all() and not both[:2].any() and not both[:, :3].any()  # ties on row 2
    crossed = error.clone()
    crossed[5, 3] = 2.5  # the path must cross row 5: beside column 3, at a cost of 1
    sides, costs = _cut(torch.stack([error, crossed]), 6)  # candidates cut at once
    assert costs.tolist() == [0, 1] and torch.equal(sides[0], _cut(error, 6)[0])
    assert sides[1, 5, 3] != sides[0, 5, 3]  # the cut steps around the costly pixel


def test_block_side_halves_until_the_sources_hold_whole_blocks_free_to_move():
    valid = torch.ones(64, 64, dtype=torch.bool)
    valid[16:48, 16:48] = False  # a ring 16 px wide
    assert whole_blocks(valid, 16).sum() == 4 * 49 - 4  # 49 per strip, the corners shared
    fill = ~valid
    # 16 px blocks start on lines only (row 0, column 0, ...): none could take both phases
    # of a lattice around the hole; 8 px blocks start in 9 x 9 squares, free both ways
    assert block_side([valid], fill, 8, free=True) == 8
    assert block_side([valid], fill, 9, free=True) is None
    assert block_side([valid], fill, 8) == 16  # off a lattice the larger blocks are kept
    valid[16:48, 16:20] = True  # a ring 20 px wide on the left: 16 px blocks move 4 px
    assert block_side([valid], valid.logical_not(), 8, free=True) == 16


def test_blocks_are_at_most_a_quarter_of_the_sources_short_side():
    # an expand: the canvas is twice the image; a quarter of the canvas's short side (the
    # rule before session 23) would be half of the image's and match its ring badly
    fill = torch.ones(256, 256, dtype=torch.bool)
    fill[64:192, 64:192] = False
    image = [torch.ones(128, 128, dtype=torch.bool)]
    assert block_side(image, fill, 8) == 32
    assert block_side([~fill], fill, 8) == 64  # a repair's source is its canvas


def test_the_ring_next_to_the_hole_weighs_more_in_the_pick():
    # kept columns 0-3 of a 16 px canvas, the hole right of them; RING px of them (1-3) are
    # the ring. The source holds block A at x = 0 (exact on column 0, 0.2 off on the ring)
    # and block B at x = 32 (0.5 off on column 0, exact on the ring); elsewhere noise.
    g = torch.Generator().manual_seed(0)
    source = 0.6 + 0.4 * torch.rand(1, 16, 48, generator=g)
    source[:, :, 0], source[:, :, 1:4] = 0.0, 0.2
    source[:, :, 32], source[:, :, 33:36] = 0.5, 0.0
    fill = torch.zeros(16, 16, dtype=torch.bool)
    fill[:, 4:] = True
    canvas = torch.zeros(1, 16, 16)
    every = [torch.ones(16, 48, dtype=torch.bool)]

    def pasted(weight):
        out = quilt(canvas, fill, [source], every, 16, torch.Generator().manual_seed(0),
                    blend=False, ring_weight=weight)  # fmt: skip
        return out[:, :, 4:]

    assert quilting.RING == 3
    assert torch.equal(pasted(0.0), source[:, :, 4:16])  # A: 48 x 0.2^2 < 16 x 0.5^2
    # weighted, the kept total 4 a row: A 48 x 0.04 x 40 / 31 = 2.5 > B 16 x 0.25 x 4 / 31
    assert torch.equal(pasted(quilting.RING_WEIGHT), source[:, :, 36:48])


def discs(size=96, count=14, seed=0):
    """(3, size, size): red discs of radius 6-12 px on white, some overlapping."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(count):
        cy, cx = (torch.rand(2, generator=g) * size).tolist()
        r = 6 + 6 * float(torch.rand(1, generator=g))
        inside |= (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    red = torch.tensor([0.9, 0.3, 0.3]).view(3, 1, 1)
    return torch.where(inside, red, torch.ones(3, 1, 1))


def test_coherence_scores_a_discs_true_continuation_below_a_bite():
    img = discs()
    known = torch.ones(96, 96, dtype=torch.bool)
    known[:, 48:] = False  # the right half is the hole, the whole image the source
    judge = Coherence([img], [torch.ones(96, 96, dtype=torch.bool)])
    out = torch.where(known, img, torch.full((3, 1, 1), 0.5))
    take = torch.ones(24, 24, dtype=torch.bool)
    true = judge.score(out, known, (36, 48), img[:, 36:60, 48:72], take)
    # the same block with a quarter of it white: a disc with a straight bite, or a blank
    bitten = img[:, 36:60, 48:72].clone()
    bitten[:, :12, :12] = 1.0
    worse = [judge.score(out, known, (36, 48), bitten, take)]
    # blocks copied from the source that do not continue what lies beside the window
    worse += [judge.score(out, known, (36, 48), img[:, y : y + 24, 4:28], take) for y in (0, 60)]
    assert true < 0.1 * min(worse)


def test_the_bands_blocks_are_the_lowest_scored_of_the_candidates(monkeypatch):
    img = discs()
    fill = torch.ones(96, 96, dtype=torch.bool)
    fill[24:72, 24:72] = False
    canvas = torch.where(fill, torch.full((3, 1, 1), 0.5), img)
    band = fill & quilting._within(~fill, 12 - 3)  # 12 px blocks reach 9 px past the kept
    calls = []  # the side of each candidate block judged

    def quilted(sign):  # a score rigged to the block's brightness, or to its darkness
        def score(self, out, known, corner, block, take):
            calls.append(block.shape[-1])
            return sign * float(block.mean())

        monkeypatch.setattr(Coherence, "score", score)
        g = torch.Generator().manual_seed(0)
        return quilt(canvas, fill, [canvas], [~fill], 24, g, False, grow=True, ring_side=12,
                     candidates=4)  # fmt: skip

    darkest, brightest = quilted(1.0), quilted(-1.0)
    # only the band's 12 px blocks are judged, and the pick follows the score
    assert calls and set(calls) == {12}
    assert darkest[:, band].mean() < brightest[:, band].mean() - 0.05
    assert torch.equal(darkest[:, ~fill], img[:, ~fill])


def test_a_half_image_hole_in_a_lattice_is_filled_in_phase_with_its_ring():
    tile = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(5))
    img = tile.repeat(1, 7, 7)[:, :128, :128].contiguous()
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[32:96, 32:96] = True
    canvas = torch.where(fill, torch.full((3, 1, 1), 0.5), img)
    side = block_side([~fill], fill, 8, free=True)
    out = quilt(canvas, fill, [canvas], [~fill], side, torch.Generator().manual_seed(0), False)
    # the 32 px ring's whole 32 px blocks start at rows 0 and 96 and columns 0 and 96 only,
    # none 4 px into the 20 px period as the first block's window is: filled with them, the
    # hole was 0.33 off the pattern; 16 px blocks, free to move, continue it exactly
    assert side == 16
    assert (out - img)[:, fill].abs().mean() < 0.01


def test_an_edit_off_a_lattice_grows_its_first_band_from_half_size_blocks():
    img = make("cells", 128, seed=3)
    editor = PatchEditor.expand(img, (256, 256), log=lambda m: None, fill_start="blocks", **FAST)
    assert not editor._lattice_fill() and editor.block is not None
    smallest = editing.QUILT_SMALLEST * editor.config.patch_size  # at least 4 patches
    assert editor.ring_block == max(smallest, round(editor.block / 2))
    edit = editor.engine_metadata()["edit"]
    assert edit["quilt_ring_block"] == editor.ring_block
    assert edit["quilt_ring_candidates"] == quilting.CANDIDATES > 1


def test_a_lattice_edit_has_no_band_of_small_blocks():
    img = tiled(128)
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[40:88, 40:88] = True
    editor = PatchEditor.repair(img, fill, log=lambda m: None, fill_start="blocks", **FAST)
    assert editor._lattice_fill() and editor.block is not None
    assert editor.ring_block is None
    assert editor.engine_metadata()["edit"]["quilt_ring_candidates"] is None


def uneven_wall(h: int, w: int) -> torch.Tensor:
    """(3, h, w): a ``running_bond`` whose courses run 10 to 14 px, as a photo's do."""
    wall = running_bond(h, w, course=12, brick=26, mortar=2)
    y = torch.arange(h, dtype=torch.float)
    rows = (y + 2.5 * torch.sin(2 * torch.pi * y / 53)).round().long().clamp(0, h - 1)
    return wall[:, rows]


@pytest.mark.parametrize("seed", [0, 1])
def test_an_expanded_walls_side_bands_keep_its_uneven_courses(seed):
    # Quilted in raster order from the canvas's corner, the left band's blocks took the
    # rows of whichever block came first and met the kept courses off by a few px: the
    # share of bed joint per row differed from the kept image's by 0.23-0.29 (seeds 0-3).
    # Grown from the kept image, every block takes the rows beside it: 0.005-0.01.
    img = uneven_wall(144, 192)
    editor = PatchEditor.expand(img, (144, 576), log=lambda m: None, fill_start="blocks", **FAST)
    assert editor._lattice_fill()
    out = editor.blocks(torch.Generator().manual_seed(seed), blend=False)
    bed = pale_joints(out).float()
    kept = bed[:, 192:384].mean(1)
    for band in (slice(0, 192), slice(384, 576)):
        assert (bed[:, band].mean(1) - kept).abs().mean() < 0.05


def tiled(size=128, period=(24, 36)):
    """(3, size, size): a random tile repeated, which copied blocks continue exactly and
    7 px patches grown from noise do not."""
    tile = torch.rand(3, *period, generator=torch.Generator().manual_seed(5))
    reps = (size // period[0] + 1, size // period[1] + 1)
    return tile.repeat(1, *reps)[:, :size, :size].contiguous()


def test_a_fill_started_from_blocks_continues_the_pattern_and_keeps_its_ring():
    img = tiled()
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[40:88, 40:88] = True
    editor = PatchEditor.repair(img, fill, log=lambda m: None, fill_start="blocks", **FAST)
    assert editor.block == 32 and "copied blocks" in editor.describe()
    out = editor.synthesize(seed=0).image[0]
    assert torch.equal(out[:, ~fill], img[:, ~fill])
    assert editor.engine_metadata()["edit"]["quilt_block"] == 32
    # the copied blocks continue the tile; refined, they stay close to what the hole held
    error = (out[:, fill] - img[:, fill]).abs().mean()
    grown = PatchEditor.repair(img, fill, log=lambda m: None, fill_start="grow", **FAST)
    assert grown.block is None
    grown_error = (grown.synthesize(seed=0).image[0][:, fill] - img[:, fill]).abs().mean()
    assert error < 0.3 * grown_error, (error, grown_error)  # measured 0.017 against 0.100


def test_a_start_is_refined_towards_the_nearest_patches_of_what_it_holds(monkeypatch):
    img = tiled()
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[40:88, 40:88] = True
    # a hole holding the tile's continuation: its patches' nearest are themselves
    index = PatchIndex([img[None]], 7)
    target = conditional_patches(img[None], fill, index)
    touching = F.max_pool2d(fill[None, None].float(), 7, 1).flatten() > 0
    assert len(target) == (48 + 6) ** 2
    assert torch.equal(target, F.unfold(img[None], 7)[0].T[touching])
    # a large hole's search is a sample: the finest grid with at most ``limit`` patches
    assert len(conditional_patches(img[None], fill, index, 1, limit=27**2)) == 27**2  # stride 2
    assert len(conditional_patches(img[None], fill, index, 1, limit=27**2 - 1)) == 18**2  # 3
    banks = []

    class Recorded(editing.DirectionBank):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            banks.append(self)

    plain = []  # the engine's own projections (an edit's boundary pass comes after them)
    project = PatchSynthesizer._project
    monkeypatch.setattr(editing, "DirectionBank", Recorded)
    monkeypatch.setattr(
        PatchSynthesizer,
        "_project",
        lambda self, x, level: plain.append(level) or project(self, x, level),
    )
    blocks = PatchEditor.repair(img, fill, log=lambda m: None, fill_start="blocks", **FAST)
    blocks.synthesize(seed=0, iterations=3)
    assert plain == []  # a start refined: the boundary's projection only
    # the start's refinement matches the nearest kept patches of its hole's patches (on a
    # stride-2 grid: corners 34, 36, ..., 86, 27 a side), not all of the image's kept
    # patches (a hole of one element in a photo came out a box)
    assert editing.CONDITIONAL_STRIDE == 2
    assert len(banks) == 1 and banks[0].sample.shape == (27**2, 3 * 7 * 7)
    banks.clear()
    grown = PatchEditor.repair(img, fill, log=lambda m: None, fill_start="grow", **FAST)
    grown.synthesize(seed=0, iterations=3)
    assert len(banks) == len(grown.scales) and all(b.sample is None for b in banks)
    assert plain == list(range(len(grown.scales)))


def test_an_edits_seconds_count_its_copied_blocks(monkeypatch):
    quilted = editing.quilt

    def slow(*args, **kw):
        time.sleep(0.3)
        return quilted(*args, **kw)

    monkeypatch.setattr(editing, "quilt", slow)
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[40:88, 40:88] = True
    editor = PatchEditor.repair(tiled(), fill, log=lambda m: None, fill_start="blocks", **FAST)
    result = editor.synthesize(seed=0, iterations=1)
    assert result.iterations == 1 and result.seconds >= 0.3


def test_the_default_copies_blocks_where_the_kept_pixels_hold_them_else_grows():
    img = tiled()
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[40:88, 40:88] = True
    assert PatchEditor.repair(img, fill, log=lambda m: None, **FAST).block == 32
    small = tiled(64)
    fill = torch.zeros(64, 64, dtype=torch.bool)
    fill[20:44, 20:44] = True
    said = []
    editor = PatchEditor.repair(small, fill, log=said.append, **FAST)
    assert editor.block is None and "copied blocks" not in editor.describe()
    assert any("grows from noise" in line for line in said)
    assert torch.equal(editor.synthesize(seed=0).image[0][:, ~fill], small[:, ~fill])


def test_blocks_refused_in_one_line_where_the_kept_pixels_hold_too_few():
    img = tiled(64)
    fill = torch.zeros(64, 64, dtype=torch.bool)
    fill[8:56, 8:56] = True  # a ring 8 px wide: no whole 28 px block
    with pytest.raises(UserError, match="too few whole 28 px blocks"):
        PatchEditor.repair(img, fill, log=lambda m: None, fill_start="blocks", **FAST)


def test_expand_copies_blocks_of_the_image():
    img = make("stripes", 64, seed=1)
    editor = PatchEditor.expand(img, (160, 160), log=lambda m: None, fill_start="blocks", **FAST)
    assert editor.block is not None
    out = editor.synthesize(seed=0).image[0]
    assert torch.equal(out[:, 48:112, 48:112], img)


def test_fill_start_on_the_command_line(tmp_path):
    image, mask = tmp_path / "wall.png", tmp_path / "hole.png"
    save_image(tiled(), image)
    hole = torch.zeros(3, 128, 128)
    hole[:, 40:88, 40:88] = 1
    save_image(hole, mask)
    out = tmp_path / "fixed.png"
    code, output = run([image, "--mask", mask, "--fill-start", "blocks", "-o", out, *QUICK])
    assert code == 0 and "copied blocks" in output, output
    assert '"fill_start": "blocks"' in out.with_suffix(".json").read_text()
    code, output = run([image, "--fill-start", "blocks", "-o", tmp_path / "x.png", *QUICK])
    assert code == 2 and "--fill-start: only --mask and --expand use it" in output
    code, output = run([image, "--mask", mask, "--fill-start", "tiles", "-o", out, *QUICK])
    assert code == 2 and "tiles" in output


# The blocks start of a plain synthesis (``--start``, optimize.patches.STARTS) ---------------

START_SIDE = round(START_BLOCK * 128)  # the blocks of a 128 px exemplar


def test_a_synthesis_started_from_blocks_continues_a_periodic_exemplar():
    ex = tiled(128, (24, 32))
    kw = dict(log=lambda m: None, **FAST)
    blocks = PatchSynthesizer([ex], start="blocks", **kw)
    assert blocks.start_block == START_SIDE and "copied blocks" in blocks.describe()
    out = blocks.synthesize(size=(160, 192), seed=0).image[0]
    assert blocks.engine_metadata()["start_block"] == START_SIDE
    grown = PatchSynthesizer([ex], start="noise", **kw)
    assert grown.start_block is None
    again = grown.synthesize(size=(160, 192), seed=0).image[0]

    def off_period(x):  # how far the output is from repeating with the exemplar's periods
        down = (x[:, 24:] - x[:, :-24]).abs().mean()
        across = (x[:, :, 32:] - x[:, :, :-32]).abs().mean()
        return (down + across) / 2

    # quilted blocks placed by their overlaps keep the period across the output; a pyramid
    # grown from noise does not (measured 0.003 against 0.116)
    assert off_period(out) < 0.3 * off_period(again), (off_period(out), off_period(again))


def test_a_lattice_start_lays_its_blocks_in_the_bond_s_phase():
    """The overlap alone does not fix a running bond's phase (its head joints are few of its
    pixels): quilted without ``shifts``, seeds 0-3 left 0, 0, 11 and 12 of 71-78 bricks off
    their length; a repeating exemplar's start quilts with them."""
    wall = running_bond(96, 156)  # bricks of 26 px, courses of 12
    synth = PatchSynthesizer([wall], log=lambda m: None, **FAST)
    assert synth.start_block == 32
    for seed in (2, 3):
        start = synth._quilt((144, 192), synth.start_block, torch.Generator().manual_seed(seed))
        lengths = brick_lengths(start[0])
        assert len(lengths) > 60 and all(abs(n - 26) <= 2 for n in lengths), lengths


def two_toned(floor: torch.Tensor) -> tuple[int, int]:
    """Of the tiles of a grain-free (3, H, W) grid of pale grey joints (``running_bond``
    with ``stagger`` 0), how many hold more than one colour, and how many there are."""
    grey = pale_joints(floor).float()
    cells = [floor[:, t:b, left:right] for t, b in between_joints(grey.mean(1))
             for left, right in between_joints(grey.mean(0))]  # fmt: skip
    return sum(float((c.amax((1, 2)) - c.amin((1, 2))).max()) > 0.02 for c in cells), len(cells)


def test_a_grid_s_start_cuts_along_its_joints_not_through_its_tiles():
    """Quarter-block overlaps (10 px) inside 14 px tiles: the cuts crossed tiles and joined
    two blocks' colours there (seeds 0-5: 17-38 of 100-121 tiles two-toned); overlaps past
    a period hold a whole joint, along which blocks in phase agree (none)."""
    floor = running_bond(96, 156, seed=1, course=14, brick=14, stagger=0, grain=0)
    shifts = lattice_shifts(floor)
    synth = PatchSynthesizer([floor], log=lambda m: None, **FAST)
    assert synth.start_block == 32 and lattice_overlap(shifts, 32) == 0.5
    # 26 px bricks: no overlap of 16 px holds one, and a wider one only cuts more of them
    assert lattice_overlap(lattice_shifts(running_bond(96, 156)), 32) == OVERLAP
    for seed in (0, 1):
        start = synth._quilt((160, 160), 32, torch.Generator().manual_seed(seed))[0]
        split, tiles = two_toned(start)
        assert tiles >= 100 and split == 0, (split, tiles)
        everything, g = torch.ones(160, 160, dtype=torch.bool), torch.Generator().manual_seed(seed)
        quarter = quilt(torch.zeros(3, 160, 160), everything, [floor], [torch.ones(96, 156) > 0],
                        32, g, blend=False, seams=LATTICE_SEAMS, heals=LATTICE_HEALS,
                        shifts=shifts, overlap=OVERLAP)  # fmt: skip
        assert two_toned(quarter)[0] > 10


def test_a_tiled_lattice_start_keeps_the_bond_across_the_wrap():
    """``--tile``'s periodic quilt refills its wrap-around bands in phase with both sides:
    tiled 2 x 2, seeds 0-2 left 0, 0 and 2 of about 300 bricks off their length (without
    the shifts 66, 5 and 7, and grey smears)."""
    synth = PatchSynthesizer([running_bond(96, 156)], log=lambda m: None, tile=True, **FAST)
    for seed in (0, 1):
        start = synth._quilt((130, 208), synth.start_block, torch.Generator().manual_seed(seed))
        tiled = start[0].repeat(1, 2, 2)
        lengths = brick_lengths(tiled)
        assert len(lengths) > 250 and all(abs(n - 26) <= 2 for n in lengths), lengths


def test_a_wall_s_repair_continues_the_bond_of_the_bricks_around_the_hole():
    """Bricks of 52 px against 32 px blocks: without the lattice's phase, 21 of the 55
    bricks in the courses the hole crosses came out too long or too short over seeds 0-3;
    drawn in phase among the blocks near the least colour error, 3 (all in seed 1)."""
    wall = running_bond(128, 208, seed=2, brick=52, course=16)
    hole = torch.zeros(128, 208, dtype=torch.bool)
    hole[40:88, 64:144] = True
    editor = PatchEditor.repair(wall, hole, log=lambda m: None, **FAST)
    assert editor.block == 32 and editor.ring_block is None  # a lattice's raster fill
    lengths = []
    for seed in range(4):
        filled = wall.clone()
        filled[(slice(None), *editor.window)] = editor.blocks(torch.Generator().manual_seed(seed))
        lengths += brick_lengths(filled[:, 32:98])  # the four courses the hole crosses
    assert len(lengths) >= 48 and sum(abs(n - 52) > 4 for n in lengths) <= 3, lengths


def test_auto_starts_from_blocks_on_a_lattice_only():
    kw = dict(log=lambda m: None, **FAST)
    stripes, cells = make("stripes", 128, seed=0), make("cells", 128, seed=0)
    quilted = PatchSynthesizer([stripes], **kw)  # the default: auto
    assert quilted.start_block == START_SIDE and not quilted.lattice  # no layout scales to project
    assert PatchSynthesizer([cells], **kw).start_block is None
    assert PatchSynthesizer([stripes], tile=True, **kw).start_block == START_SIDE  # quilted to wrap
    # a cable panel turned a little (as a knit photo may be): no lattice in its spectrum,
    # but it repeats, and blocks keep its leaves whole
    turned = TF.rotate(panel(), 6.0, interpolation=TF.InterpolationMode.BILINEAR)
    quilted = PatchSynthesizer([turned[:, 11:139, 6:134]], **kw)
    assert quilted.share < LATTICE_SHARE and quilted.repeat >= START_REPEAT
    assert quilted.start_block == START_SIDE
    meta = quilted.engine_metadata()
    assert meta["repeat_strength"] == round(quilted.repeat, 3) >= START_REPEAT
    with pytest.raises(UserError, match="use --start noise"):
        PatchSynthesizer([make("stripes", 80, seed=0)], start="blocks", **kw)  # 27 px blocks
    # edits and remakes keep their own starts
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[48:80, 48:80] = True
    assert PatchEditor.repair(stripes, fill, log=lambda m: None, **FAST).start_block is None


def test_start_on_the_command_line(tmp_path):
    image = tmp_path / "stripes.png"
    save_image(make("stripes", 128, seed=0), image)
    out = tmp_path / "out.png"
    code, output = run([image, "--start", "blocks", "--size", "144x160", "-o", out, *QUICK])
    assert code == 0, output
    assert (
        "quilted" in output
        and f'"start_block": {START_SIDE}' in out.with_suffix(".json").read_text()
    )
    tiled_out = tmp_path / "t.png"
    code, output = run([image, "--tile", "--size", "150x140", "-o", tiled_out, *QUICK])
    assert code == 0 and "quilted" in output, output
    assert "(it repeats: strength 0.82, lattice share 0.99)" in output  # why auto quilts
    # the stripes' period fitted to the output (losses.spectrum.lattice_fit), unless refused
    scaled = json.loads(tiled_out.with_suffix(".json").read_text())["lattice_scaled"]
    assert "the lattice scaled by" in output and scaled[0] != [1.0, 1.0], scaled
    # the wrap's jump is the interior's (measured 0.97; the same run without --tile 13.6)
    assert seam_ratio(load_image(tiled_out)[0]) < 2
    code, output = run([image, "--tile", "--no-fit-lattice", "-o", tmp_path / "n.png", *QUICK])
    assert code == 0 and "the lattice scaled" not in output, output
    code, output = run([image, "--no-fit-lattice", "-o", tmp_path / "f.png", *QUICK])
    assert code == 2 and "--fit-lattice: only --tile uses it" in output, output
    assert not (tmp_path / "f.png").exists()


def test_a_periodic_quilt_meets_itself_across_its_edges():
    ex = make("cells", 128, seed=0)
    every = [torch.ones(128, 128, dtype=torch.bool)]
    plain = quilt(torch.zeros(3, 144, 176), torch.ones(144, 176, dtype=torch.bool), [ex], every,
                  32, torch.Generator().manual_seed(0), blend=False)  # fmt: skip
    wrapped = quilt_periodic((144, 176), [ex], every, 32, torch.Generator().manual_seed(0))
    assert wrapped.shape == (3, 144, 176) and 0 <= wrapped.min() and wrapped.max() <= 1
    # the plain quilt's right edge is not its left's neighbour; the periodic one's is
    # (measured 0.89-1.29 against 8.5-10.9 over seeds 0-2)
    assert seam_ratio(wrapped) < 2 < seam_ratio(plain), (seam_ratio(wrapped), seam_ratio(plain))


def test_a_stack_started_from_blocks_stays_aligned():
    from optimize.stacks import StackSynthesizer

    albedo = make("stripes", 128, seed=0)  # a lattice: auto starts from blocks
    height = albedo.mean(0, keepdim=True)  # a function of the albedo, exactly
    stack = StackSynthesizer({"albedo": albedo, "height": height}, log=lambda m: None, **FAST)
    assert stack.start_block == START_SIDE
    maps = stack.split(stack.synthesize(size=(144, 160), seed=0).image)
    # the blocks copy every channel together, and the refinement keeps them together
    error = (maps["height"] - maps["albedo"].mean(0, keepdim=True)).abs().mean()
    assert error < 0.1 * height.std(), (error, height.std())  # measured 0.002 against 0.25


def wide_discs(seed: int = 0) -> torch.Tensor:
    """(3, 128, 128): 14 red discs of radius 10-14 px on white, wider than the 8 px overlap
    of 32 px blocks: a cut crosses a disc that only one block holds."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:128, 0:128]
    img = np.ones((3, 128, 128), np.float32)
    for _ in range(14):
        cy, cx, r = g.uniform(0, 128), g.uniform(0, 128), g.uniform(10, 14)
        img[1:, np.hypot(y - cy, x - cx) < r] = 0.2
    return torch.from_numpy(img)


def novel(source: torch.Tensor, **options) -> float:
    """The fraction of 5 px patches found nowhere in ``source`` (discs cut straight) in 192 px
    quilts of its 32 px blocks, summed over six seeds."""
    keys = F.unfold(source[None], 5)[0].T
    fill = torch.ones(192, 192, dtype=torch.bool)
    total = 0.0
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        out = quilt(torch.zeros(3, 192, 192), fill, [source], [fill[:128, :128]], 32, g,
                    blend=False, **options)  # fmt: skip
        queries = F.unfold(out[None], 5)[0].T
        total += float((torch.cdist(queries, keys).min(1).values > 0.5).float().mean())
    return total


def test_blocks_with_cheaper_cuts_cut_fewer_discs():
    """The block of SEAMS whose cuts cost least leaves fewer patches found nowhere in the
    exemplar than a block drawn at random."""
    source = wide_discs()
    assert SEAMS > 1 and novel(source, seams=SEAMS, heals=0) < 0.9 * novel(source, seams=1, heals=0)


def test_healing_the_worst_seams_cuts_fewer_discs():
    """Re-pasting blocks over the seams that cost most leaves fewer patches found nowhere in
    the exemplar than the cheapest cuts alone."""
    source = wide_discs()
    assert HEALS > 0 and novel(source) < 0.8 * novel(source, heals=0)


def test_seam_error_is_zero_inside_a_block_and_the_mismatch_across_a_cut():
    source = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    image, origin = source[:, :8, :8].clone(), torch.zeros(3, 8, 8, dtype=torch.long)
    origin[1], origin[2] = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    assert seam_error(image, origin, [source]).abs().max() == 0
    # the right half copied from 8 px further right: a vertical cut between columns 3 and 4
    image[:, :, 4:], origin[2, :, 4:] = source[:, :8, 12:16], origin[2, :, 4:] + 8
    error = seam_error(image, origin, [source])
    left = (image[:, :, 4] - source[:, :8, 4]).pow(2).sum(0)
    right = (image[:, :, 3] - source[:, :8, 11]).pow(2).sum(0)
    assert torch.allclose(error[:, 3], left) and torch.allclose(error[:, 4], right)
    assert error[:, [0, 1, 2, 5, 6, 7]].abs().max() == 0
    # a pixel that was not copied (a kept one) has none; its copied neighbour counts it
    origin[:, :, 0], image[:, :, 0] = -1, 0.5
    assert seam_error(image, origin, [source])[:, 0].abs().max() == 0
    assert seam_error(image, origin, [source])[:, 1].abs().min() > 0


def test_healing_lowers_the_seam_error_and_never_writes_a_kept_pixel():
    source = wide_discs(1)
    fill = torch.zeros(160, 160, dtype=torch.bool)
    fill[16:144, 16:144] = True
    kept = torch.rand(3, 160, 160, generator=torch.Generator().manual_seed(0))
    canvas = torch.where(fill, torch.zeros(3, 1, 1), kept)
    errors = []
    for tries in (0, 100):
        out = canvas.clone()
        origin = torch.full((3, 160, 160), -1, dtype=torch.long)
        emphasis = torch.ones(160, 160)
        g = torch.Generator().manual_seed(0)
        paste = _Paste(out, origin, ~fill, fill, [source], [torch.ones(128, 128).bool()],
                       emphasis, 0.0, g)  # fmt: skip
        paste(fill, 32, True, candidates=SEAMS)
        if tries:
            quilting._heal(paste, 32, tries, SEAMS, fill)
        assert torch.equal(out[:, ~fill], canvas[:, ~fill])
        assert (origin[0][fill] == 0).all() and (origin[0][~fill] == -1).all()
        # each pixel's origin holds the source pixel it shows
        ys, xs = origin[1][fill], origin[2][fill]
        assert torch.equal(out[:, fill], source[:, ys, xs])
        errors.append(float(seam_error(out, origin, [source]).sum()))
    assert errors[1] < 0.9 * errors[0]
