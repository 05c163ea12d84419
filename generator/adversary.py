"""The adversarial term of generator training (``train.py --adversarial-weight``).

A multi-scale patch discriminator (``models.discriminator``) learns to tell crops of the
exemplar from generated images; the generator's loss gains ``weight`` x its hinge term. The
texture objective fixes the feature statistics; the discriminator judges whole elements with
their neighbours (a disc's roundness, a cell's closed wall), which those statistics leave free.

What keeps it from winning (docs/decisions.md, sessions 27-28: without these the discriminator
separated real from generated within ~200 steps and the generator collapsed to flat colour):
spectral norm in every conv, a fixed weight (not balanced on gradients, which grows as the
discriminator's gradient vanishes), a small R1 penalty, a slow discriminator (Adam 1e-4,
betas 0.5, 0.999) and its updates in fp32.

The discriminator and its optimizer are registered with accelerate, so ``checkpoint-{step}``
holds them and ``--resume`` continues exactly. Every process keeps a copy; their gradients are
averaged by hand (DistributedDataParallel cannot take R1's double backward).
"""

from __future__ import annotations

import torch

from data.errors import UserError
from losses.texture import random_crops
from models.discriminator import (
    SCALES,
    MultiScaleDiscriminator,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    r1_penalty,
)

LR = 1e-4
BETAS = (0.5, 0.999)
R1_WEIGHT = 0.01
MIN_SIDE = 8 * max(SCALES)  # three stride-2 convs at the coarsest scale


class Adversary:
    """The discriminator of a training run and its step.

    Args:
        images: the exemplars, (C, H, W) tensors in [0, 1] on the training device; real
            crops come from them.
        side: the side of the real crops: the training images' side, or the smallest
            exemplar side if that is smaller.
        accelerator: the run's ``accelerate.Accelerator``; the discriminator and its
            optimizer are registered for its checkpoints.
    """

    def __init__(self, images: list[torch.Tensor], side: int, accelerator):
        mean = torch.stack([u.mean((1, 2)) for u in images]).mean(0)
        std = float(torch.cat([u.flatten() for u in images]).std())
        self.images, self.accelerator = images, accelerator
        self.side = min(side, *(min(u.shape[-2:]) for u in images))
        if self.side < MIN_SIDE:
            raise UserError(f"--adversarial-weight needs exemplars of at least {MIN_SIDE} px")
        self.net = MultiScaleDiscriminator(mean, std).to(accelerator.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LR, betas=BETAS)
        accelerator.register_for_checkpointing(self.net, self.optimizer)

    def real_crops(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, C, side, side) random crops of random exemplars, drawn with ``generator``."""
        crops = []
        for _ in range(n):
            u = self.images[int(torch.randint(len(self.images), (1,), generator=generator))]
            crops.append(random_crops(u[None], self.side, generator)[0])
        return torch.stack(crops)

    def update(self, fake: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One discriminator step against ``fake`` ((B, C, S, S) generated images, detached)
        and as many real crops drawn with ``generator``. Returns its logged scalars."""
        real = self.real_crops(fake.shape[0], generator).requires_grad_(True)
        with torch.autocast(fake.device.type, enabled=False):
            real_logits, fake_logits = self.net(real), self.net(fake.float())
            hinge = hinge_discriminator_loss(real_logits, fake_logits)
            loss = hinge + R1_WEIGHT / 2 * r1_penalty(real, real_logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.accelerator.num_processes > 1:
            for p in self.net.parameters():
                p.grad = self.accelerator.reduce(p.grad, "mean")
        self.optimizer.step()
        return {
            "discriminator": hinge.detach(),
            "real_logit": torch.stack([r.detach().mean() for r in real_logits]).mean(),
            "fake_logit": torch.stack([f.detach().mean() for f in fake_logits]).mean(),
        }

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial term for ``fake`` ((B, C, S, S), with its graph)."""
        with torch.autocast(fake.device.type, enabled=False):
            return generator_adversarial_loss(self.net(fake.float()))
