"""The recurrence measure (judge/recurrence.py): copies within one image."""

import pytest
import torch

from data.errors import UserError
from data.procedural import make
from judge.recurrence import best_matches, recurrence_ratio


def test_an_exact_copy_elsewhere_correlates_one_and_new_material_does_not():
    image = make("cells", 256, seed=1)
    assert best_matches(image, 32).max() < 0.9  # new cells everywhere: look-alikes only
    pasted = image.clone()
    pasted[:, 128:, 128:] = image[:, :128, :128]
    best = best_matches(pasted, 32)  # 4 x 4 squares: the grid's corners lie in the copies
    assert best[0] > 0.999 and best[-1] > 0.999


def test_the_ratio_is_one_for_the_exemplar_near_one_for_new_material_zero_for_copies():
    exemplar = make("cells", 128, seed=0)
    assert recurrence_ratio(exemplar, exemplar) == pytest.approx(1.0)
    fresh = make("cells", 256, seed=1)  # the same process, another layout
    assert recurrence_ratio(fresh, exemplar) > 0.8
    tiled = exemplar[:, :64, :64].repeat(1, 4, 4)  # a grid of one crop of the exemplar
    assert recurrence_ratio(tiled, exemplar) < 0.01
    half = fresh.clone()
    half[:, 128:, :] = fresh[:, :128, :]  # its lower half a copy of its upper half
    assert recurrence_ratio(half, exemplar) < 0.6 * recurrence_ratio(fresh, exemplar)


def test_an_image_too_small_for_two_squares_is_refused():
    with pytest.raises(UserError, match="at least 64 px"):
        best_matches(torch.rand(3, 48, 80), 32)
