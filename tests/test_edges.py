"""The editing benchmark's edge judge (bench.edges) and its command (bench.edits)."""

import torch
from typer.testing import CliRunner

from bench import edits
from bench.edges import BANDS, distance_bands, edge_score
from data.procedural import make
from optimize.quilting import quilt


def cells_and_hole():
    truth = make("cells", 128, seed=3)
    fill = torch.zeros(128, 128, dtype=torch.bool)
    fill[32:96, 32:96] = True
    return truth, fill


def test_bands_count_the_distance_from_the_kept_pixels():
    fill = torch.zeros(40, 40, dtype=torch.bool)
    fill[10:30, 10:30] = True
    bands = distance_bands(fill)
    assert len(bands) == len(BANDS)
    assert bands[0][10, 15] and bands[0][12, 15] and not bands[0][13, 15]  # 1 and 3 px
    assert bands[1][13, 19] and bands[1][16, 19] and not bands[1][17, 19]  # 4 and 7 px
    assert bands[2][19, 19] and not bands[3].any()  # 10 px; the hole is 20 px across
    assert not any(b[~fill].any() for b in bands)  # kept pixels are in no band
    fill[0:8, 0:8] = True  # a hole at the corner: pixels within 3 of the border are left out
    assert not distance_bands(fill)[0][0:3, 0:8].any() and distance_bands(fill)[0][3, 5]


def test_real_pixels_score_one_and_a_cut_or_a_glow_score_more():
    truth, fill = cells_and_hole()
    real = edge_score(truth, truth, fill)
    assert real.worst == 1.0 and all(v == 1.0 for v in real.ratios[:4])
    # the true texture from elsewhere: real patches, but cut where they meet the ring
    shifted = torch.where(fill, truth.roll((40, 40), (-2, -1)), truth)
    assert edge_score(shifted, truth, fill).ratios[0] > 1.5
    # a glow: the fill fades to white towards the ring (what the blend spread)
    near = distance_bands(fill)
    glow = truth.clone()
    for k, band in enumerate(near[:3]):
        glow[:, band] = 0.5 * glow[:, band] + 0.5 * (1 - 0.2 * k)
    score = edge_score(glow, truth, fill)
    assert score.worst == score.ratios[0] > 2 and min(score.ratios[:3]) > 1.2


def test_blocks_pasted_without_the_blend_are_seen_cut_at_the_edge():
    # the hole cuts the cells' walls; the blocks, picked by their whole overlap, step there
    truth, fill = cells_and_hole()
    canvas = torch.where(fill, torch.full((3, 1, 1), 0.5), truth)
    g = torch.Generator().manual_seed(0)
    pasted = quilt(canvas, fill, [canvas], [~fill], 16, g, blend=False)
    assert edge_score(pasted, truth, fill).ratios[0] > 1.2  # cut at the edge


def test_an_unknown_case_or_a_bad_seed_is_one_line():
    result = CliRunner().invoke(edits.app, ["--cases", "nope"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: unknown case nope; choose from {', '.join(edits.CASES)}"
    ]
    result = CliRunner().invoke(edits.app, ["--seeds", "x"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --seeds expects comma-separated int values, got 'x'"
