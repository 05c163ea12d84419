"""Coarse-to-fine synthesis by matching the distribution of pixel patches (``objective =
"patches"``; Elnekave and Weiss 2022, GPDM).

The exemplar and the output are seen through a pyramid of scales ``factor**k``, from the one
where the exemplar's short side is ``coarsest`` px up to 1. At the coarsest scale a 7 x 7
patch spans a fifth of the exemplar, so matching the patch distribution there fixes the
layout (where cells, rows and discs go); each finer scale starts from the coarser result,
upsampled, and fixes smaller detail. At each scale Adam moves the output's pixels to
minimise the sliced Wasserstein distance between its patches and the exemplar's
(``losses.patches``), on random directions drawn from a bank that is renewed every few
steps, over a random sample of the output's patches when it is large.

A distribution match alone leaves walls open and elements rounder and smaller than the
exemplar's: every patch is plausible, their arrangement is not. So two thirds of the way
through each scale the output is projected a few times onto the exemplar's patches
(``losses.nearest``: each grid patch replaced by its nearest exemplar patch, overlaps
averaged; Kwatra et al. 2005), which closes walls and lines up stitches; the remaining Adam
steps restore the grain that the averaging blurs. At the layout scales the average is
Kwatra's robust one (``ROBUST``): where overlapping matches disagree, the best fit wins
instead of all of them smearing into a cell without walls.

Nearest patches join locally, so a lattice (a tread plate's ridge groups, bricks, tiles)
can drift in period and angle across a large output. On a lattice (``spectrum_projection``,
``auto`` by default: where ``losses.spectrum.lattice_share`` finds the exemplar's spectrum
in sharp peaks) each layout scale's projections start with a projection onto the exemplar's
Fourier modulus that keeps the output's phase (``losses.spectrum``; Liu et al. 2016): the
lattice's frequencies become single sharp peaks, one period and angle everywhere, placed
where the output has them.

An exemplar that tiles (a procedural texture, a game's seamless map; ``exemplar_wraps``,
``auto`` by default: ``losses.patches.tiles``) has no edges: its patches across them are
patches of the material too, and at the coarsest scales, where a 23 x 23 patch spans most of
the exemplar, they are most of them (a 32 px exemplar holds 100 inner ones and 1024 wrapped).
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F

from configs import SynthConfig, check_synth_values, default_config
from data.errors import UserError
from data.light import LIGHT_SPREAD, even_light, light_spread
from data.repeats import lattice_shifts, repeat_strength
from data.symmetry import symmetric, symmetries
from losses.nearest import NEAREST_DIMS, NEAREST_STRIDE, PatchIndex, project_to_nearest
from losses.patches import (
    DirectionBank,
    colour_distance,
    downscaled,
    exemplars_wrap,
    patch_sliced_wasserstein,
    pyramid_scales,
    scaled,
    wrapped,
)
from losses.spectrum import lattice_fit, lattice_share, spectrum_projection, spectrum_target
from models.devices import resolve_device
from optimize.engine import PerImageSynthesizer, at_size, load_exemplars
from optimize.lbfgs import OptimizeResult
from optimize.quilting import (
    LATTICE_HEALS,
    LATTICE_SEAMS,
    OVERLAP,
    lattice_overlap,
    quilt,
    quilt_periodic,
)

MARGIN = 1  # extra canvas around the output, in patches (border pixels lie in few patches)
# Scales at which the exemplar's short side is at most COARSE_SPAN x ``coarsest`` get
# ``coarse_iterations``: a patch spans a large part of the exemplar there, so they set the
# layout. Measured on the exemplar, not the output, so that a larger output gets the same
# layout work (an output-side rule gave a 512 px honeycomb two such scales, a 256 px one five).
COARSE_SPAN = 3.2
LR_END = 0.1  # each scale's learning rate decays (cosine) to this fraction of lr
# Each step's directions come from a bank of BANK_SIZE, redrawn every BANK_REFRESH steps,
# with the exemplar's exact quantiles (``losses.patches.DirectionBank``); QUANTILES of them
# kept per direction when every output patch is compared (max_patches = 0).
BANK_SIZE = 256
BANK_REFRESH = 25
QUANTILES = 65536
# Nearest-patch projections (losses.nearest) at every scale, once, NEAREST_AT of the way
# through its steps: the steps after it restore the grain that averaging the matched patches
# blurs (the grid's stride and search dimensions: losses.nearest).
NEAREST_AT = 2 / 3
# Where the exemplar's short side is at most LARGE_SPAN x ``coarsest`` and at most half its
# full size (the scales where a large element, a disc or a leaf panel, spans a few patches;
# never the fine scales, whose grain large blocks would copy), the projections first use
# patches about 3x and 2x as large (``large_patches``), then the patch itself: Kwatra et al.
# go from large patches to small ones. With 7x7 patches alone, the large discs of red_dots
# came out lumpy (structure 1.24 at 256 px; with 23, 15, 7: 0.96, round discs).
LARGE_SPAN = 8
# The projections search at most NEAREST_KEYS exemplar patches at a scale (a fixed random
# subset): a search costs keys x output patches, so a very large exemplar must not search
# all of its millions. Session 8's 65536 lost the finest grain at the two finest scales of a
# photo: the nearest of a quarter of the patches is farther, and the overlapping matches
# average to a blur that the Adam steps after them do not undo (honeycomb 1024 px, seeds
# 0 / 1: highfreq 3.72 / 3.41 -> 2.59 / 2.80, structure 1.18 / 1.11 -> 1.11 / 1.07, in
# 1.34-1.43x the time; docs/decisions.md, session 10). 2^18 holds all of a ~500 px photo's.
NEAREST_KEYS = 2**18
# At full size the layout is set and the output is near the projections' fixed point: one
# projection there drew the same honeycomb as three (1024 px: structure 1.33 against 1.32,
# the same cells in a zoomed crop) in 0.93x the time (session 9).
FINAL_PROJECTIONS = 1
# At the layout scales (``COARSE_SPAN``) the projections weight each match robustly
# (``project_to_nearest``'s ``robust``, Kwatra et al.'s r): with the plain mean, where the
# matches of overlapping patches disagree (two cells' walls a few pixels apart) they average
# to a smear, which every finer scale keeps as wall-less cells (seen at the end of each
# layout scale). Procedural cells at 1024 px, seeds 0 / 1, structure: 1.63 / 1.47 with the
# mean, 1.57 with r = 0.8 (Kwatra's), 1.47 / 1.38 with 0.3; at 512 px, seeds 0-2, 1.33,
# 1.24, 1.24 -> 1.44, 1.22, 1.29; by eye fewer and smaller smears at both. The finer scales
# keep the mean (r = 0.8 at every scale: 1.53): the block starts, refined at full size only,
# are unchanged (docs/decisions.md, session 39).
ROBUST = 0.3
# A large patch of plain ground, copied over small elements, erases them: on procedural dots
# (192 px) the 23 px projections at the layout scales raised the colour distance
# (``colour_distance``) from 0.05-0.17 to 0.26-0.41, most dots gone, and the Adam steps
# after them could not grow dots back in the flat ground (an empty third of the output). A
# large patch size's projections are undone where they at least double the distance and
# leave it above ERASED, except at the coarsest scale: a 23 px patch spans most of that
# canvas, so its colours become those of a few exemplar regions even when the patches are
# right (red_dots 0.09 -> 0.22, cells 0.03 -> 0.23; undoing them there bit holes in
# red_dots' discs). At finer layout scales the other exemplars stay at or below 0.17
# (session 9).
ERASED = 0.22
# The spectrum projection (``spectrum_projection``) leaves the frequencies under this many
# cycles per exemplar side as they are: on blue_metal, whose photo is lit from one corner,
# imposing them drew blotches of light and shade (1024 px: structure 1.48 without the
# projection, 1.71 with it at every frequency, 1.53 above 4 cycles; metal_plate 1.81, 1.50,
# 1.44; session 12).
SPECTRUM_LOWEST = 4
# ``spectrum_projection = "auto"`` applies it where ``lattice_share`` (mean over the exemplars)
# is at least this. The photos: metal_plate 0.36 and honeycomb 0.38 (both better with it at
# 1024 px), knit 0.20 (no change with it), blue_metal 0.04 (worse), the others 0; the
# procedural stripes 0.99, cells and dots 0 (session 13).
LATTICE_SHARE = 0.3
START_SD = 0.3  # sd of the coarsest level's grey noise around the exemplars' mean colour
# --start: how a synthesis starts. noise: grey noise at the coarsest scale, grown coarse to
# fine; blocks: image quilting of the exemplars (Efros and Freeman 2001, optimize.quilting),
# refined at full size only; auto: blocks where the exemplars are a lattice or repeat
# themselves (START_REPEAT), noise otherwise (with --tile the blocks are quilted to
# wrap: ``optimize.quilting.quilt_periodic``). On the
# regular exemplars the pyramid grown from noise broke the tiles' grout lines and put the
# weave's cells out of line; copied blocks keep them (512 px: tiles structure 2.12 -> 1.72,
# gaps 38 -> 0; weave 2.23 -> 1.04; bricks 1.31 -> 0.97), in a third of the time
# (docs/decisions.md, session 17).
STARTS = ("auto", "blocks", "noise")
# The blocks are this fraction of the exemplars' short side (at least START_SMALLEST
# patches; repair and expand size theirs by ``optimize.quilting.block_side``), and refined
# with Adam at START_LR (at most --lr), here and in repair and expand: at the engine's 0.02
# the Adam steps smeared a brick wall's colours across the blocks' cuts (docs/decisions.md,
# session 16). A third, not a quarter: where a lattice's elements are
# large beside the exemplar (bricks 128 px long in a 384 px wall, a tread plate of four
# periods) quarter blocks cut them, and the quilt laid double-length and split bricks and
# fragments of the plate's bars; third blocks hold a brick with its joints (by eye, 1024 px:
# most such bricks gone). At the photos' own scales the judge is level (1024 px, seed 0,
# structure: honeycomb 1.13 -> 1.14, metal_plate 1.36 -> 1.13, bricks 1.10 -> 1.08, tiles
# 0.88 -> 1.31 and weave 1.09 -> 1.23 within the seeds' own spread; session 35).
START_BLOCK = 1 / 3
# ``start = "auto"`` quilts where the exemplars are a lattice (``lattice_share`` at least
# LATTICE_SHARE) or repeat themselves (``data.repeats.repeat_strength`` at least START_REPEAT).
# The spectral share alone moved with the crop: knit's cable panel, which blocks keep whole
# where growing wanders (by eye; its leaves a jumble when turned 8 degrees and grown, 283 s,
# straight panels from blocks, 61 s), read 0.20 whole, 0.10 cropped by 36 px and 0.01 turned
# 8 degrees; its repeat strength is 0.43-0.47 at each. The photos without large repeating
# elements repeat at 0.06-0.11 (fur, waves, wood, daisies, red_dots; blocks on fur leave
# straight seams across the hair); the lattices at 0.34-0.83, blue_metal 0.46, a tread plate
# lit from one corner, which now starts from blocks too, with its light evened (1024 px,
# seed 0: structure / score 1.45 / 1.16 grown, 456 s; 1.09 / 0.83 from blocks, 187 s; by eye
# an even, regular plate with a few pale seams against blotches of light and shade).
# docs/decisions.md, session 36.
START_REPEAT = 0.25
START_SMALLEST = 4
START_LR = 0.005
# With --tile on a lattice the exemplar is scaled by at most this (``fit_lattice``) so that a
# whole number of periods fits the output: unfitted, a 512 px floor of 48 px tiles had a row
# of short tiles where the copies meet (docs/decisions.md, session 18). The judge's structure
# measure sees the scale: a fresh wall of tiles scaled by 0.966 scores 3.45 against 1.33.
LATTICE_FIT = 0.05
# --exemplar-turns: at the scales that lay the output out (the layout scales and those with
# large patches, ``_patch_sizes``) the exemplars' turned and mirrored copies are matched too.
# off | on | auto: where they look the same turned and mirrored (``data.symmetry``). Grown
# from one exemplar's coarse patches alone, an output at 4x its side repeats the same
# clusters: the procedural cells at 1024 px, recurrence 0.16 (a fresh sample of their
# process 0.84), the exemplar's dark blue cell and its ring about ten times. With the turns
# (seed 0, structure / score / recurrence): cells 1024 px 1.49 / 0.91 / 0.16 -> 1.54 / 1.04
# / 0.46 in 1.07x the time, no repeat to be seen but foggy, wall-less patches between cells;
# red_dots 512 px 1.12 / 0.77 / 0.62 -> 1.51 / 0.97 / 1.04. Fewer repeats for more smears,
# so off by default (docs/decisions.md, session 42).
EXEMPLAR_TURNS = ("off", "on", "auto")
# Each region of one symmetry spans about TURN_REGION of the exemplars' short side (cells
# 1024 px, structure / recurrence: 0.5, 1.62 / 0.42; 1, 1.54 / 0.46); the map of regions is
# drawn at TURN_MAP px on its long side at most, then enlarged.
TURN_REGION = 1.0
TURN_MAP = 256


def large_patches(p: int) -> list[int]:
    """Sides of the larger patches projected onto before ``p`` at the layout scales."""
    return [3 * p + 2, 2 * p + 1]


def upsample(x: torch.Tensor, size: tuple[int, int], periodic: bool) -> torch.Tensor:
    """(1, C, h, w) -> (1, C, H, W) bilinear; ``periodic`` interpolates across the wrap-around
    (a tileable image stays tileable)."""
    if not periodic:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="circular")
    # Pixel centres of the output in the input's pixel coordinates, then in grid_sample's
    # [-1, 1] over the padded image (its pixel centres at -1 + (2j + 1) / (n + 2)).
    ys = (torch.arange(size[0], device=x.device) + 0.5) * h / size[0] - 0.5 + 1
    xs = (torch.arange(size[1], device=x.device) + 0.5) * w / size[1] - 0.5 + 1
    gy = (2 * ys + 1) / (h + 2) - 1
    gx = (2 * xs + 1) / (w + 2) - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
    return F.grid_sample(padded, grid.to(x), mode="bilinear", align_corners=False)


class PatchSynthesizer(PerImageSynthesizer):
    """Per-image texture synthesis by patch distribution matching, coarse to fine.

    Example::

        synth = PatchSynthesizer("knit.jpg", default_config(SynthConfig))
        result = synth.synthesize(size=(512, 1024), seed=1)
        synth.save(result, "out.png", overwrite=True)

    Args:
        exemplars: a path, a (3, H, W) tensor in [0, 1], or a list of either; their patches
            are pooled.
        config: a ``SynthConfig`` with ``objective = "patches"`` (default: the patch_pyramid
            preset).
        log: where one-line messages go.
        **overrides: config fields to replace.
    """

    # ``even_light = "auto"`` evens the exemplars' light for this engine; subclasses whose
    # output must keep it say why in KEEPS_LIGHT (data.light.EVEN_LIGHT)
    EVENS_LIGHT = True
    KEEPS_LIGHT = ""
    # ``exemplar_turns = "auto"`` may match the exemplars turned and mirrored; subclasses that
    # must not say why in KEEPS_TURNS (``--exemplar-turns on`` is refused there)
    KEEPS_TURNS = ""

    def __init__(self, exemplars, config: SynthConfig | None = None, log=print, **overrides):
        base = config or default_config(SynthConfig, objective="patches")
        self.config = cfg = dataclasses.replace(base, **overrides)
        check_synth_values(cfg)  # the Python API does not pass through synth_config
        if cfg.coarsest < 2 * cfg.patch_size:
            raise UserError(f"--coarsest must be at least twice --patch-size ({cfg.patch_size})")
        if cfg.spectrum_projection == "on" and not cfg.nearest_iterations:
            raise UserError(
                "--spectrum-projection runs before the nearest-patch projections; give "
                "--nearest-iterations 1 or more"
            )
        self.device = resolve_device(cfg.device)
        self.log = log
        images, self.sources = load_exemplars(exemplars, log)
        self.exemplars = [u.to(self.device) for u in images]
        side = min(min(u.shape[-2:]) for u in self.exemplars)
        if side < 2 * cfg.patch_size:
            h, w = self.exemplars[0].shape[-2:]
            raise UserError(
                f"exemplar is {w}x{h}; patch synthesis needs a side of at least "
                f"{2 * cfg.patch_size} px (twice --patch-size)"
            )
        self.scales = pyramid_scales(side, cfg.coarsest, cfg.pyramid_factor)
        self.wraps = self._wraps()
        self.share = sum(lattice_share(u.cpu()) for u in self.exemplars) / len(self.exemplars)
        self.repeat = sum(repeat_strength(u.cpu()) for u in self.exemplars) / len(self.exemplars)
        self.start_block = self._start_block()
        self.turns = self._turns()
        self.evened = self._evens_light()
        if self.evened:
            self.exemplars = [even_light(u.float()) for u in self.exemplars]
        self._pyramid = [
            [downscaled(u[None], s, cfg.patch_size, self.wraps) for u in self.exemplars]
            for s in self.scales
        ]
        self.description = (
            f"pixel patches {cfg.patch_size}x{cfg.patch_size}, {cfg.projections} projections "
            f"a step, {len(self.scales)} scales (x{cfg.pyramid_factor}), no network"
        )
        if self.wraps:
            self.description += "; the exemplar's patches wrap around its edges"
        if self.turns:
            self.description += "; laid out from its turned and mirrored copies too"
        self.fitted: list[tuple[float, float]] | None = None  # (sy, sx) per exemplar, --tile
        # copied blocks are refined at full size only: no layout scales to project there
        self.lattice = not self.start_block and self._lattice()
        if self.start_block:
            self.description += f"; started from {self.start_block} px copied blocks"
            why = ""
            if cfg.start == "auto":
                why = f" (it repeats: strength {self.repeat:.2f}, lattice share {self.share:.2f})"
            self.log(
                f"start: {self.start_block} px blocks of the exemplar{why}, quilted and refined "
                "at full size (--start noise to grow from noise instead)"
            )
        if cfg.nearest_iterations:
            self.description += f"; {cfg.nearest_iterations} nearest-patch projections a scale"
            if self.lattice:
                self.description += ", after the exemplar's spectrum at the layout scales"

    def _evens_light(self) -> bool:
        """Whether the exemplars' light is evened out (``even_light``: ``on``, or ``auto`` where
        this engine synthesizes from exemplars, EVENS_LIGHT, quilts blocks of them, they do
        not tile, and the light of one of them varies by LIGHT_SPREAD or more; data.light).

        Quilted, a photo's light confines the blocks to its largest evenly lit part; grown
        from noise it does not, and there what the gate takes for light may be the
        material's: fur's dark clumps, evened, left a flat fur (structure 1.34 against 1.18;
        docs/decisions.md, session 19). An exemplar made to tile was lit as it is meant to
        be, and its light, blurred as an image with edges, would no longer tile."""
        mode = self.config.even_light
        if mode == "on" and not self.EVENS_LIGHT:
            raise UserError(f"--even-light on: {self.KEEPS_LIGHT}")
        quilted = self.EVENS_LIGHT and self.start_block and not self.wraps
        if mode == "off" or (mode == "auto" and not quilted):
            return False
        spread = max(light_spread(u.float()) for u in self.exemplars)
        if mode == "auto" and spread < LIGHT_SPREAD:
            return False
        self.log(
            f"light: evened out (it varied by {spread:.0%} across the exemplar; "
            "--even-light off keeps it)"
        )
        return True

    def _wraps(self) -> bool:
        """Whether the exemplars are periodic (``exemplar_wraps``: ``on``, or ``auto`` where
        every one tiles, ``losses.patches.tiles``): their patches then include those across
        their edges, and their pyramid is filtered across them."""
        mode = self.config.exemplar_wraps
        wraps = exemplars_wrap(mode, self.exemplars)
        if wraps and mode == "auto":
            self.log(
                "the exemplar tiles seamlessly: its patches across the edges count too "
                "(--exemplar-wraps off to disable)"
            )
        return wraps

    def _turns(self) -> bool:
        """Whether the scales that lay the output out match the exemplars' turned and
        mirrored copies too (``exemplar_turns``: ``on``, or ``auto`` where every exemplar
        looks the same turned and mirrored, ``data.symmetry.symmetric``, and the output is
        grown from noise, so laid out; never where the class KEEPS_TURNS)."""
        mode = self.config.exemplar_turns
        if mode == "on" and self.KEEPS_TURNS:
            raise UserError(f"--exemplar-turns on: {self.KEEPS_TURNS}")
        if mode != "auto":
            return mode == "on"
        if self.KEEPS_TURNS or self.start_block:
            return False
        if not symmetric([u.cpu() for u in self.exemplars]):
            return False
        self.log(
            "the exemplar looks the same turned and mirrored: its turned and mirrored "
            "copies lay the output out too (--exemplar-turns off to disable)"
        )
        return True

    def _lattice(self) -> bool:
        """Whether the layout scales project onto the exemplars' spectrum: ``on``, or ``auto``
        where the exemplars are a lattice (``LATTICE_SHARE``); never without nearest-patch
        projections, which it comes before."""
        mode = self.config.spectrum_projection
        if mode != "auto" or not self.config.nearest_iterations:
            return mode == "on"
        lattice = self.share >= LATTICE_SHARE
        if lattice:
            self.log(
                f"lattice: {self.share:.0%} of the exemplar's spectrum in peaks; the layout "
                "scales keep its period (--spectrum-projection off to disable)"
            )
        return lattice

    def describe(self) -> str:
        return f"objective: {self.description}"

    def level_iterations(self, size: tuple[int, int] | None = None) -> list[int]:
        """Adam steps at each scale, coarsest first (the same for every output ``size``):
        ``coarse_iterations`` at the layout scales, then from ``iterations`` down to
        ``final_fraction`` x ``iterations`` at full size, linearly: a step costs most at the
        finest scales, which only refine what the coarser ones laid out."""
        cfg = self.config
        side = min(min(u.shape[-2:]) for u in self.exemplars)
        layout = sum(s * side <= COARSE_SPAN * cfg.coarsest for s in self.scales)
        fine = len(self.scales) - layout
        drop = cfg.iterations * (1 - cfg.final_fraction)
        ramp = [max(1, round(cfg.iterations - drop * (k + 1) / fine)) for k in range(fine)]
        return [cfg.coarse_iterations] * layout + ramp

    def synthesize(
        self,
        size: tuple[int, int] | None = None,
        seed: int | None = None,
        iterations: int | None = None,
        init: torch.Tensor | None = None,
        on_iter=None,
        init_scale: float = 1.0,
    ) -> OptimizeResult:
        """Synthesize one texture.

        Args:
            size: (H, W) of the output; default the config's ``size`` or the first exemplar's.
            seed: seeds the start noise, the directions and the exemplar patch subsets.
            iterations: Adam steps at every scale (coarse ones included); default the
                config's ``iterations`` and ``coarse_iterations``.
            init: (3, H, W) or (1, 3, H, W) image in [0, 1] to refine; it fixes the size.
            on_iter: ``on_iter(level, step, x, loss)`` after every step.
            init_scale: ``init`` enters the pyramid at the first scale of at least this
                (``levels_from``), downscaled as the exemplars are, and is refined there and
                at every finer scale; 1: at full size only.

        Returns:
            ``OptimizeResult``, ``image`` (1, 3, H, W) in [0, 1]; ``iterations`` counts the
            steps of every scale. Ctrl-C stops it with ``interrupted`` and the last image.
        """
        cfg = self.config
        seed = cfg.seed if seed is None else seed
        g = torch.Generator().manual_seed(seed)
        x, size, block = self._begin(size, init, g)
        if self.turns:
            self._regions = self._draw_regions(size, g)
        levels = list(range(len(self.scales)))
        if x is not None:  # an init from init_scale, quilted blocks at full size only
            levels = self.levels_from(init_scale if init is not None else 1.0)
            x = downscaled(x, self.scales[levels[0]], cfg.patch_size, cfg.tile)
        steps = self.level_iterations(size)
        if iterations is not None:
            steps = [iterations] * len(steps)
        result = OptimizeResult(image=torch.empty(0))
        start = time.perf_counter()
        loss, terms = math.nan, {}
        # A pixel at the border lies in one patch, an inner one in p^2: the canvas is larger
        # than the output by a margin (cut off at the end), unless the output is periodic.
        m = 0 if cfg.tile else MARGIN * (cfg.patch_size - 1)
        for level in levels:
            level_size = scaled(size, self.scales[level], cfg.patch_size)
            x = self._level_start(x, level_size, m, g).detach().to(self.device)
            self._keep(x, level, m)
            x.requires_grad_(True)
            lr = min(START_LR, self._lr(level)) if block else self._lr(level)
            opt = torch.optim.Adam([x], lr=lr)
            decay = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, max(1, steps[level]), eta_min=lr * LR_END
            )
            bank = self._bank(level)
            project_at = max(1, round(NEAREST_AT * steps[level])) if cfg.nearest_iterations else 0
            try:
                for step in range(1, steps[level] + 1):
                    if step == project_at:
                        self._project(x, level)
                        self._keep(x, level, m)
                    directions, quantiles = bank.draw(cfg.projections, g)
                    opt.zero_grad(set_to_none=True)
                    value = patch_sliced_wasserstein(
                        x, self._pyramid[level], directions, cfg.tile, g,
                        max_patches=cfg.max_patches or None, quantiles=quantiles,
                        region=self._region(level, m),
                    )  # fmt: skip
                    extra = self._extra_terms(x, level, m)
                    (value + sum(extra.values())).backward()
                    opt.step()
                    decay.step()
                    self._keep(x, level, m)
                    loss = float(value.detach())
                    terms = {k: float(v.detach()) for k, v in extra.items()}
                    result.iterations += 1
                    if on_iter is not None:
                        view = x.detach()[..., m : x.shape[-2] - m, m : x.shape[-1] - m]
                        on_iter(level, step, view.clamp(0, 1), loss)
            except KeyboardInterrupt:
                result.interrupted = True
            x = x.detach().clamp(0, 1)
            x = x[..., m : x.shape[-2] - m, m : x.shape[-1] - m]
            if result.interrupted:
                break
        result.image = x
        at_size(result, size)
        self._keep(result.image, len(self.scales) - 1, 0)  # an upsampled stop too
        result.evaluations = result.iterations
        result.terms = {"total": loss + sum(terms.values()), "patches": loss, **terms}
        result.seconds = time.perf_counter() - start
        return result

    def levels_from(self, scale: float) -> list[int]:
        """The pyramid levels from the first whose scale is at least ``scale`` (in (0, 1]) to
        full size."""
        if not 0 < scale <= 1:
            raise UserError(f"a refinement's scale must be in (0, 1], not {scale}")
        first = next(k for k, s in enumerate(self.scales) if s >= scale - 1e-9)
        return list(range(first, len(self.scales)))

    def _begin(self, size, init, g) -> tuple[torch.Tensor | None, tuple[int, int], int | None]:
        """The canvas a run refines (``init``, from ``init_scale``; or the quilted blocks of
        ``start_block``, at full size only; None: grow from noise), the output size, and the
        blocks' side."""
        if init is not None:
            x = (init[None] if init.dim() == 3 else init).float().clamp(0, 1).to(self.device)
            return x, tuple(x.shape[-2:]), None
        size = size or self.default_size()
        if min(size) < self.config.patch_size:
            raise UserError(f"output {size[1]}x{size[0]} is smaller than one patch")
        if not self.start_block:
            return None, size, None
        return self._quilt(size, self.start_block, g).to(self.device), size, self.start_block

    def _start_block(self) -> int | None:
        """The side of the blocks a synthesis starts from (``start``, STARTS), or None to
        grow it from noise."""
        cfg = self.config
        if cfg.start == "noise" or (cfg.start == "auto" and not self._repeats()):
            return None
        side = round(START_BLOCK * min(min(u.shape[-2:]) for u in self.exemplars))
        smallest = START_SMALLEST * cfg.patch_size
        if side >= smallest:
            return side
        if cfg.start == "blocks":
            raise UserError(
                f"--start blocks: a third of the exemplar's short side is under {smallest} px "
                f"({START_SMALLEST} patches); use --start noise"
            )
        return None

    def _repeats(self) -> bool:
        """Whether the exemplars are a lattice or repeat themselves (``start`` auto quilts)."""
        return self.share >= LATTICE_SHARE or self.repeat >= START_REPEAT

    def _quilt(self, size: tuple[int, int], block: int, g) -> torch.Tensor:
        """(1, C, H, W): the output quilted from ``block`` px blocks of the exemplars; one
        exemplar that repeats, each block in its lattice's phase with the blocks beside it
        (``data.repeats.lattice_shifts``), their overlaps reaching past both of its periods
        where half a block allows (``optimize.quilting.lattice_overlap``), and there fresh
        blocks only (``optimize.quilting.quilt``'s ``fresh``)."""
        h, w = size
        if min(h, w) < block:
            block = max(self.config.patch_size, min(h, w))
        sources = [u.cpu() for u in self.exemplars]
        if self.config.tile and self.config.fit_lattice and self.share >= LATTICE_SHARE:
            fits = [lattice_fit(u, (h, w), LATTICE_FIT) for u in sources]
            sources = [self._scaled(u, fit) for u, fit in zip(sources, fits, strict=True)]
            self.fitted = fits
        valid = [torch.ones(u.shape[-2:], dtype=torch.bool) for u in sources]
        shifts = lattice_shifts(sources[0]) if len(sources) == 1 and self._repeats() else None
        if self.config.tile:
            return quilt_periodic((h, w), sources, valid, block, g, LATTICE_SEAMS,
                                  LATTICE_HEALS, shifts)[None]  # fmt: skip
        # not --tile's: its blocks' phase, a pixel off here and there, drifted over the more
        # blocks of the wider overlaps, and the wrap-around bands could no longer meet both
        # sides (a 26 px running bond tiled 2 x 2, seeds 0-3: 39-78 of ~310 bricks off
        # their length, 0-2 without)
        overlap = OVERLAP if shifts is None else lattice_overlap(shifts, block)
        canvas = torch.zeros(len(sources[0]), h, w)
        everything = torch.ones(h, w, dtype=torch.bool)
        # Where the overlap holds a whole joint (wider than OVERLAP: tiles, weave, honeycomb),
        # fresh blocks only: the block that continues its neighbour as the exemplar does
        # matched its overlap exactly and won alone, so rows of blocks were strips of the
        # exemplar and a 512 px tile floor repeated its first three rows three times. 512 px,
        # seeds 0-2, recurrence (judge.recurrence) / structure: tiles 0.38, 0.41, 0.19 ->
        # 0.90, 0.86, 0.86 / 1.04, 0.99, 1.06 -> 1.10, 1.20, 1.19; weave 0.50, 0.60, 0.60 ->
        # 0.69, 0.80, 0.78 / 1.25, 1.10, 1.19 -> 1.27, 1.29, 1.42; honeycomb 0.55, 0.33, 0.40
        # -> 0.65, 0.50, 0.68 / 1.17, 1.34, 1.20 -> 1.18, 1.17, 1.14. Elsewhere a block that
        # does not continue its neighbour is cut through elements: the wall's bricks came out
        # two-toned, knit and metal_plate scored worse (docs/decisions.md, session 39).
        return quilt(canvas, everything, sources, valid, block, g, blend=False,
                     seams=LATTICE_SEAMS, heals=LATTICE_HEALS, shifts=shifts,
                     overlap=overlap, fresh=overlap > OVERLAP)[None]  # fmt: skip

    def _scaled(self, u: torch.Tensor, fit: tuple[float, float]) -> torch.Tensor:
        """``u`` (C, h, w) scaled by ``fit`` (sy, sx) of ``losses.spectrum.lattice_fit``, so
        that its lattice fits a whole number of times across the periodic output: quilted
        unscaled, a 512 px tile floor of 48 px tiles had a row of short tiles where the
        copies meet."""
        sy, sx = fit
        if (sy, sx) == (1.0, 1.0):
            return u
        self.log(f"--tile: the lattice scaled by {sy:.3f} x {sx:.3f} to fit the output whole")
        h, w = u.shape[-2:]
        scaled_size = (round(h * sy), round(w * sx))
        out = F.interpolate(u[None], scaled_size, mode="bicubic", antialias=True)[0]
        return out.clamp(0, 1)

    def _level_start(self, x, size: tuple[int, int], margin: int, g) -> torch.Tensor:
        """The canvas (1, C, H + 2 margin, W + 2 margin) a scale of output ``size`` starts
        from: grey noise around the exemplars' mean colour at the first (``x`` None), else
        ``x``, the coarser result, upsampled and extended by reflection."""
        m = margin
        if x is None:
            mean = torch.cat([u.mean((2, 3)) for u in self._pyramid[0]]).mean(0)
            canvas = (size[0] + 2 * m, size[1] + 2 * m)
            noise = START_SD * torch.randn((1, 1, *canvas), generator=g)
            return mean.view(1, -1, 1, 1).cpu() + noise
        if tuple(x.shape[-2:]) != size or m:
            x = upsample(x, size, self.config.tile)
            x = F.pad(x, (m, m, m, m), mode="reflect") if m else x
        return x

    def _lr(self, level: int) -> float:
        """The Adam learning rate at ``level``'s first step."""
        return self.config.lr

    def _bank(self, level: int) -> DirectionBank:
        """The directions and exemplar quantiles of ``level``'s steps."""
        cfg = self.config
        size = max(BANK_SIZE, cfg.projections)
        quantiles = cfg.max_patches or QUANTILES
        images = self._patch_images(level, cfg.patch_size, self._turned_at(level))
        return DirectionBank(images, cfg.patch_size, size, BANK_REFRESH, quantiles)

    def _index(self, level: int, patch: int) -> PatchIndex:
        """The exemplars' ``patch`` x ``patch`` patches at ``level``, for the nearest-patch
        projections (at most ``NEAREST_KEYS`` of them; turned ones are matched by turning
        the output's patches back, ``project_to_nearest``'s ``turns``)."""
        return PatchIndex(self._patch_images(level, patch), patch, NEAREST_DIMS, NEAREST_KEYS)

    def _patch_images(self, level: int, patch: int, turned: bool = False) -> list[torch.Tensor]:
        """The exemplars at ``level`` as images whose inner ``patch`` x ``patch`` patches are
        theirs: themselves, or extended by their first rows and columns where they wrap; with
        their turned and mirrored copies if ``turned``."""
        images = self._pyramid[level]
        if turned:
            images = [t for u in images for t in symmetries(u)]
        if not self.wraps:
            return images
        return [wrapped(u, patch) for u in images]

    def _turned_at(self, level: int) -> bool:
        """Whether ``level`` matches the exemplars' turned and mirrored copies (``turns``):
        at the scales that lay the output out, the layout scales (``COARSE_SPAN``) and those
        that project large patches (``_patch_sizes``). There the distribution is the eight
        copies' and each region of the output (``_turn_map``) is projected onto one copy.
        At the layout scales alone, the finer scales' large patches, drawn from the exemplar
        as it is, fought the turned layout (procedural cells, 1024 px: smeared, wall-less
        cells, structure 1.92); pooled at every scale, a 512 px synthesis took 2.8x the time
        for the same structure (docs/decisions.md, session 42)."""
        if not self.turns:
            return False
        layout = self._side(level) <= COARSE_SPAN * self.config.coarsest
        return layout or len(self._patch_sizes(level)) > 1

    def _turn_map(self, shape: tuple[int, int]) -> torch.Tensor:
        """(H, W) long: which symmetry of the exemplars (``data.symmetry.symmetry``) each pixel
        of a canvas of ``shape`` (margin included) is projected onto: that of the nearest of
        the ``regions`` drawn for this output, so that each region is one coherent copy.
        Pooled per patch instead, neighbouring patches took different copies and agreed
        less: procedural cells at 1024 px, structure 1.67 against 1.54, more smears."""
        centres, kinds, size = self._regions
        m = 0 if self.config.tile else MARGIN * (self.config.patch_size - 1)
        rows, cols = shape
        inner = (rows - 2 * m, cols - 2 * m)
        # read at most TURN_MAP px on the long side, then enlarged: a canvas of millions of
        # pixels against hundreds of regions would not fit
        scale = min(1.0, TURN_MAP / max(shape))
        small = (max(1, round(rows * scale)), max(1, round(cols * scale)))
        ys = ((torch.arange(small[0]) + 0.5) * rows / small[0] - m) * size[0] / inner[0]
        xs = ((torch.arange(small[1]) + 0.5) * cols / small[1] - m) * size[1] / inner[1]
        dx = (xs[:, None] - centres[:, 1]).abs()  # (w, N)
        if self.config.tile:  # the regions wrap with the output
            dx = torch.minimum(dx, size[1] - dx)
        nearest = torch.empty(small, dtype=torch.long)
        for i, y in enumerate(ys):  # a row at a time: thousands of regions fit too
            dy = (y - centres[:, 0]).abs()
            if self.config.tile:
                dy = torch.minimum(dy, size[0] - dy)
            nearest[i] = (dy.pow(2) + dx.pow(2)).argmin(-1)
        labels = kinds[nearest].float()[None, None]
        return F.interpolate(labels, size=shape, mode="nearest")[0, 0].long().to(self.device)

    def _draw_regions(self, size: tuple[int, int], g) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """The regions of an output of ``size`` (H, W) for ``_turn_map``: (N, 2) centres in
        output px, drawn uniformly, one per TURN_REGION x the exemplars' short side squared,
        and (N,) symmetries, each of the eight equally likely."""
        h, w = size
        side = TURN_REGION * min(min(u.shape[-2:]) for u in self.exemplars)
        n = max(1, math.ceil(h * w / side**2))
        centres = torch.rand(n, 2, generator=g) * torch.tensor([float(h), float(w)])
        return centres, torch.randint(0, 8, (n,), generator=g), (h, w)

    def _keep(self, x: torch.Tensor, level: int, margin: int) -> None:
        """Constrain canvas ``x`` (1, C, H + 2 margin, W + 2 margin) at ``level`` in place:
        nothing here; an editor (optimize.editing) resets the pixels it keeps."""

    def _extra_terms(self, x: torch.Tensor, level: int, margin: int) -> dict[str, torch.Tensor]:
        """Weighted scalar terms added to the patch loss of canvas ``x`` at ``level``, by name:
        none here; a remake (optimize.remake) adds its content term."""
        return {}

    def _region(self, level: int, margin: int) -> torch.Tensor | None:
        """The pixels whose patches the loss compares, (1, 1, H + 2 margin, W + 2 margin)
        bool; None: all (an editor: its hole)."""
        return None

    def _side(self, level: int) -> int:
        """The exemplars' shortest side at ``level``, px."""
        return min(min(u.shape[-2:]) for u in self._pyramid[level])

    def _patch_sizes(self, level: int) -> list[int]:
        """Sides of the patches projected onto at ``level``, largest first: large ones at the
        layout scales (``LARGE_SPAN``), then the patch itself."""
        p = self.config.patch_size
        side = self._side(level)
        full = min(min(u.shape[-2:]) for u in self._pyramid[-1])
        large = side <= min(LARGE_SPAN * self.config.coarsest, full / 2)
        return [*large_patches(p), p] if large else [p]

    def _projections(self, level: int) -> int:
        """Projections a patch size at ``level``: ``nearest_iterations``, at most
        ``FINAL_PROJECTIONS`` at full size."""
        n = self.config.nearest_iterations
        return min(n, FINAL_PROJECTIONS) if level == len(self.scales) - 1 else n

    def _spectrum_at(self, level: int) -> bool:
        """Whether ``level``'s projections start with the spectrum projection: on a lattice
        (``_lattice``), at the layout scales (``COARSE_SPAN``), where the lattice
        is laid out. At every scale it broke the grain and the tread: metal_plate 1024 px,
        structure 2.75 against 1.50 at the layout scales only (session 12)."""
        side = self._side(level)
        return self.lattice and side <= COARSE_SPAN * self.config.coarsest

    def _project(self, x: torch.Tensor, level: int) -> None:
        """Replace the pixels of leaf ``x`` (1, C, H, W) by ``_projections`` projections onto
        the exemplars' patches at ``level`` for each of ``_patch_sizes`` (each index lives
        only for its projections); a large size's are skipped where they erase (``_erases``).
        First, where ``_spectrum_at``, the projection onto the exemplars' Fourier modulus
        (the canvas taken as periodic; its margin is cut off at the end). At the layout
        scales the overlapping matches are weighted robustly (ROBUST)."""
        side = self._side(level)
        with torch.no_grad():
            y = x.detach().clamp(0, 1)
            if self._spectrum_at(level):
                target = spectrum_target([u[0].cpu() for u in self._pyramid[level]], y.shape[-2:])
                lowest = SPECTRUM_LOWEST / side
                y = spectrum_projection(y, target.to(y.device), lowest).clamp(0, 1)
            # a large patch must fit in the exemplar and the canvas at this scale
            fits = min(side, *y.shape[-2:])
            robust = ROBUST if side <= COARSE_SPAN * self.config.coarsest else None
            turns = self._turn_map(y.shape[-2:]) if self._turned_at(level) else None
            for q in [q for q in self._patch_sizes(level) if q <= fits]:
                index = self._index(level, q)
                z = y
                for _ in range(self._projections(level)):
                    stride = min(NEAREST_STRIDE, q)
                    z = project_to_nearest(z, index, stride, self.config.tile, robust, turns)
                if q > self.config.patch_size and level > 0 and self._erases(y, z, level):
                    continue
                y = z
            x.copy_(y)

    def _erases(self, before: torch.Tensor, after: torch.Tensor, level: int) -> bool:
        """Whether projecting ``before`` to ``after`` erased elements (``ERASED``): the colour
        distance to the exemplars at ``level`` at least doubled and above ``ERASED``."""
        was = colour_distance(before, self._pyramid[level])
        now = colour_distance(after, self._pyramid[level])
        return now > ERASED and now > 2 * was

    def engine_metadata(self) -> dict:
        return {
            "scales": self.scales,
            "backbone": None,
            "objective": self.description,
            "start_block": self.start_block,
            "lattice_share": round(self.share, 3),
            "repeat_strength": round(self.repeat, 3),
            "lattice_scaled": self.fitted,
            "light_evened": self.evened,
            "exemplar_turns": self.turns,
        }
