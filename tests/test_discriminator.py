"""The patch discriminator of ``train.py --adversarial-weight``: shapes, losses, its step."""

from types import SimpleNamespace

import pytest
import torch

from data.errors import UserError
from generator.adversary import Adversary
from models.discriminator import (
    MultiScaleDiscriminator,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    r1_penalty,
)


def single_process():
    """What Adversary uses of an ``accelerate.Accelerator`` on one CPU process."""
    return SimpleNamespace(
        device=torch.device("cpu"), num_processes=1, register_for_checkpointing=lambda *o: None
    )


def stripes(size=40):
    x = torch.arange(size).float()
    u = 0.5 + 0.4 * torch.sin(x / 1.5)
    return torch.stack([u.expand(size, size), u.expand(size, size).T, 0.5 * u.expand(size, size)])


def test_one_logit_map_per_scale_with_the_patch_grid():
    torch.manual_seed(0)
    d = MultiScaleDiscriminator(torch.full((4,), 0.5), 0.2)
    maps = d(torch.rand(2, 4, 64, 48))
    assert [tuple(m.shape) for m in maps] == [(2, 1, 8, 6), (2, 1, 4, 3)]


def test_hinge_losses_at_chance_and_at_a_margin():
    zeros = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)]
    assert float(hinge_discriminator_loss(zeros, zeros)) == 4.0  # 2 per scale and side
    sure = [torch.full((2, 1, 4, 4), 2.0)]
    assert float(hinge_discriminator_loss(sure, [-s for s in sure])) == 0.0
    assert float(generator_adversarial_loss([-s for s in sure])) == 2.0


def test_r1_is_the_squared_gradient_norm_of_the_real_logits():
    real = torch.rand(3, 2, 5, 5, requires_grad=True)
    w = torch.randn(1, 2, 1, 1)
    logits = [(real * w).sum(1, keepdim=True)]  # gradient w at every pixel
    expected = float(w.pow(2).sum() * 25)
    assert float(r1_penalty(real, logits)) == pytest.approx(expected, rel=1e-5)


def test_the_discriminator_learns_to_tell_the_exemplar_from_flat_grey():
    torch.manual_seed(0)
    adversary = Adversary([stripes()], 32, single_process())
    assert adversary.side == 32
    crops = torch.Generator().manual_seed(0)
    fake = torch.full((2, 3, 32, 32), 0.5)
    first = adversary.update(fake, crops)
    for _ in range(40):
        last = adversary.update(fake, crops)
    assert float(last["discriminator"]) < float(first["discriminator"]) - 0.5
    assert float(last["real_logit"]) > float(last["fake_logit"]) + 0.5
    # ... and its term pulls a flat generated image towards the exemplar's patches.
    x = fake.clone().requires_grad_(True)
    adversary.generator_loss(x).backward()
    assert x.grad.abs().sum() > 0


def test_real_crops_are_seeded_and_inside_the_exemplars():
    adversary = Adversary([stripes(40), stripes(36)], 64, single_process())
    assert adversary.side == 36  # the smallest exemplar side
    a = adversary.real_crops(4, torch.Generator().manual_seed(3))
    b = adversary.real_crops(4, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 36, 36) and torch.equal(a, b)
    with pytest.raises(UserError, match="at least 16 px"):
        Adversary([stripes(12)], 64, single_process())
