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
from generator.checkpoints import save_generator
from losses import TextureLoss, gaussian_pyramid
from models.generator import GENERATORS, OUTPUTS, TextureGenerator, fold_batchnorm
from models.noise import derived_seed, noise_pyramid
from training.loop import SCHEDULES
from training.runs import write_checkpoint

EVAL_SEEDS = (0, 1)  # fixed noise of the evaluation loss (best checkpoint) and sample images
CALIBRATION_BATCHES = 16  # batches of fixed noise that re-estimate BatchNorm statistics
# Fields that may change when a run is resumed; any other difference is refused.
RESUMABLE = {"steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every", "device"}


def check_config(cfg: TrainConfig, min_view: int) -> None:
    """Refuse settings that cannot train, with the option to change (``min_view``: the
    smallest side the backbone accepts at the coarsest octave)."""
    if cfg.generator not in GENERATORS:
        raise UserError(f"unknown generator '{cfg.generator}'; choose from {', '.join(GENERATORS)}")
    if cfg.output not in OUTPUTS:
        raise UserError(f"unknown output '{cfg.output}'; choose from {', '.join(OUTPUTS)}")
    if cfg.lr_schedule not in SCHEDULES:
        raise UserError(
            f"unknown lr-schedule '{cfg.lr_schedule}'; choose from {', '.join(SCHEDULES)}"
        )
    if cfg.mixed_precision not in ("no", "bf16"):
        raise UserError("--mixed-precision must be no or bf16 (fp16 is not supported on CPUs)")
    if min(cfg.steps, cfg.batch_size, cfg.checkpoint_every, cfg.log_every, cfg.sample_every) < 1:
        raise UserError("steps, batch-size and the -every intervals must be at least 1")
    multiple = 2 ** (len(GENERATORS[cfg.generator]["channels"]) - 1)
    if cfg.image_size % multiple:
        raise UserError(
            f"--image-size must be a multiple of {multiple} for generator {cfg.generator}"
        )
    if cfg.objective not in ("features", "patches"):
        raise UserError(f"unknown objective '{cfg.objective}'; use features or patches")
    if cfg.objective == "patches" and cfg.diversity_weight:
        raise UserError("--diversity-weight needs the features objective (it uses the backbone)")
    if cfg.objective == "features" and cfg.image_size >> (cfg.octaves - 1) < min_view:
        raise UserError(
            f"--image-size {cfg.image_size} gives a {cfg.image_size >> (cfg.octaves - 1)} px "
            f"coarsest octave, below the backbone's {min_view} px; use fewer --octaves"
        )
    if cfg.crop and cfg.crop < min_view:
        raise UserError(f"--crop must be 0 or at least {min_view} px for this backbone")
    if cfg.diversity_weight and cfg.batch_size < 2:
        raise UserError("--diversity-weight needs --batch-size 2 or more")


def check_resumable(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to resume a checkpoint trained with a different objective or architecture."""
    current = dataclasses.asdict(cfg)
    changed = sorted(k for k in current if k not in RESUMABLE and saved.get(k) != current[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise UserError(f"the checkpoint was trained with other settings ({diffs}); use its config")


def step_inputs(model: TextureGenerator, cfg: TrainConfig, step: int, rank: int, device):
    """The noise pyramid of a training step and the generator of its backbone crops."""
    seeds = [derived_seed(cfg.seed, step, rank, b) for b in range(cfg.batch_size)]
    size = (cfg.image_size, cfg.image_size)
    noises = noise_pyramid(seeds, size, model.scales, model.noise_channels, device)
    crops = torch.Generator().manual_seed(derived_seed(cfg.seed, step, rank, -1))
    return noises, crops


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


def save_checkpoint(accelerator, evaluation, cfg, output_dir, step, info, best):
    """Write ``checkpoint-{step}`` (accelerate state + folded generator) and update ``best/``.

    Call on every process; ``evaluation()`` (main process only) returns the step's
    ``(folded generator, eval loss, images)``. Returns the best evaluation loss so far.
    """

    def write_files(directory):
        folded, loss, _ = evaluation()
        facts = {**info, "step": step, "eval_loss": loss}
        save_generator(folded, directory, dataclasses.asdict(cfg), facts)
        return folded, loss, facts

    written = write_checkpoint(accelerator, output_dir, step, cfg.keep_checkpoints, write_files)
    if written is not None and written[1] < best:
        folded, best, facts = written
        save_generator(folded, output_dir / "best", dataclasses.asdict(cfg), facts)
    return best
