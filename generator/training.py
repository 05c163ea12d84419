"""Pieces of generator training that ``train.py`` strings together.

Every random choice of a training step (the noise seeds of its samples, the crops of its
backbone views) is derived from (run seed, step, process index), not drawn from a stateful
generator: a run resumed at step t repeats exactly what an uninterrupted run does from t, on
every process, with no RNG state to save.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from configs import TrainConfig
from data.errors import UserError
from data.images import load_exemplars
from data.stacks import ALBEDO, load_stack
from generator.checkpoints import save_generator
from losses import TextureLoss, gaussian_pyramid
from models.generator import TextureGenerator, fold_batchnorm
from models.noise import derived_seed, noise_pyramid
from training.runs import write_checkpoint

EVAL_SEEDS = (0, 1)  # fixed noise of the evaluation loss (best checkpoint) and sample images
CALIBRATION_BATCHES = 16  # batches of fixed noise that re-estimate BatchNorm statistics
# Fields that may change when a run is resumed; any other difference is refused.
RESUMABLE = {"steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every", "device"}


def check_config(cfg: TrainConfig, min_view: int) -> None:
    """Refuse views the backbone cannot see, with the option to change (``min_view``: the
    smallest side the backbone accepts at the coarsest octave); the config checked the rest
    itself (``configs.check_training``)."""
    if cfg.objective == "features" and cfg.image_size >> (cfg.octaves - 1) < min_view:
        raise UserError(
            f"--image-size {cfg.image_size} gives a {cfg.image_size >> (cfg.octaves - 1)} px "
            f"coarsest octave, below the backbone's {min_view} px; use fewer --octaves"
        )
    if cfg.crop and cfg.crop < min_view:
        raise UserError(f"--crop must be 0 or at least {min_view} px for this backbone")


def check_resumable(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to resume a checkpoint trained with a different objective or architecture."""
    current = dataclasses.asdict(cfg)
    # a checkpoint saved before a field existed ran with that field's default
    defaults = {
        f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
        for f in dataclasses.fields(cfg)
    }
    saved = {k: saved.get(k, defaults[k]) for k in current}
    changed = sorted(k for k in current if k not in RESUMABLE and saved[k] != current[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise UserError(f"the checkpoint was trained with other settings ({diffs}); use its config")


def load_training_images(cfg: TrainConfig, exemplars, log=print):
    """The exemplars to train on, as ``(images, sources, layout)``: (C, H, W) tensors in [0, 1],
    their names, and the output's layout (``data.stacks``): a material stack's maps when
    ``cfg.maps`` names some (then the one exemplar is its albedo file), else RGB alone."""
    if not cfg.maps:
        images, sources = load_exemplars(exemplars, log)
        return images, sources, [{"name": ALBEDO, "channels": 3, "bits": 8}]
    items = exemplars if isinstance(exemplars, (list, tuple)) else [exemplars]
    if len(items) != 1 or isinstance(items[0], torch.Tensor):
        raise UserError("--map: give one exemplar file, the albedo its maps are aligned with")
    stack, layout, sources = load_stack(items[0], cfg.maps, log)
    return [stack], sources, layout


def step_inputs(model: TextureGenerator, cfg: TrainConfig, step: int, rank: int, device):
    """The noise pyramid of a training step and the generator of its backbone crops."""
    seeds = [derived_seed(cfg.seed, step, rank, b) for b in range(cfg.batch_size)]
    size = (cfg.image_size, cfg.image_size)
    noises = noise_pyramid(seeds, size, model.scales, model.noise_channels, device)
    crops = torch.Generator().manual_seed(derived_seed(cfg.seed, step, rank, -1))
    return noises, crops


def step_batches(model: TextureGenerator, cfg: TrainConfig, start: int, rank: int, device):
    """The inputs of steps ``start``, ``start + 1``, ... (``step_inputs``), one a ``next``."""
    step = start
    while True:
        yield step_inputs(model, cfg, step, rank, device)
        step += 1


def step_loss(model, objective, cfg: TrainConfig, batch, adversary=None):
    """(loss to minimise, {"loss/TERM": value}) of one step's ``batch``: the texture loss of
    G(noise) with the step's crops, less the weighted diversity term if it is on, plus the
    weighted adversarial term if there is an ``adversary`` (``generator.adversary``), which
    first takes its own step against these samples and real crops drawn after the objective's
    (from the same step-seeded generator, so a resumed run repeats them)."""
    noises, crops = batch
    x = model(noises).float()
    terms = objective(x, crop=cfg.crop or None, generator=crops)
    loss = terms["total"]
    if cfg.diversity_weight:
        terms["diversity"] = diversity(objective, x)
        loss = loss - cfg.diversity_weight * terms["diversity"]
    if adversary is not None:
        terms |= adversary.update(x.detach(), crops)
        terms["adversarial"] = adversary.generator_loss(x)
        loss = loss + cfg.adversarial_weight * terms["adversarial"]
    return loss, {f"loss/{k}": v for k, v in terms.items()}


def diversity(objective: TextureLoss, x: torch.Tensor) -> torch.Tensor:
    """Ulyanov et al. 2017 diversity: mean L1 distance between the deepest-layer features of
    each sample and the next one, at the coarsest octave (large structure). x: (B, 3, H, W)."""
    coarse = gaussian_pyramid(x, len(objective.octave_weights), objective.circular)[-1]
    features = objective.backbone(coarse)[objective.layers[-1]].float()
    return (features - features.roll(1, 0)).abs().mean()


@torch.no_grad()
def inference_form(model: TextureGenerator, cfg: TrainConfig, device) -> TextureGenerator:
    """The network that inference runs: a copy of ``model`` whose BatchNorm statistics are
    re-estimated for its current weights, then folded (``fold_batchnorm``).

    The running averages kept during training trail the weights: with momentum 0.1 they mix
    statistics of the last ~10 steps' weights, which at a high learning rate differ enough to
    give eval-mode samples a loss several times the training loss. Here each BatchNorm's
    statistics are the exact average over ``CALIBRATION_BATCHES`` training-mode batches of
    fixed noise (``momentum=None``). ``model`` itself is untouched, so resuming is unaffected.

    Returns:
        The folded eval-mode generator, fp32, on ``device``.
    """
    net = copy.deepcopy(model).float().train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    size = (cfg.image_size, cfg.image_size)
    for i in range(CALIBRATION_BATCHES):
        seeds = [derived_seed(cfg.seed, -1 - i, 0, b) for b in range(cfg.batch_size)]
        net(noise_pyramid(seeds, size, net.scales, net.noise_channels, device))
    return fold_batchnorm(net).to(device)


@torch.no_grad()
def evaluate(model: TextureGenerator, objective: TextureLoss, cfg: TrainConfig, device):
    """Samples of the fixed ``EVAL_SEEDS`` from an inference-form (folded) generator and their
    texture loss with whole views: comparable across steps, runs and resumptions.

    Returns:
        (loss: float, images: (len(EVAL_SEEDS), 3, S, S) in [0, 1]).
    """
    size = (cfg.image_size, cfg.image_size)
    images = model(
        noise_pyramid(list(EVAL_SEEDS), size, model.scales, model.noise_channels, device)
    )
    loss = float(objective(images.float())["total"])
    return loss, images.float().cpu()


class Evaluation:
    """``evaluation(step)`` -> (inference-form generator, eval loss, sample images) of ``net``
    at ``step``, computed once even when sampling, a checkpoint and the final save fall on the
    same step."""

    def __init__(self, net: TextureGenerator, objective, cfg: TrainConfig, device):
        self.net, self.objective, self.cfg, self.device = net, objective, cfg, device
        self.step, self.value = None, None

    def __call__(self, step: int):
        if self.step != step:
            folded = inference_form(self.net, self.cfg, self.device)
            self.step = step
            self.value = (folded, *evaluate(folded, self.objective, self.cfg, self.device))
        return self.value


def save_checkpoint(accelerator, evaluation, cfg, output_dir, step, info, best):
    """Write ``checkpoint-{step}`` (accelerate state + folded generator) and update ``best/``.

    Call on every process; ``evaluation(step)`` (main process only; ``Evaluation``) returns
    the step's ``(folded generator, eval loss, images)``. Returns the best evaluation loss so far.
    """

    def write_files(directory):
        folded, loss, _ = evaluation(step)
        facts = {**info, "step": step, "eval_loss": loss}
        save_generator(folded, directory, dataclasses.asdict(cfg), facts)
        return folded, loss, facts

    written = write_checkpoint(accelerator, output_dir, step, cfg.keep_checkpoints, write_files)
    if written is not None and written[1] < best:
        folded, best, facts = written
        save_generator(folded, output_dir / "best", dataclasses.asdict(cfg), facts)
    return best
