"""Unit and property tests of the objective's maths."""

import math

import pytest
import torch

from losses import (
    gaussian_pyramid,
    gram_matrix,
    spectrum_projection,
    spectrum_target,
    total_variation,
)
from losses.autocorrelation import autocorrelation
from losses.sliced import random_directions, resample_sorted, sliced_wasserstein, sorted_projections
from losses.spectrum import periodic_component, spectrum_loss


def smooth_texture(h=48, w=48, seed=0):
    """A coloured, band-limited random texture in [0, 1] (3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, h, w, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    mix = torch.tensor([[1.0, 0.3, 0.1], [0.2, 1.0, 0.2], [0.1, 0.4, 1.0]])
    x = torch.einsum("dc,bchw->bdhw", mix, x)
    return (0.5 + 0.15 * x / x.std()).clamp(0, 1)[0]


def test_gram_is_normalised_by_channels_and_positions():
    f = torch.ones(2, 4, 5, 6)
    g = gram_matrix(f)
    assert g.shape == (2, 4, 4)
    assert torch.allclose(g, torch.full_like(g, 1 / 4))


def test_gram_is_invariant_to_periodic_tiling():
    f = torch.rand(1, 8, 7, 9)
    tiled = f.repeat(1, 1, 2, 3)
    assert torch.allclose(gram_matrix(f), gram_matrix(tiled), atol=1e-6)


def test_gram_is_fp32_for_half_inputs():
    assert gram_matrix(torch.rand(1, 3, 4, 4).bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("h,w", [(64, 64), (37, 50), (9, 5)])
def test_pyramid_shapes(h, w):
    levels = gaussian_pyramid(torch.rand(2, 3, h, w), 4)
    assert [tuple(t.shape[-2:]) for t in levels] == [
        (math.ceil(h / 2**s), math.ceil(w / 2**s)) for s in range(4)
    ]
    assert all(t.shape[:2] == (2, 3) for t in levels)


def test_pyramid_preserves_constant_and_mean():
    c = torch.full((1, 3, 32, 32), 0.3)
    for level in gaussian_pyramid(c, 3):
        assert torch.allclose(level, torch.full_like(level, 0.3), atol=1e-6)
    x = torch.rand(1, 3, 32, 32)
    coarse = gaussian_pyramid(x, 2, circular=True)[1]
    assert torch.allclose(coarse.mean(), x.mean(), atol=1e-5)


def test_circular_pyramid_commutes_with_shifts():
    x = torch.rand(1, 3, 32, 32)
    a = gaussian_pyramid(torch.roll(x, (4, 8), (2, 3)), 3, circular=True)[2]
    b = torch.roll(gaussian_pyramid(x, 3, circular=True)[2], (1, 2), (2, 3))
    assert torch.allclose(a, b, atol=1e-6)


def test_periodic_component_keeps_mean_and_removes_border_jumps():
    u = smooth_texture() + torch.linspace(0, 0.3, 48).view(1, 1, 48)  # strong horizontal ramp
    p = periodic_component(u)
    assert torch.allclose(p.mean((1, 2)), u.mean((1, 2)), atol=1e-5)
    jump = lambda img: (img[:, :, 0] - img[:, :, -1]).abs().mean()  # noqa: E731
    assert jump(p) < 0.3 * jump(u)


def test_projection_is_idempotent_and_keeps_exemplar_modulus():
    u = smooth_texture(seed=1)
    target = spectrum_target([u], (48, 48))
    x = torch.rand(2, 3, 48, 48)
    p = spectrum_projection(x, target)
    assert torch.allclose(spectrum_projection(p, target), p, atol=1e-4)
    modulus = torch.fft.fft2(p).abs()
    assert torch.allclose(modulus, target.abs().expand_as(modulus), rtol=1e-3, atol=1e-3)
    assert torch.allclose(
        modulus[:, :, 0, 0], torch.fft.fft2(u).abs()[:, 0, 0].expand(2, 3), rtol=1e-4
    )


def test_projection_of_the_exemplar_is_the_exemplar():
    u = smooth_texture(seed=2)
    target = spectrum_target([u], (48, 48))
    p = periodic_component(u)  # what the target is made from
    assert torch.allclose(spectrum_projection(p[None], target)[0], p, atol=1e-4)
    shifted = torch.roll(p, (7, 3), (1, 2))[None]
    assert spectrum_loss(shifted, target) < 1e-9


def test_projection_is_equivariant_to_shifts():
    u = smooth_texture(seed=3)
    target = spectrum_target([u], (48, 48))
    x = torch.rand(1, 3, 48, 48)
    a = spectrum_projection(torch.roll(x, (5, 11), (2, 3)), target)
    b = torch.roll(spectrum_projection(x, target), (5, 11), (2, 3))
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("size", [(96, 96), (64, 128), (40, 24)])
def test_spectrum_for_other_sizes_keeps_mean_and_power(size):
    u = smooth_texture(seed=4)
    target = spectrum_target([u], size)
    x = torch.rand(1, 3, *size)
    p = spectrum_projection(x, target)[0]
    assert p.shape == (3, *size)
    assert torch.allclose(spectrum_projection(p[None], target)[0], p, atol=1e-4)
    # Same mean colour and, within interpolation error, the same variance per pixel.
    assert torch.allclose(p.mean((1, 2)), u.mean((1, 2)), atol=1e-4)
    pu = periodic_component(u)
    ratio = p.var((1, 2)) / pu.var((1, 2))
    assert torch.all((ratio > 0.6) & (ratio < 1.4)), ratio


def test_spectrum_loss_is_large_for_the_wrong_texture():
    u = smooth_texture(seed=5)
    target = spectrum_target([u], (48, 48))
    white = torch.rand(1, 3, 48, 48)
    gray = torch.full((1, 3, 48, 48), 0.5)
    assert spectrum_loss(white, target) > 0.01
    assert spectrum_loss(gray, target) > 0.005


def test_total_variation():
    assert total_variation(torch.full((1, 3, 8, 8), 0.5)) == 0
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., ::2] = 1
    assert torch.isclose(total_variation(stripes), torch.tensor(1.0))
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    assert total_variation(ramp, circular=True) > total_variation(ramp)


def _brute_autocorrelation(f, k):
    c, h, w = f.shape
    out = torch.zeros(c, 2 * k + 1, 2 * k + 1)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            a = f[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            b = f[:, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
            out[:, dy + k, dx + k] = (a * b).mean((1, 2)) / c
    return out


def test_autocorrelation_matches_brute_force_over_the_overlap():
    f = torch.randn(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    got = autocorrelation(f, 3)[0]
    assert got.shape == (3, 7, 7)
    assert torch.allclose(got, _brute_autocorrelation(f[0], 3), atol=1e-5)
    # Shift 0 is each channel's mean square; shifts are symmetric.
    assert torch.allclose(got[:, 3, 3], f[0].pow(2).mean((1, 2)) / 3, atol=1e-6)
    assert torch.allclose(got, got.flip(-1).flip(-2), atol=1e-5)


def test_circular_autocorrelation_is_shift_invariant_and_sees_layout():
    f = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    rolled = f.roll((5, -3), (-2, -1))
    a, b = autocorrelation(f, 4, circular=True), autocorrelation(rolled, 4, circular=True)
    assert torch.allclose(a, b, atol=1e-5)
    # A permutation of positions keeps every Gram entry but not the autocorrelation.
    shuffled = f.flatten(2)[..., torch.randperm(256)].view_as(f)
    assert torch.allclose(gram_matrix(f), gram_matrix(shuffled), atol=1e-5)
    assert (autocorrelation(shuffled, 4) - autocorrelation(f, 4)).abs().max() > 0.05


def test_sliced_wasserstein_ignores_positions_and_sees_distributions():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(1, 4, 8, 8, generator=g)
    dirs = random_directions(4, 6, seed=0)
    target = sorted_projections(f, dirs)
    shuffled = f.flatten(2)[..., torch.randperm(64, generator=g)].view_as(f)
    assert float(sliced_wasserstein(shuffled, target, dirs)) < 1e-10
    assert float(sliced_wasserstein(2 * f, target, dirs)) > 0.1
    # A larger output is compared with the target's quantiles: a 2x2 tiling nearly matches.
    tiled = float(sliced_wasserstein(f.repeat(1, 1, 2, 2), target, dirs))
    assert tiled < 0.05 * float(sliced_wasserstein(2 * f, target, dirs))
    assert torch.allclose(resample_sorted(torch.arange(5.0)[None], 9)[0], torch.arange(9.0) / 2)
