"""Repair and expand with the patch engine (issue 17): ``PatchSynthesizer``'s pyramid, Adam
steps and nearest-patch projections, with some pixels kept.

- Kept pixels at each scale: the image, downscaled as the exemplars are, where the
  downscaled hole indicator is zero (no hole pixel in the filter's support: a kept pixel
  never depends on what the hole held). After every Adam step and every nearest-patch
  projection they are reset, so only the hole moves; at full scale they are the input's
  own values, so the saved PNG keeps their bytes.
- Statistics: separate exemplars if given, else the image's own patches that lie wholly in
  its kept pixels at that scale (``valid`` of ``losses.patches.DirectionBank`` and
  ``losses.nearest.PatchIndex``). The loss compares only the output's patches that touch
  the hole (``region``): matched with the kept ones, the hole's patches drew the middle
  quantiles, which a flat or blurred fill already had (a blurred 160 px cells repair,
  boundary seam ratio 3.6).
- After each scale's projections, the patches across the hole's edge are projected once
  more, matched by their kept pixels (``_project``): the fill continues what lies beside it.
- Start, at the coarsest scale: the kept pixels, and noise around the kept pixels' mean
  colour in the hole (the hole is filled with that colour before downscaling).
- A large hole leaves too thin a kept ring at the coarsest scales: scales where the image
  holds fewer than ``MIN_PATCHES`` whole patches are skipped, so the run starts at the first
  scale with enough (the kept ring already fixes the layout around the hole).
- ``fill_start = "blocks"`` (and ``"auto"`` where the sources hold enough whole blocks):
  the hole starts from blocks of the kept pixels (or of the exemplars) copied in and
  blended into the ring (``optimize.quilting``, ``optimize.blending``), refined at full
  scale only: grown from noise, a large hole in a brick wall had broken courses, and on
  every hole measured the blocks joined better (docs/decisions.md, sessions 16-17).
- The full-scale refinement of a start (copied blocks, or ``init``) compares the hole's
  patches with the start's own patches' nearest kept (or exemplar) patches
  (``conditional_patches``), not with every kept patch of the image: a hole of one element
  in a large photo cannot hold the whole photo's patch distribution, and matching it pushed
  its whites whiter and the rest dark and smooth (a 4000 x 2866 daisies photo, a 300 px
  hole: a dark box). Its projections are the boundary's only (``_project``).
  docs/decisions.md, session 22.
- Expand is repair of a larger canvas whose hole is everything outside the image, learnt
  from the image itself (``expand_canvas``).
- Only a window around the hole is synthesised (``hole_window``): the hole's bounding box
  grown by its extent each way, clipped to the image; the statistics still come from every
  kept pixel of the image. The pixels outside the window are kept as they are.

Convention: images are (C, H, W) float in [0, 1]; masks (H, W) bool, True = fill.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F

from configs import SynthConfig
from configs.editing import ALPHA, ANCHORS
from data.errors import UserError
from data.images import load_exemplars, load_image
from data.masks import alpha_fill_mask, image_format, load_fill_mask
from data.repeats import lattice_shifts
from data.sizes import parse_size
from losses.nearest import NEAREST_DIMS, PatchIndex, project_boundary, sampled_patches
from losses.patches import downscaled
from optimize.patches import (
    BANK_REFRESH,
    BANK_SIZE,
    LATTICE_SHARE,
    NEAREST_KEYS,
    QUANTILES,
    START_LR,
    DirectionBank,
    PatchSynthesizer,
)
from optimize.quilting import (
    CANDIDATES,
    EDIT_PHASE_TOLERANCE,
    HEALS,
    LATTICE_HEALS,
    LATTICE_SEAMS,
    OFFSET_LIMIT,
    RING_SIDE,
    RING_WEIGHT,
    SEAMS,
    block_side,
    quilt,
    whole_blocks,
)

KNOWN_TOLERANCE = 1e-4  # a downscaled pixel is kept when its hole share is below this
MIN_PATCHES = 256  # whole patches the image must hold at a scale to learn from it there
# After each scale's projections, the patches across the hole's edge are matched with their
# filled pixels weighted BOUNDARY_FILL_WEIGHT (their kept ones 1), on a grid of this stride
# (``losses.nearest.project_boundary``). The plain projection matches a straddling patch by
# all of its pixels, so the fill beside the edge was a compromise that did not continue the
# kept pixels: knit 512 px with a 256x192 hole, seam 3.62 -> 1.83 (an intact image 1.10),
# no box left by eye (session 11). 0 copies the kept pixels' continuation alone and its mean
# over the overlapping matches blurs a band inside the edge; 0.3 joins worse (a 256 px
# knit, applied once at the end: 0.32 blurred, 0.1 1.34, 0.3 2.22, 1 3.18, default 4.38).
BOUNDARY_FILL_WEIGHT = 0.1
BOUNDARY_STRIDE = 2
# ``fill_start = "blocks"`` or ``"auto"``: the copied blocks are as large as the sources hold
# (``optimize.quilting.block_side``) but at least QUILT_SMALLEST patches wide.
QUILT_SMALLEST = 4
# A repair synthesises a window of the image around its hole (``hole_window``): its bounding
# box grown by WINDOW_REACH times its extent, at least WINDOW_LEAST px, each way. A fill only
# meets the pixels near it (the blocks' overlaps, the projections' p - 1 px, the membrane's
# ring), but every step and projection ran over the whole image, and the projections searched
# all of its kept patches (now NEAREST_KEYS, as a synthesis does): a 128 px hole in a 921 x 660
# photo 294 -> 77 s, a 256 px hole in a 1228 x 880 one 560 -> 140 s (docs/decisions.md,
# session 21). Every hole the README measures lies within its extent of each edge, so its
# window is the whole image and its output is unchanged (checked byte for byte).
WINDOW_REACH = 1.0
WINDOW_LEAST = 128
# The conditional target (``conditional_patches``) searches the start's hole patches on a grid
# of at least this stride, coarser where it would hold more than CONDITIONAL_QUERIES of them:
# a sample of their distribution. Every one of the 201k stride-2 patches of a 614 x 440 photo
# expanded to 1228 x 880 took 217 s to search; the sample's quantiles are resampled anyway.
CONDITIONAL_STRIDE = 2
CONDITIONAL_QUERIES = 2**14


def kept_at(fill: torch.Tensor, scale: float, patch: int) -> torch.Tensor:
    """(H, W) bool fill mask -> (1, 1, h, w) bool, True where the pixel at ``scale`` is kept
    (sizes as ``losses.patches.downscaled`` gives them)."""
    share = downscaled(fill.float()[None, None], scale, patch)
    return share < KNOWN_TOLERANCE


def whole_patches(kept: torch.Tensor, patch: int) -> torch.Tensor:
    """(1, 1, h, w) bool kept pixels -> (P,) bool over the P = (h - p + 1)(w - p + 1) inner
    patches, row-major: those wholly in kept pixels."""
    return whole_blocks(kept[0, 0], patch).flatten()


def seam_ratio(img: torch.Tensor, fill: torch.Tensor) -> float:
    """Mean squared pixel step across the boundary between filled and kept pixels, over the
    mean squared step between all other neighbours (1: the boundary is an ordinary step;
    >> 1: a visible border). ``img`` (C, H, W), ``fill`` (H, W) bool. As ``bench.judge``'s
    seam ratio, with the mask's boundary in place of the wrap-around."""
    img, fill = img.float(), fill.to(img.device)
    steps_x = (img[:, :, 1:] - img[:, :, :-1]).pow(2).mean(0)
    steps_y = (img[:, 1:] - img[:, :-1]).pow(2).mean(0)
    across_x = fill[:, 1:] != fill[:, :-1]
    across_y = fill[1:] != fill[:-1]
    across = torch.cat([steps_x[across_x], steps_y[across_y]])
    inside = torch.cat([steps_x[~across_x], steps_y[~across_y]])
    if not len(across) or not len(inside):
        return float("nan")
    return float(across.mean() / inside.mean().clamp_min(1e-12))


def conditional_patches(
    image: torch.Tensor, fill: torch.Tensor, index: PatchIndex, stride: int = 1,
    limit: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """(1, C, H, W) image, (H, W) bool fill mask -> (M, C p p): for each of the image's M
    inner p x p patches (p: ``index.patch``) that hold a filled pixel, on the finest grid of
    stride at least ``stride`` that holds at most ``limit`` of them (None: no limit), the
    indexed patch nearest to it. Their distribution is the one the fill should have given
    what it already holds: a small hole's share of the image's, not all of it."""
    p = index.patch
    hole = fill[None, None].float().to(image.device)
    touches = F.max_pool2d(hole, p, stride).flatten() > 0
    while limit is not None and int(touches.sum()) > limit:
        stride += 1
        touches = F.max_pool2d(hole, p, stride).flatten() > 0
    with torch.no_grad():
        queries = F.unfold(image.float(), p, stride=stride)[0].T[touches]  # (M, C p p)
        return index.patches[index.nearest(queries)]


def hole_window(
    fill: torch.Tensor, reach: float = WINDOW_REACH, least: int = WINDOW_LEAST
) -> tuple[slice, slice]:
    """(H, W) bool fill mask -> (rows, columns) of the window a repair synthesises: the
    hole's bounding box grown by ``reach`` times its extent (its longer side), at least
    ``least`` px, each way, clipped to the image."""
    rows, cols = torch.nonzero(fill, as_tuple=True)
    extent = int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1
    r = max(least, math.ceil(reach * extent))
    h, w = fill.shape
    return (
        slice(max(0, int(rows.min()) - r), min(h, int(rows.max()) + 1 + r)),
        slice(max(0, int(cols.min()) - r), min(w, int(cols.max()) + 1 + r)),
    )


def expand_canvas(image: torch.Tensor, size: tuple[int, int], anchor: str = "center"):
    """(C, h, w) image, (H, W) canvas -> ((C, H, W) canvas with the image at ``anchor``,
    (H, W) bool fill mask: everything outside the image). Refuses a canvas that is not at
    least the image's size, or is the image's size (nothing to expand)."""
    c, h, w = image.shape
    height, width = size
    if height < h or width < w:
        raise UserError(f"--expand {width}x{height} is smaller than the image ({w}x{h})")
    if (height, width) == (h, w):
        raise UserError(f"--expand {width}x{height} is the image's own size: nothing to expand")
    fy, fx = ANCHORS[anchor]
    top, left = round(fy * (height - h)), round(fx * (width - w))
    canvas = image.new_zeros(c, height, width)
    canvas[:, top : top + h, left : left + w] = image
    fill = torch.ones(height, width, dtype=torch.bool)
    fill[top : top + h, left : left + w] = False
    return canvas, fill


class PatchEditor(PatchSynthesizer):
    """Fill the masked pixels of an image by patch synthesis, the others kept bit for bit.

    Example::

        editor = PatchEditor.repair("wall.png", "hole.png")  # white = fill
        result = editor.synthesize(seed=1)  # result.image: (1, 3, H, W), the hole filled
        editor.save(result, "fixed.png", overwrite=True)
        editor = PatchEditor.expand("wall.png", (1024, 1024), anchor="top-left")

    Args:
        image: (C, H, W) in [0, 1], the canvas; the output has its size.
        fill: (H, W) bool, True where pixels are synthesised.
        exemplars: paths or (C, h, w) tensors to learn from (pooled); None: the image's own
            patches that lie wholly in its kept pixels.
        config, log, overrides: as ``PatchSynthesizer``.
    """

    EVENS_LIGHT = False
    KEEPS_LIGHT = "repair and expand keep the light, so that the fill meets the kept pixels"
    KEEPS_TURNS = "repair and expand fill from the exemplar as it is, to meet the kept pixels"

    def __init__(
        self, image, fill, exemplars=None, config: SynthConfig | None = None, log=print, **kw
    ):
        image, fill = image.detach().float().clamp(0, 1), fill.bool().cpu()
        if tuple(fill.shape) != tuple(image.shape[-2:]):
            raise UserError(f"mask {tuple(fill.shape)} and image {tuple(image.shape)} differ")
        if not fill.any():
            raise UserError("the mask is empty (no pixel to fill): nothing to repair")
        if fill.all() and exemplars is None:
            raise UserError(
                "the mask covers the whole image: nothing to learn from; give exemplars to "
                "learn from, or a smaller mask"
            )
        own = exemplars is None
        if own:
            sources, names, colour = [image], [], image[:, ~fill].mean(1)
        else:
            sources, names = load_exemplars(exemplars, log)
            colour = torch.cat([u.flatten(1) for u in sources], 1).mean(1)
            if any(len(u) != len(image) for u in sources):
                raise UserError(f"the exemplars' channels differ from the image's ({len(image)})")
        canvas = torch.where(fill, colour.view(-1, 1, 1), image)
        super().__init__([canvas] if own else sources, config, log, **kw)
        self.fill, self.own, self.sources = fill, own, names
        self.canvas = canvas.to(self.device)
        self.window = hole_window(fill)
        self._conditional = None  # the full-scale refinement's target patches (``_begin``)
        self.block = self._block_side()
        # the blocks that grow the fill's first band from the kept pixels (``blocks``); a
        # lattice's fill has none, its blocks are sized to take the ring's phase: a first
        # band of small blocks lost a little on a brick wall's repair (seam 0.49 -> 0.57,
        # edge judge 0.77 -> 0.82 over seeds 0-2; docs/decisions.md, session 30)
        smallest = QUILT_SMALLEST * self.config.patch_size
        grows = self.block and not self._lattice_fill()
        self.ring_block = max(smallest, round(self.block * RING_SIDE)) if grows else None
        self._set_scales()
        if self.block:
            self.description += f"; started from {self.block} px copied blocks"

    def _set_scales(self) -> None:
        """The kept pixels, their values and the whole patches at every scale; skip the
        coarse scales with fewer than MIN_PATCHES whole patches (module docstring)."""
        p = self.config.patch_size
        inside = self.fill[self.window]
        kept = [kept_at(inside, s, p).to(self.device) for s in self.scales]
        whole = [None] * len(kept)
        if self.own:  # the image's own whole patches, inside the window or not
            whole = [
                whole_patches(kept_at(self.fill, s, p).to(self.device), p) for s in self.scales
            ]
        counts = [int(w.sum()) if w is not None else MIN_PATCHES for w in whole]
        if counts[-1] < MIN_PATCHES:
            raise UserError(
                f"the image's kept part holds {counts[-1]} whole {p}x{p} patches, fewer than "
                f"{MIN_PATCHES}: too little to learn from; give a smaller mask or exemplars"
            )
        first = max((k + 1 for k, n in enumerate(counts) if n < MIN_PATCHES), default=0)
        self.skipped = first
        self.scales, self._pyramid = self.scales[first:], self._pyramid[first:]
        self._kept, self._whole = kept[first:], whole[first:]
        window = self.canvas[(slice(None), *self.window)][None]
        self._targets = [downscaled(window, s, p) for s in self.scales]
        filled = int(self.fill.sum())
        self.description += f"; filling {filled} px of {self.fill.numel()}"
        if self.window_size() != self.default_size():
            h, w = self.window_size()
            self.description += f" in a {w}x{h} window around the hole"
        if first and not self.block:  # copied blocks are refined at full scale only
            self.description += f", from scale {first + 1} of {len(self.scales) + first}"

    @classmethod
    def repair(cls, image, mask, exemplars=None, config=None, log=print, **overrides):
        """An editor that fills ``image`` (a path or (C, H, W) tensor) where ``mask`` is set:
        a path (white = fill), ``"alpha"`` (the image file's transparent pixels) or an
        (H, W) bool tensor (True = fill)."""
        img, source = _image(image, log)
        if isinstance(mask, str) and mask == ALPHA:
            if isinstance(image, torch.Tensor):
                raise UserError("--mask alpha needs the image as a file")
            fill = alpha_fill_mask(image)
            if fill is None:
                raise UserError(
                    f"{image}: has no alpha channel; give --mask FILE (white = fill) instead"
                )
            if not fill.any():
                raise UserError(f"{image}: its alpha is opaque everywhere: nothing to repair")
        elif isinstance(mask, torch.Tensor):
            fill = mask.bool()
        else:
            fill = load_fill_mask(mask, tuple(img.shape[-2:]))
        editor = cls(img, fill, exemplars, config, log, **overrides)
        editor.sources = [source, *editor.sources]
        return editor

    @classmethod
    def expand(cls, image, size, anchor="center", exemplars=None, config=None, log=print, **kw):
        """An editor that grows ``image`` (path or (C, h, w) tensor) to ``size`` (H, W), the
        image kept at ``anchor`` (configs.editing.ANCHORS) and learnt from."""
        img, source = _image(image, log)
        if anchor not in ANCHORS:
            raise UserError(f"unknown anchor '{anchor}'; choose from {', '.join(ANCHORS)}")
        canvas, fill = expand_canvas(img, size, anchor)
        editor = cls(canvas, fill, [img] if exemplars is None else exemplars, config, log, **kw)
        editor.sources = [source, *editor.sources[exemplars is None :]]
        return editor

    def default_size(self) -> tuple[int, int]:
        return tuple(self.canvas.shape[-2:])

    def window_size(self) -> tuple[int, int]:
        """(h, w) of the window synthesised (``hole_window``)."""
        rows, cols = self.window
        return rows.stop - rows.start, cols.stop - cols.start

    def synthesize(self, size=None, seed=None, iterations=None, init=None, on_iter=None):
        """As ``PatchSynthesizer.synthesize``, at the canvas's size only (``init`` too); with
        ``block``, the fill starts from copied blocks, refined at full scale only. Only the
        window around the hole is synthesised; ``on_iter`` sees that window."""
        began = time.perf_counter()  # the copied blocks and the target's search count too
        if size is not None and tuple(size) != self.default_size():
            h, w = self.default_size()
            raise UserError(f"an edit keeps its canvas's size, {w}x{h}")
        if init is not None:
            init = (init[None] if init.dim() == 3 else init)[(..., *self.window)]
        if init is None and self.block:
            result = self._quilted(seed, iterations, on_iter)
        else:
            result = super().synthesize(self.window_size(), seed, iterations, init, on_iter)
        whole = self.canvas[None].to(result.image).clone()
        whole[(..., *self.window)] = result.image
        result.image = whole
        result.seconds = time.perf_counter() - began
        return result

    def _quilted(self, seed, iterations, on_iter):
        """The fill from copied blocks (``optimize.quilting``), refined at full scale with
        Adam steps of ``optimize.patches.START_LR``."""
        seed = self.config.seed if seed is None else seed
        g = torch.Generator().manual_seed(seed)
        return super().synthesize(None, seed, iterations, self.blocks(g), on_iter)

    def blocks(self, generator: torch.Generator, blend: bool = True) -> torch.Tensor:
        """(C, h, w): the window's canvas with its hole filled from copied blocks
        (``optimize.quilting.quilt``: a first band of ``ring_block`` blocks grown from the
        kept pixels, each the most coherent of CANDIDATES, then ``block`` ones, also grown; on
        a lattice ``block`` ones only, grown in phase), as the refinement starts from it.
        Grown, not in raster order: a lattice's raster quilt began at the canvas's corner, so
        an expanded wall's side bands followed the rows of the band above the kept image, a
        whole number of uneven courses away, and met the kept rows a few px off (steps along
        its edges); grown from the kept pixels, every block takes the rows beside it
        (docs/decisions.md, session 40)."""
        sources, valid = self._quilt_sources(), self._quilt_valid()
        window = self.canvas[(slice(None), *self.window)].cpu()
        fill = self.fill[self.window]
        lattice = self.ring_block is None
        seams, heals = (LATTICE_SEAMS, LATTICE_HEALS) if lattice else (SEAMS, HEALS)
        shifts, sourced = self._phase(sources, valid) if lattice else (None, None)
        return quilt(window, fill, sources, valid, self.block, generator, blend, RING_WEIGHT,
                     OFFSET_LIMIT, grow=True, ring_side=self.ring_block,
                     candidates=CANDIDATES, seams=seams, heals=heals, shifts=shifts,
                     sourced=sourced, colour_first=EDIT_PHASE_TOLERANCE)  # fmt: skip

    def _phase(self, sources, valid) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """A lattice fill's ``quilt`` arguments ``shifts`` and ``sourced``: the one source's
        lattice shifts (``data.repeats.lattice_shifts``) and, where it is the image itself,
        where the window's kept pixels lie in it, so that the blocks take their phase."""
        if len(sources) != 1:
            return None, None
        shifts = lattice_shifts(sources[0], valid[0])
        if not self.own:
            return shifts, None
        rows, cols = self.window
        yy, xx = torch.meshgrid(torch.arange(rows.start, rows.stop),
                                torch.arange(cols.start, cols.stop), indexing="ij")  # fmt: skip
        sourced = torch.stack([torch.zeros_like(yy), yy, xx])
        return shifts, sourced.masked_fill(self.fill[self.window].cpu(), -1)

    def _begin(self, size, init, g):
        """As ``PatchSynthesizer._begin``; a start refined at full scale (blocks or ``init``)
        also sets the conditional target its steps match (``conditional_patches``)."""
        x, size, block = super()._begin(size, init, g)
        self._conditional = None
        if x is not None:
            level = len(self.scales) - 1
            index = self._index(level, self.config.patch_size)
            fill = self.fill[self.window]
            self._conditional = conditional_patches(
                x, fill, index, CONDITIONAL_STRIDE, CONDITIONAL_QUERIES
            )
        return x, size, block

    def _lr(self, level: int) -> float:
        # with blocks, every run refines a start at full scale only (``_quilted`` or ``init``)
        return min(START_LR, self.config.lr) if self.block else super()._lr(level)

    def _block_side(self) -> int | None:
        """The side of the blocks the fill starts from, or None to grow it from noise:
        ``fill_start`` "grow" grows; "blocks" refuses sources without 16 whole blocks of
        ``QUILT_SMALLEST`` patches; "auto" grows there, and says so."""
        start = self.config.fill_start
        if start == "grow":
            return None
        smallest = QUILT_SMALLEST * self.config.patch_size
        side = block_side(self._quilt_valid(), self.fill, smallest, self._lattice_fill())
        if side is None and start == "blocks":
            raise UserError(
                f"--fill-start blocks: the kept pixels hold too few whole {smallest} px blocks "
                "to copy; use --fill-start grow"
            )
        if side is None:
            self.log(
                f"the fill grows from noise: the kept pixels hold too few whole {smallest} px "
                "blocks to copy"
            )
        return side

    def _lattice_fill(self) -> bool:
        # a lattice needs blocks free to take the ring's phase (quilting._free); the canvas's
        # own share counts its flat hole too: honeycomb 0.37 intact, 0.17 with half its
        # area a hole; cells and knit 0.0 and 0.09 (session 18)
        return self.share >= (LATTICE_SHARE / 2 if self.own else LATTICE_SHARE)

    def _quilt_sources(self) -> list[torch.Tensor]:
        return [self.canvas.cpu()] if self.own else [u.cpu() for u in self.exemplars]

    def _quilt_valid(self) -> list[torch.Tensor]:
        if self.own:
            return [~self.fill]
        return [torch.ones(u.shape[-2:], dtype=torch.bool) for u in self.exemplars]

    def _bank(self, level: int) -> DirectionBank:
        cfg = self.config
        size = max(BANK_SIZE, cfg.projections)
        quantiles = cfg.max_patches or QUANTILES
        valid = [self._whole[level]] if self.own else None
        pyramid = self._pyramid[level]
        # a start refined (full scale only) matches its conditional target (``_begin``)
        return DirectionBank(
            pyramid, cfg.patch_size, size, BANK_REFRESH, quantiles, valid, self._conditional
        )

    def _patch_sizes(self, level: int) -> list[int]:
        # No large patches (optimize.patches.LARGE_SPAN) here: a fill made of large exemplar
        # blocks joins the kept pixels worse (the repair test's seam ratio 1.1 -> 2.0).
        return [self.config.patch_size]

    def _start_block(self) -> None:
        # an edit starts from its kept pixels (and ``fill_start``), never from a quilted canvas
        return None

    def _wraps(self) -> bool:
        # The exemplar is the image being edited (or exemplars beside it) and its patches are
        # counted per kept pixel (``valid``); an edit's canvas is never taken as periodic.
        return False

    def _lattice(self) -> bool:
        # The image's spectrum holds the hole (filled flat) and the spectrum projection moves
        # every pixel; the fill must continue the kept pixels, not the whole image's modulus.
        return False

    def _index(self, level: int, patch: int) -> PatchIndex:  # patch: the only size projected
        # at most NEAREST_KEYS of the kept patches, as a synthesis searches
        valid = [self._whole[level]] if self.own else None
        return PatchIndex(self._pyramid[level], patch, NEAREST_DIMS, NEAREST_KEYS, valid)

    def _project(self, x: torch.Tensor, level: int) -> None:
        """The engine's projections, then ``project_boundary``: the patches that straddle the
        hole's edge are matched by their kept pixels, so the fill continues what lies beside
        it (BOUNDARY_FILL_WEIGHT). A start refined at full scale gets the boundary's only:
        the plain projection's mean of overlapping matches smeared the blocks' cuts into
        blotches (cells) and smudges (bricks); without it, seed 0, seam 0.75 -> 0.58 and
        0.85 -> 0.57 (docs/decisions.md, session 22)."""
        if self._conditional is None:
            super()._project(x, level)
        kept = self._kept[level]
        m = (x.shape[-1] - kept.shape[-1]) // 2
        p = self.config.patch_size
        with torch.no_grad():
            view = x[..., m : x.shape[-2] - m, m : x.shape[-1] - m]
            valid = [self._whole[level]] if self.own else None
            # exact (no basis), the same patches as the plain projections search
            patches = sampled_patches(self._pyramid[level], p, NEAREST_KEYS, valid)
            y = project_boundary(
                view.detach().clamp(0, 1), ~kept, patches, p, BOUNDARY_STRIDE,
                BOUNDARY_FILL_WEIGHT,
            )  # fmt: skip
            view.copy_(y)

    def _keep(self, x: torch.Tensor, level: int, margin: int) -> None:
        with torch.no_grad():
            h, w = x.shape[-2:]
            view = x[..., margin : h - margin, margin : w - margin]
            view.copy_(torch.where(self._kept[level], self._targets[level].to(x), view))

    def _region(self, level: int, margin: int) -> torch.Tensor:
        m = margin
        return F.pad(~self._kept[level], (m, m, m, m), value=True) if m else ~self._kept[level]

    def engine_metadata(self) -> dict:
        return {
            **super().engine_metadata(),
            "edit": {
                "filled_pixels": int(self.fill.sum()),
                "skipped_scales": self.skipped,
                "quilt_block": self.block,
                "quilt_ring_block": self.ring_block,
                "quilt_ring_candidates": CANDIDATES if self.ring_block else None,
                "window": [self.window[0].start, self.window[1].start, *self.window_size()],
            },
        }

    def seam(self, result) -> float:
        """``seam_ratio`` of a result at the mask's boundary."""
        return seam_ratio(result.image[0], self.fill)


def _image(image, log) -> tuple[torch.Tensor, str]:
    if isinstance(image, torch.Tensor):
        return image.detach().float().clamp(0, 1), f"tensor {tuple(image.shape)}"
    img, note = load_image(image)
    log(note)
    return img, str(image)


def make_editor(exemplars: list, cfg: SynthConfig, log=print):
    """The editor ``cfg`` asks for (--mask, --expand or --map) on the command line's
    exemplars: the first one is the image edited (or the albedo), the rest exemplars."""
    if cfg.maps:
        from optimize.stacks import StackSynthesizer

        if len(exemplars) != 1:
            raise UserError("--map: give exactly one exemplar, the albedo the maps align with")
        return StackSynthesizer.from_files(exemplars[0], cfg, log)
    image, rest = exemplars[0], exemplars[1:] or None
    if cfg.mask:
        editor = PatchEditor.repair(image, cfg.mask, rest, cfg, log)
    else:
        editor = PatchEditor.expand(image, parse_size(cfg.expand), cfg.anchor, rest, cfg, log)
    bits = image_format(image)[0]
    if bits > cfg.bits:
        log(f"writing {bits}-bit PNGs, as the image is: its kept pixels stay exact")
        editor.config = dataclasses.replace(editor.config, bits=bits)
    return editor
