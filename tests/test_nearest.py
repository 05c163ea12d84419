"""Nearest-neighbour patch projection (losses/nearest.py)."""

import pytest
import torch
import torch.nn.functional as F

from losses.nearest import PatchIndex, nearest_weighted, project_boundary, project_to_nearest


def _image(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_nearest_is_the_brute_force_argmin():
    index = PatchIndex([_image(20, 24)], 5)
    queries = torch.rand(300, 75, generator=torch.Generator().manual_seed(1))
    expected = torch.cdist(queries, index.patches).argmin(1)
    assert torch.equal(index.nearest(queries), expected)


def test_weighted_nearest_is_the_brute_force_weighted_argmin():
    g = torch.Generator().manual_seed(2)
    patches, queries = torch.rand(500, 12, generator=g), torch.rand(70, 12, generator=g)
    weights = torch.rand(70, 12, generator=g) * (torch.rand(70, 12, generator=g) > 0.3)
    brute = ((queries[:, None] - patches[None]).pow(2) * weights[:, None]).sum(-1).argmin(1)
    assert torch.equal(nearest_weighted(queries, weights, patches), brute)
    ones = torch.ones_like(queries)
    assert torch.equal(
        nearest_weighted(queries, ones, patches), torch.cdist(queries, patches).argmin(1)
    )


@pytest.mark.parametrize("stride", [1, 2])
def test_the_boundary_projection_continues_the_kept_pixels_and_touches_only_the_band(stride):
    exemplar = _image(40, 40)
    fill = torch.zeros(1, 1, 40, 40, dtype=torch.bool)
    fill[..., 12:30, 10:28] = True
    damaged = torch.where(fill, _image(40, 40, 7), exemplar)
    index = PatchIndex([exemplar], 5)
    out = project_boundary(damaged, fill, index.patches, 5, stride, fill_weight=0.0)
    torch.testing.assert_close(out[~fill.expand_as(out)], exemplar[~fill.expand_as(out)])

    def band(depth):  # the filled pixels within ``depth`` of the hole's edge
        inner = torch.zeros_like(fill)
        inner[..., 12 + depth : 30 - depth, 10 + depth : 28 - depth] = True
        return (fill & ~inner).expand_as(out)

    # matched by the kept pixels alone, every straddling patch is the exemplar's own; on a
    # grid of stride s every pixel within p - s of the edge lies in one
    changed = out != damaged
    torch.testing.assert_close(out[band(5 - stride)], exemplar[band(5 - stride)])
    torch.testing.assert_close(out[changed], exemplar[changed])
    assert not (changed & fill.expand_as(out) & ~band(4)).any()


def test_patches_of_several_exemplars_are_pooled():
    a, b = _image(12, 12, 1), _image(10, 14, 2)
    index = PatchIndex([a, b], 3)
    assert index.patches.shape == (10 * 10 + 8 * 12, 27)


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(17, 17), (17, 21)])
def test_a_crop_of_the_exemplar_is_a_fixed_point(stride, size):
    exemplar = _image(40, 40)
    crop = exemplar[..., 7 : 7 + size[0], 11 : 11 + size[1]]
    out = project_to_nearest(crop, PatchIndex([exemplar], 5), stride, circular=False)
    torch.testing.assert_close(out, crop)


def test_an_uneven_grid_keeps_the_size_and_changes_only_the_last_rows():
    exemplar = _image(40, 40)
    crop = exemplar[..., 5:24, 3:25]  # 19 x 22: (19 - 5) % 4 and (22 - 5) % 4 are not 0
    out = project_to_nearest(crop, PatchIndex([exemplar], 5), 4, circular=False)
    assert out.shape == crop.shape
    # the grid's patches at 0, 4, 8 cover rows and columns 0..12 exactly
    torch.testing.assert_close(out[..., :13, :13], crop[..., :13, :13])


def test_projection_descends_the_patch_energy():
    # Kwatra's energy: the sum over grid patches of the squared distance to the nearest
    # exemplar patch. The nearest-patch step minimises it over the matches, the average over
    # the pixels, so it never rises (stride 1: the grid is every patch).
    index = PatchIndex([_image(32, 32)], 5)

    def energy(x):
        return torch.cdist(F.unfold(x, 5)[0].T, index.patches).min(1).values.pow(2).sum()

    x = _image(24, 24, 9)
    energies = [energy(x)]
    for _ in range(5):
        x = project_to_nearest(x, index, 1, circular=False)
        energies.append(energy(x))
    assert all(b <= a * (1 + 1e-5) for a, b in zip(energies, energies[1:], strict=False))
    assert energies[-1] < 0.5 * energies[0]


def test_a_robust_projection_lets_the_fitting_match_win_where_matches_disagree():
    exemplar = _image(40, 40)
    crop = exemplar[..., 7:24, 11:28].clone()  # 17 x 17
    crop[..., 8:] = _image(17, 9, 3)  # columns 8-16 no longer the exemplar's
    index = PatchIndex([exemplar], 5)
    mean = project_to_nearest(crop, index, 2, circular=False)
    robust = project_to_nearest(crop, index, 2, circular=False, robust=0.3)
    assert torch.equal(project_to_nearest(crop, index, 2, False, robust=None), mean)
    # column 6 lies in the grid patch at column 2, the exemplar's own, and in those at 4
    # and 6, which reach the noise and match other exemplar patches: the mean blends the
    # three, the robust mean keeps the exact one
    mean_error = (mean - crop)[..., 6].abs().mean()
    robust_error = (robust - crop)[..., 6].abs().mean()
    assert mean_error > 0.02
    assert robust_error < mean_error / 20
    torch.testing.assert_close(robust[..., :6], crop[..., :6])
    clean = exemplar[..., 7:24, 11:28]
    torch.testing.assert_close(project_to_nearest(clean, index, 2, False, robust=0.3), clean)


@pytest.mark.parametrize("stride", [2, 3])
def test_circular_projection_keeps_a_periodic_image(stride):
    tile = _image(9, 9, 4)
    periodic = tile.repeat(1, 1, 4, 4)  # 36 x 36, period 9
    out = project_to_nearest(
        torch.roll(periodic, (4, 2), (2, 3))[..., :27, :27],  # 3 periods: periodic itself
        PatchIndex([periodic], 5),
        stride,
        circular=True,
    )
    torch.testing.assert_close(out, torch.roll(periodic, (4, 2), (2, 3))[..., :27, :27])


def test_a_principal_subspace_search_finds_the_exact_patch_of_a_crop():
    exemplar = torch.nn.functional.avg_pool2d(_image(44, 44), 3, 1)  # correlated pixels
    index = PatchIndex([exemplar], 5, dims=12)
    assert index.keys.shape == (38 * 38, 12)
    crop = exemplar[..., 9:26, 4:21]
    out = project_to_nearest(crop, index, 2, circular=False)
    torch.testing.assert_close(out, crop)


def _training_config(**values):
    from configs import TrainConfig, default_config

    return default_config(TrainConfig, objective="patches", coarsest=16, projections=16, **values)


def test_the_generator_term_is_zero_on_the_exemplar_and_descends_elsewhere():
    from losses.patches import PatchPyramidLoss

    exemplar = F.avg_pool2d(_image(66, 66), 3, 1)[0]  # (3, 64, 64)
    loss = PatchPyramidLoss([exemplar], _training_config(), nearest_weight=1.0)
    assert len(loss.scales) >= 2
    x = F.avg_pool2d(_image(66, 66, 5), 3, 1).requires_grad_(True)
    # not 0: patches past the bottom and right edges are reflections (projection's padding)
    assert float(loss(exemplar[None])["nearest"]) < 0.15 * float(loss(x)["nearest"].detach())
    opt = torch.optim.SGD([x], lr=2e3)  # the term is a mean over ~10^4 values
    values = []
    for _ in range(4):
        opt.zero_grad()
        term = loss(x)["nearest"]
        term.backward()
        opt.step()
        values.append(float(term.detach()))
    assert values[-1] < 0.8 * values[0]


def test_the_generator_term_skips_scales_with_more_patches_than_its_search_holds(monkeypatch):
    import losses.patches as P

    exemplar = F.avg_pool2d(_image(66, 66), 3, 1)[0]  # (3, 64, 64)
    monkeypatch.setattr(P, "NEAREST_KEYS", 1000)  # a subset's projection would be a blur
    loss = P.PatchPyramidLoss([exemplar], _training_config(), nearest_weight=1.0)
    counts = [(t[0].shape[-2] - 6) * (t[0].shape[-1] - 6) for t in loss.targets]
    assert sorted(loss.indexes) == [k for k, n in enumerate(counts) if n <= 1000]
    assert 0 < len(loss.indexes) < len(loss.scales)
    assert all(len(i.patches) == counts[k] for k, i in loss.indexes.items())  # all, no subset
    assert float(loss(exemplar[None])["nearest"]) >= 0


def test_the_generator_term_needs_the_patch_objective():
    from configs import TrainConfig, default_config
    from data.errors import UserError

    with pytest.raises(UserError, match="nearest-weight needs the patches objective"):
        default_config(TrainConfig, objective="features", nearest_weight=1.0)


def test_exemplar_wraps_needs_the_patch_objective_in_training():
    from configs import TrainConfig, default_config
    from data.errors import UserError

    with pytest.raises(UserError, match="exemplar-wraps needs the patches objective"):
        default_config(TrainConfig, objective="features", exemplar_wraps="on")
