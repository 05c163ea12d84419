"""The patch objective (``losses.patches``) and its coarse-to-fine engine
(``optimize.patches``), the default of ``synth.py``."""

import json

import pytest
import torch
from typer.testing import CliRunner

import synth
from data.errors import UserError
from data.procedural import make
from losses import patches
from losses.nearest import sampled_patches
from losses.patches import patch_directions, patch_sliced_wasserstein, project_patches
from optimize.patches import PatchSynthesizer, pyramid_scales, upsample

EXACT = "donot_use_mm_for_euclid_dist"  # torch.cdist without the matmul shortcut's rounding
QUICK = {"coarse_iterations": 30, "iterations": 10, "final_fraction": 1}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_pyramid_starts_at_the_coarsest_side_and_ends_at_full_scale():
    scales = pyramid_scales(427, 32, 0.75)
    assert scales[-1] == 1 and all(
        b / a == pytest.approx(1 / 0.75) for a, b in zip(scales, scales[1:], strict=False)
    )
    assert 32 * 0.75 < 427 * scales[0] <= 32 / 0.75 * 1.0001
    assert pyramid_scales(30, 32, 0.75) == [1.0]


def test_patch_projections_cover_inner_or_wrapped_patches():
    img = torch.rand(1, 3, 20, 17, generator=gen())
    d = patch_directions(3, 5, 8, gen())
    assert d.shape == (8, 3, 5, 5) and torch.allclose(d.flatten(1).norm(dim=1), torch.ones(8))
    assert project_patches(img, d, circular=False).shape == (1, 8, 16 * 13)
    assert project_patches(img, d, circular=True).shape == (1, 8, 20 * 17)


def test_patch_distance_sees_patches_not_just_colours():
    stripes = make("stripes", 48, seed=0)[None]
    d = patch_directions(3, 7, 32, gen())
    same = patch_sliced_wasserstein(stripes, [stripes], d, False, gen())
    # The same pixels in random places: equal colour histogram, no stripes left.
    order = torch.randperm(48 * 48, generator=gen(1))
    shuffled = stripes.flatten(2)[..., order].view_as(stripes)
    other = patch_sliced_wasserstein(shuffled, [stripes], d, False, gen())
    assert same < 1e-10 and other > 1e-4
    # A random subset of the output's patches samples the same distribution.
    subset = patch_sliced_wasserstein(stripes, [stripes], d, False, gen(), max_patches=400)
    subset_other = patch_sliced_wasserstein(shuffled, [stripes], d, False, gen(), max_patches=400)
    assert subset < 0.1 * other and subset_other > 0.5 * other
    # A periodic output's wrapped patches do not change when it is rolled; inner ones do.
    tile = torch.rand(1, 3, 24, 24, generator=gen(2))
    rolled = tile.roll((5, 7), dims=(2, 3))
    a = patch_sliced_wasserstein(tile, [stripes], d, True, gen())
    b = patch_sliced_wasserstein(rolled, [stripes], d, True, gen())
    c = patch_sliced_wasserstein(rolled, [stripes], d, False, gen())
    d_ = patch_sliced_wasserstein(tile, [stripes], d, False, gen())
    assert torch.isclose(a, b, rtol=1e-5) and not torch.isclose(c, d_, rtol=1e-3)


def test_periodic_upsampling_commutes_with_rolls():
    x = torch.rand(1, 3, 12, 10, generator=gen())
    up = upsample(x, (24, 20), periodic=True)
    rolled = upsample(x.roll((1, 1), dims=(2, 3)), (24, 20), periodic=True)
    assert torch.allclose(rolled, up.roll((2, 2), dims=(2, 3)), atol=1e-5)
    inner = torch.nn.functional.interpolate(x, size=(24, 20), mode="bilinear")
    assert torch.allclose(up[..., 4:-4, 4:-4], inner[..., 4:-4, 4:-4], atol=1e-5)


@pytest.fixture
def stripes():
    return make("stripes", 64, seed=0)


def test_synthesis_matches_patches_deterministically(stripes):
    synth_ = PatchSynthesizer(stripes, log=lambda m: None, coarsest=16, **QUICK)
    # Coarse steps where the exemplar's side is at most 3.2 x 16 px: 20, 27, 36, 48, not 64.
    assert synth_.level_iterations((64, 80)) == [30, 30, 30, 30, 10]
    assert synth_.level_iterations((640, 800)) == synth_.level_iterations((64, 80))
    start = synth_.synthesize(size=(64, 80), seed=1, iterations=0).image
    result = synth_.synthesize(size=(64, 80), seed=1)
    assert result.image.shape == (1, 3, 64, 80) and result.iterations == 130
    assert 0 <= result.image.min() and result.image.max() <= 1
    d = patch_directions(3, 7, 64, gen(5))
    before = patch_sliced_wasserstein(start, [stripes[None]], d, False, gen())
    after = patch_sliced_wasserstein(result.image, [stripes[None]], d, False, gen())
    assert after < 0.2 * before
    again = synth_.synthesize(size=(64, 80), seed=1).image
    assert torch.equal(again, result.image)
    assert not torch.equal(synth_.synthesize(size=(64, 80), seed=2).image, result.image)


def test_a_start_refined_from_a_middle_scale_keeps_its_layout(stripes):
    """``init`` with ``init_scale``: downscaled to the first scale of at least it, refined
    there and at every finer scale (generate mode's refinement of a sample)."""
    synth_ = PatchSynthesizer(stripes, log=lambda m: None, coarsest=16, **QUICK)
    last = len(synth_.scales) - 1
    assert synth_.levels_from(1.0) == [last]
    levels = synth_.levels_from(0.5)
    assert len(levels) > 1 and levels[-1] == last and synth_.scales[levels[0]] >= 0.5
    assert synth_.scales[levels[0] - 1] < 0.5
    init = stripes.roll(9, dims=-1)[:, :48, :56]  # a layout no noise start would draw
    refined = synth_.synthesize(seed=1, iterations=4, init=init, init_scale=0.5)
    assert refined.image.shape == (1, 3, 48, 56) and refined.iterations == 4 * len(levels)
    fresh = synth_.synthesize(size=(48, 56), seed=1).image
    assert (refined.image[0] - init).abs().mean() < 0.5 * (fresh[0] - init).abs().mean()
    with pytest.raises(UserError, match=r"in \(0, 1\]"):
        synth_.synthesize(init=init, init_scale=0)


def test_tiled_output_wraps_without_a_seam(stripes):
    synth_ = PatchSynthesizer(stripes, log=lambda m: None, tile=True, **QUICK)
    x = synth_.synthesize(size=(64, 64), seed=0).image[0]
    inner = (x[:, :, 1:] - x[:, :, :-1]).abs().mean()
    seam = (x[:, :, 0] - x[:, :, -1]).abs().mean()
    assert seam < 1.5 * inner


def test_ctrl_c_returns_the_image_so_far(stripes):
    synth_ = PatchSynthesizer(stripes, log=lambda m: None, **QUICK)

    def stop(level, step, x, loss):
        if level == 1 and step == 3:
            raise KeyboardInterrupt

    result = synth_.synthesize(size=(48, 48), on_iter=stop)
    assert result.interrupted and result.iterations == 33
    # Stopped at a coarse scale, the image still has the size asked for, and says so.
    assert result.image.shape == (1, 3, 48, 48) and result.stopped_at == (36, 36)
    assert 0 <= result.image.min() <= result.image.max() <= 1


def test_ctrl_c_at_a_coarse_level_of_the_features_engine_keeps_the_size(stripes):
    from optimize.features import TextureSynthesizer

    synth_ = TextureSynthesizer(
        stripes, backbone="random-tiny", octaves=1, levels=2, log=lambda m: None
    )

    def stop(level, it, x, loss):
        raise KeyboardInterrupt

    result = synth_.synthesize(size=(40, 40), iterations=5, on_iter=stop)
    assert result.interrupted and result.stopped_at == (20, 20)
    assert result.image.shape == (1, 3, 40, 40)


def test_refuses_what_it_cannot_do(stripes):
    with pytest.raises(UserError, match="side of at least 14 px"):
        PatchSynthesizer(stripes[:, :10, :10], log=lambda m: None)
    with pytest.raises(UserError, match="pyramid-factor"):
        PatchSynthesizer(stripes, log=lambda m: None, pyramid_factor=1.0)
    with pytest.raises(UserError, match="smaller than one patch"):
        PatchSynthesizer(stripes, log=lambda m: None).synthesize(size=(5, 40))


def test_default_command_uses_the_patch_pyramid(exemplar_path, tmp_path):
    out = tmp_path / "out.png"
    args = [exemplar_path, "-o", out, "--coarse-iterations", "20", "--iterations", "5"]
    result = CliRunner().invoke(synth.app, [str(a) for a in [*args, "--no-progress"]])
    assert result.exit_code == 0, result.output
    assert "objective: pixel patches 7x7" in result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["objective"] == "patches" and meta["backbone"] is None
    assert meta["iterations"] == 60 and meta["losses"]["patches"] > 0
    # A backbone option selects the features objective, and says so; with the patches
    # objective asked for explicitly, it is refused rather than ignored.
    feats = [str(exemplar_path), "-o", str(out), "--overwrite", "--no-progress"]
    tiny = ["--backbone", "random-tiny", "--octaves", "1", "--iterations", "2"]
    ok = CliRunner().invoke(synth.app, [*feats, *tiny])
    assert ok.exit_code == 0, ok.output
    assert "--backbone, --octaves: using the features objective (autocorr_pyramid" in ok.output
    assert json.loads(out.with_suffix(".json").read_text())["config"]["objective"] == "features"
    bad = CliRunner().invoke(synth.app, [*feats, "--objective", "patches", "--layers", "pool1"])
    assert bad.exit_code == 2 and "--layers: not used by the patches objective" in bad.output
    for args, words in [(["--lr", "nan"], "finite"), (["--pyramid-factor", "1.5"], "between")]:
        bad = CliRunner().invoke(synth.app, [*feats, *args])
        assert bad.exit_code == 2 and words in bad.output, bad.output


def test_sampled_patches_are_real_and_reach_every_pixel():
    img = torch.rand(1, 3, 40, 37, generator=gen(3), requires_grad=True)
    d = patch_directions(3, 5, 8, gen())
    everything = project_patches(img, d, circular=False)[0].T  # (N, D), N = 36 x 33
    sample = patches.project_sampled_patches(img, d, False, 200, gen(4))
    assert 100 <= sample.shape[-1] <= 200  # a stride-3 grid: N / 4 > 200 >= N / 9
    nearest = (sample[0].T[:, None] - everything[None]).abs().amax(-1).amin(1)
    assert nearest.max() < 1e-5  # every sampled projection is one of a real patch
    sample.sum().backward()
    inner = img.grad[..., 4:-4, 4:-4].abs().sum(1)
    assert (inner > 0).all()  # every inner pixel lies in a sampled patch
    assert not torch.equal(sample, patches.project_sampled_patches(img, d, False, 200, gen(5)))
    # The exemplar's independent sample: real patches too, all of them when few.
    ex = torch.rand(1, 3, 30, 40, generator=gen(5))
    ex_all = project_patches(ex, d, circular=False)[0].T
    drawn = patches.project_random_patches(ex, d, 10, gen(6))[0].T
    assert (drawn[:, None] - ex_all[None]).abs().amax(-1).amin(1).max() < 1e-5
    assert patches.project_random_patches(ex, d, 10**6, gen(6)).shape[-1] == ex_all.shape[0]


def test_direction_bank_quantiles_are_exact_and_renewed():
    ex = torch.rand(1, 3, 24, 24, generator=gen(7))
    bank = patches.DirectionBank([ex], patch=5, size=16, refresh=3, quantiles=10**6)
    g = gen(8)
    d, q = bank.draw(4, g)
    assert d.shape == (4, 3, 5, 5) and q.shape == (1, 4, 20 * 20)
    assert torch.allclose(q, project_patches(ex, d, False).sort(dim=-1).values, atol=1e-5)
    first = bank.directions
    bank.draw(4, g), bank.draw(4, g)
    assert bank.directions is first  # three draws from one bank
    bank.draw(4, g)
    assert bank.directions is not first


def test_a_large_exemplars_quantiles_come_from_a_fixed_sample_of_its_patches():
    ex = make("cells", 64, seed=1)[None]  # 58 x 58 = 3364 patches of 7 x 7
    d = patch_directions(3, 7, 8, gen(9))
    exact = patches.exemplar_quantiles([ex], d, 10**6)
    assert torch.equal(patches.exemplar_quantiles([ex], d, 10**6, limit=3364), exact)
    sampled = patches.exemplar_quantiles([ex], d, 10**6, limit=1000)
    assert sampled.shape == (1, 8, 1000)
    assert torch.equal(patches.exemplar_quantiles([ex], d, 10**6, limit=1000), sampled)
    # the sample's quantiles are the exact ones' to a few hundredths of their spread
    at = torch.linspace(0, 3363, 1000).round().long()
    gap = (sampled - exact[..., at]).abs().mean(-1) / exact.std(-1)
    assert gap.max() < 0.05
    # each sampled patch is one of the exemplar's, counted once; valid ones only
    unfolded = torch.nn.functional.unfold(ex, 7)[0].T
    assert torch.equal(sampled_patches([ex], 7, 10**6), unfolded)
    noise = torch.rand(1, 3, 30, 30, generator=gen(10))  # every patch distinct
    valid = torch.arange(24 * 24) % 3 == 0
    drawn = sampled_patches([noise, ex], 7, 500, [valid, None])
    assert len(torch.unique(drawn, dim=0)) == 500
    mine = torch.cat([torch.nn.functional.unfold(noise, 7)[0].T[valid], unfolded])
    assert torch.cdist(drawn, mine, compute_mode=EXACT).amin(1).max() < 1e-5
    assert (
        torch.cdist(
            drawn, torch.nn.functional.unfold(noise, 7)[0].T[~valid], compute_mode=EXACT
        ).amin()
        > 1e-3
    )


def test_argsort_rows_sorts_negatives_zeros_and_ties():
    values = torch.tensor([[0.5, -2.0, 0.0, -0.0, 3.0, -1e-30, 0.5, float("inf"), -float("inf")]])
    order = patches.argsort_rows(values)
    assert torch.equal(values.gather(-1, order), values.sort(dim=-1).values)
    rows = torch.randn(4, 1000, generator=gen(9))
    assert torch.equal(patches.argsort_rows(rows), rows.argsort(dim=-1, stable=True))


def test_nearest_projections_bring_the_output_to_exemplar_patches():
    # The distribution match alone leaves patches that no exemplar patch resembles (open
    # walls, blends of two cells); the projections replace them, so the mean distance from an
    # output patch to its nearest exemplar patch falls.
    from losses.nearest import PatchIndex

    cells = make("cells", 64, seed=3)
    index = PatchIndex([cells[None]], 7)

    def gap(img):
        queries = torch.nn.functional.unfold(img, 7, stride=3)[0].T
        return torch.cdist(queries, index.patches).min(1).values.mean()

    def run(k):
        synth_ = PatchSynthesizer(cells, log=lambda m: None, nearest_iterations=k, **QUICK)
        return synth_.synthesize(size=(64, 64), seed=1).image

    plain, projected = run(0), run(3)
    assert gap(projected) < 0.85 * gap(plain)  # measured 0.74
    assert torch.equal(run(3), projected)  # still the same bytes for the same seed


def test_the_fine_scales_ramp_down_to_the_final_fraction():
    # side 100: scales 16 .. 100 px by 0.75; those up to 3.2 x 16 px set the layout
    def synth_(**kw):
        return PatchSynthesizer(make("stripes", 100, seed=0), log=lambda m: None, coarsest=16, **kw)

    steps = synth_(coarse_iterations=50, iterations=40, final_fraction=0.25).level_iterations()
    layout = sum(s * 100 <= 3.2 * 16 for s in synth_().scales)
    assert steps[:layout] == [50] * layout and steps[-1] == 10
    fine = steps[layout:]
    assert len(fine) >= 3 and fine == sorted(fine, reverse=True) and fine[0] < 40
    full = synth_(iterations=40, final_fraction=1).level_iterations()
    assert full[layout:] == [40] * len(fine)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_a_final_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(UserError, match="--final-fraction must lie in"):
        PatchSynthesizer(make("stripes", 64, seed=0), log=lambda m: None, final_fraction=fraction)


def test_colour_distance_is_a_share_of_the_colour_variance():
    dots = make("dots", 96, seed=1)[None]
    ground = dots.view(3, -1).median(1).values.view(1, 3, 1, 1)
    flat = dots.mean((2, 3), keepdim=True).expand_as(dots)
    assert patches.colour_distance(dots.roll((30, 41), (2, 3)), [dots]) < 1e-6
    assert patches.colour_distance(flat, [dots]) == pytest.approx(1, abs=0.05)
    emptied = [dots.clone() for _ in range(3)]
    for k, img in enumerate(emptied):
        img[..., :, : 24 * (k + 1)] = ground  # a quarter, half, three quarters of ground
    gaps = [patches.colour_distance(img, [dots]) for img in emptied]
    assert 0 < gaps[0] < gaps[1] < gaps[2], gaps


def test_large_patch_projections_that_erase_elements_are_undone():
    # Procedural dots on plain ground: a projection that replaced the dots of most of the
    # output by ground (session 7's empty region) is refused, one that moves them is not.
    dots = make("dots", 96, seed=1)
    synth_ = PatchSynthesizer(dots, log=lambda m: None, **QUICK)
    level = len(synth_.scales) - 1
    before = dots[None].roll((30, 41), (2, 3))
    ground = before.clone()
    ground[..., :, 24:] = dots.view(3, -1).median(1).values.view(1, 3, 1, 1)
    assert synth_._erases(before, ground, level)
    assert not synth_._erases(before, dots[None].flip(-1), level)
    assert not synth_._erases(ground, before, level)  # putting dots back is no erasure


def test_the_spectrum_projection_gives_a_drifting_lattice_one_period():
    # Nearest patches join locally, so stripes whose period drifts from 6 to 11 px stay
    # drifting; the exemplar's Fourier modulus (period 8) puts their power back in one peak.
    x = torch.arange(96.0)
    exemplar = (0.5 + 0.4 * torch.sin(2 * torch.pi * x[:64] / 8)).expand(3, 64, 64)
    phase = 2 * torch.pi * torch.cumsum(1 / torch.linspace(6, 11, 96), 0)
    drifting = (0.5 + 0.4 * torch.sin(phase)).expand(1, 3, 96, 96).clone()

    def peak_share(spectrum_projection):
        synth_ = PatchSynthesizer(
            exemplar, log=lambda m: None, coarsest=64, nearest_iterations=1,
            spectrum_projection=spectrum_projection,
        )  # fmt: skip
        assert synth_._spectrum_at(0) == (spectrum_projection == "on")  # one, a layout scale
        y = drifting.clone()
        synth_._project(y, 0)
        power = torch.fft.rfft(y[0, 0] - y[0, 0].mean(), dim=1).abs().pow(2).sum(0)
        return float(power[96 // 8] / power.sum())

    plain, projected = peak_share("off"), peak_share("on")
    assert plain < 0.2 and projected > 0.5  # measured 0.09 and 0.68


def test_repair_leaves_the_spectrum_projection_out():
    from optimize.editing import PatchEditor

    img = make("stripes", 64, seed=0)
    hole = torch.zeros(64, 64, dtype=torch.bool)
    hole[20:40, 20:40] = True
    editor = PatchEditor.repair(img, hole, log=lambda m: None, spectrum_projection="on")
    assert not any(editor._spectrum_at(k) for k in range(len(editor.scales)))


def test_the_spectrum_projection_keeps_the_lowest_frequencies_of_the_image():
    from losses.spectrum import spectrum_projection, spectrum_target

    x = torch.rand(1, 3, 32, 40, generator=gen(1))
    target = spectrum_target([torch.rand(3, 24, 24, generator=gen(2))], (32, 40))
    out = spectrum_projection(x, target, lowest=0.1)
    spec, before = torch.fft.fft2(out), torch.fft.fft2(x)
    radius = (torch.fft.fftfreq(32).view(-1, 1) ** 2 + torch.fft.fftfreq(40) ** 2).sqrt()
    low = radius < 0.1
    assert torch.allclose(spec[..., low], before[..., low], atol=1e-3)
    assert torch.allclose(spec[..., ~low].abs(), target[..., ~low].abs()[None], atol=1e-3)


def test_the_spectrum_projection_without_nearest_projections_is_refused():
    with pytest.raises(UserError, match="--nearest-iterations"):
        PatchSynthesizer(make("stripes", 64), spectrum_projection="on", nearest_iterations=0)


def test_lattice_share_finds_peaks_not_grain_fibres_or_scattered_cells():
    from losses.spectrum import lattice_share

    y, x = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    grid = 0.5 + 0.2 * torch.sin(2 * torch.pi * x / 12) + 0.2 * torch.sin(2 * torch.pi * y / 8)
    noise = torch.rand(3, 96, 96, generator=gen(0))
    # fibres: noise smoothed along x, a ridge of power along one frequency axis
    along = torch.exp(-((torch.fft.fftfreq(96) / 0.03) ** 2))
    fibres = torch.fft.ifft2(torch.fft.fft2(noise) * along).real + 0.05 * noise
    shares = [lattice_share(u) for u in (grid.expand(3, 96, 96), noise, fibres, make("cells", 96))]
    assert shares[0] > 0.9 and max(shares[1:]) < 0.1


def test_lattice_fit_finds_the_scales_that_fit_whole_periods():
    from losses.spectrum import lattice_fit

    # lines every 20 px down and every 16 px across; an output of 100 x 100 holds 5 of the
    # first and 6.25 of the second: scaled 1.042 across, 6 fit
    y, x = torch.meshgrid(torch.arange(120.0), torch.arange(128.0), indexing="ij")
    grid = 0.5 + 0.2 * torch.cos(2 * torch.pi * y / 20) + 0.2 * torch.cos(2 * torch.pi * x / 16)
    sy, sx = lattice_fit(grid.expand(3, -1, -1), (100, 100))
    assert abs(sy - 1) < 0.003 and abs(sx - 6.25 / 6) < 0.003, (sy, sx)
    # of two whole numbers within reach, the nearer: 150 px hold 9.375 -> 9 (1.042), not 10
    assert lattice_fit(grid.expand(3, -1, -1), (100, 150))[1] == pytest.approx(9.375 / 9, abs=0.003)
    # out of reach (at most 2%): the least miss within it, 1.02 for 6.25 periods
    assert lattice_fit(grid.expand(3, -1, -1), (100, 100), largest=0.02)[1] == pytest.approx(1.02)
    assert lattice_fit(torch.full((3, 64, 64), 0.5), (100, 100)) == (1.0, 1.0)  # no peaks


def test_auto_spectrum_projection_is_on_for_a_lattice_only():
    messages = []
    lattice = PatchSynthesizer(make("stripes", 64), log=messages.append)
    assert lattice.config.spectrum_projection == "auto" and lattice.lattice
    assert any(m.startswith("lattice:") for m in messages)
    assert not PatchSynthesizer(make("cells", 64), log=lambda m: None).lattice
    assert not PatchSynthesizer(make("stripes", 64), nearest_iterations=0, log=print).lattice
    off = PatchSynthesizer(make("stripes", 64), spectrum_projection="off", log=print)
    assert not off.lattice


def test_remake_leaves_the_lattice_mode_out():
    from optimize.remake import PatchRemaker

    remaker = PatchRemaker(make("stripes", 64), make("cells", 64), log=lambda m: None)
    assert not remaker.lattice


def test_a_spectrum_projection_mode_must_be_named():
    with pytest.raises(UserError, match="--spectrum-projection"):
        PatchSynthesizer(make("stripes", 64), spectrum_projection=True)


def test_tiles_tells_a_tiling_exemplar_from_a_crop():
    from losses.patches import tiles

    kinds = ("cells", "dots", "stripes")
    assert all(tiles(make(kind, 128)) for kind in kinds)
    assert not any(tiles(make(kind, 160)[:, 10:138, 20:148]) for kind in kinds)
    assert not any(tiles(make(kind, 128).roll(40, -1)[..., :100]) for kind in kinds)


def test_wrapped_patches_are_the_periodic_images_patches():
    from losses.patches import wrapped

    img = torch.rand(1, 3, 12, 10, generator=gen())
    d = patch_directions(3, 5, 4, gen(1))
    inner = project_patches(wrapped(img, 5), d, circular=False)
    assert torch.allclose(inner, project_patches(img, d, circular=True))


def test_a_periodic_downscale_tiles_and_reads_across_the_edges():
    from losses.patches import downscaled

    img = make("cells", 64)[None]
    small = downscaled(img, 0.5, 7, periodic=True)
    twice = downscaled(img.repeat(1, 1, 2, 2), 0.5, 7, periodic=True)
    assert torch.allclose(twice, small.repeat(1, 1, 2, 2), atol=1e-5)
    plain = downscaled(img, 0.5, 7)
    assert torch.allclose(small[..., 8:-8, 8:-8], plain[..., 8:-8, 8:-8], atol=1e-5)
    assert not torch.allclose(small[..., 0, :], plain[..., 0, :], atol=1e-3)


def test_a_tiling_exemplar_counts_its_patches_across_the_edges():
    messages = []
    tiling = PatchSynthesizer(make("cells", 64), log=messages.append)
    assert tiling.config.exemplar_wraps == "auto" and tiling.wraps
    assert any(m.startswith("the exemplar tiles") for m in messages)
    h, w = tiling._pyramid[0][0].shape[-2:]
    assert tiling._index(0, 7).patches.shape[0] == h * w  # every position, none lost to edges
    crop = make("cells", 96)[:, 5:75, 9:79]
    assert not PatchSynthesizer(crop, log=lambda m: None).wraps
    assert not PatchSynthesizer(make("cells", 64), exemplar_wraps="off", log=print).wraps
    assert PatchSynthesizer(crop, exemplar_wraps="on", log=print).wraps
    with pytest.raises(UserError, match="--exemplar-wraps"):
        PatchSynthesizer(make("cells", 64), exemplar_wraps="maybe")


def test_an_edit_never_takes_its_canvas_as_periodic():
    from optimize.editing import PatchEditor

    img = make("cells", 64)
    hole = torch.zeros(64, 64, dtype=torch.bool)
    hole[20:40, 20:40] = True
    editor = PatchEditor.repair(img, hole, log=lambda m: None, exemplar_wraps="on")
    assert not editor.wraps


def test_the_training_loss_of_a_tiling_exemplar_counts_its_patches_across_the_edges():
    from configs import TrainConfig, default_config
    from losses.objective import generator_objective
    from losses.patches import PatchPyramidLoss

    exemplar = make("cells", 64)
    cfg = default_config(
        TrainConfig, objective="patches", coarsest=16, projections=16, max_patches=0
    )
    # a periodic output (circular training) that is the exemplar shifted: its patches are the
    # periodic exemplar's, so only the loss that counts those across the edges is ~0
    shifted = exemplar.roll((20, 30), (-2, -1))[None]
    plain = PatchPyramidLoss([exemplar], cfg, circular=True)
    wrapping = PatchPyramidLoss([exemplar], cfg, circular=True, wraps=True)
    assert float(wrapping(shifted)["total"]) < 0.05 * float(plain(shifted)["total"])
    # exemplar_wraps "auto" (the default) decides it, and the run says so
    _, described = generator_objective(cfg, [exemplar], None)
    assert "across the edges" in described
    _, described = generator_objective(cfg, [exemplar[:, 5:60, 3:50]], None)
    assert "across the edges" not in described
    off = default_config(TrainConfig, objective="patches", coarsest=16, exemplar_wraps="off")
    assert "across the edges" not in generator_objective(off, [exemplar], None)[1]
