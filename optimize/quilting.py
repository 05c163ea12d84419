"""Copied blocks as a start (image quilting, Efros and Freeman 2001, placed by the pixels
already there as in Criminisi et al. 2004's exemplar fill): of a large hole in repair and
expand (``optimize.editing``), and of a lattice's synthesis (``optimize.patches``, ``--start``,
where the whole canvas is the hole and nothing is blended).

The patch editor grows a fill from noise, scale by scale, with 7 px patches; a hole far from
every kept pixel has no layout to grow from at the coarse scales (its kept ring is too thin
to learn from there), and its middle came out as mush (docs/decisions.md, sessions 12-14).
Copied blocks carry the layout: each block is a ``block`` x ``block`` square of a source that
lies wholly in its valid pixels, chosen where it best agrees (least squares) with the pixels
already known in its window (kept, or pasted by earlier blocks). The pasted fill is then
blended into the kept pixels (``optimize.blending``: the blocks' mismatch with the ring spread
smoothly over the hole), and the editor refines the seams between blocks at full scale.

Convention: images (C, H, W) float in [0, 1]; masks (H, W) bool.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from data.repeats import lattice_periods
from optimize.blending import membrane
from optimize.coherence import Coherence

# Among the candidate blocks, one is drawn at random from those whose error is within
# TOLERANCE of the best (Efros and Freeman's 0.1), so that two seeds differ.
TOLERANCE = 0.1
OVERLAP = 1 / 4  # of the block side: how far each block reaches into its neighbours
# The blend below takes its values on the kept pixels next to the hole: where a block picked
# by its whole overlap disagrees with them sharply (the hole's edge cuts a daisy, a disc),
# the blend spreads that step into the fill as a glow fading over tens of pixels (a daisies
# photo expanded 2x: a white frame). In the pick, the kept pixels within RING px of the hole
# weigh 1 + RING_WEIGHT against the other kept pixels (their total unchanged, so that the
# overlap with earlier blocks keeps its share): the blocks agree where the blend reads them.
# Edge judge (bench.edges, 1 = the real surroundings) and seam, seed 0: daisies expanded 2x
# 0.92 -> 0.74, 0.41 -> 0.53; red_dots expanded 5.24 -> 3.48, 0.61 -> 0.44. Its cost: a
# 300 px hole in a 4000 px daisies photo, seam 0.74 -> 1.47, a block's cut through a daisy's
# centre (docs/decisions.md, session 23).
RING = 3
RING_WEIGHT = 9.0
# The blend is for light that drifts (a few hundredths). Where the hole's edge cuts an element
# that no block continues (a daisy's white against a block's leaves), the ring's offset is
# large (up to 0.7): spread harmonically, it made a glow tens of px wide, tinted (white minus
# green is bluish), and shifted the fill's colour around it (a daisies photo expanded 2x: a
# bluish glow and a brown smudge at a corner of the photo). The editor splits each channel's
# offset: its part within OFFSET_LIMIT of its median over the ring is spread harmonically
# (the light), the rest only within STEP_REACH px (``membrane``'s screened form: the cut
# element's step softened, not spread). Edge judge (bench.edits, 1 = the real surroundings)
# / seam, seed 0: red_dots expanded 3.48 / 0.44 -> 2.60 / 0.62 (the limit alone 2.55 / 1.48:
# a hard cut; reach 6 2.57 / 0.50, its 4-8 px band 1.94 against 1.58); daisies 0.74 / 0.45
# -> 0.74 / 0.49; the daisies photo expanded 2x (CLI): no glow, seam 0.47 -> 0.58
# (docs/decisions.md, session 27).
OFFSET_LIMIT = 0.1
STEP_REACH = 3.0
# Where the hole's edge cuts an element, the pixels beside it must continue that element;
# a kept pixel is never rewritten, so the only cut there is the edge itself, and a block
# whose long overlap holds several cut elements rarely continues them all (red_dots
# expanded: discs with a straight bite). The editor first grows a band along the edge from
# blocks of RING_SIDE of its block side, each placed where the front is most known
# (``_grown``), then fills the rest with its blocks, whose cuts may run through the band.
RING_SIDE = 1 / 2
# Among the band's near-best blocks, the one drawn at random often continued a cut disc with
# another (a C-shape, a crescent): the band's blocks are each the most coherent of CANDIDATES
# drawn (``optimize.coherence``). Edge judge, seeds 0-2 (bench.edits): red_dots expanded
# 1.28 -> 0.92, daisies 0.70 -> 0.61, the cells and knit level (docs/decisions.md, session 31).
CANDIDATES = 8
# A block's least-error cut must cross any element that lies across the overlap in one block
# and not in the other; red_dots' discs (up to ~80 px) are wider than a 128 px block's 32 px
# overlap, and one in ten came out cut straight or bitten. Every block is the one of SEAMS
# drawn within TOLERANCE whose cuts cost least (the squared differences along them). The
# photos quilted at 1024 px, seeds 0-2, a 700 px corner counted by eye: red_dots' cut discs
# 7 -> 4 and 7 -> 2; structure / score (bench.race.tiled_judge) level within the seeds'
# scatter: red_dots 1.22 / 0.88 -> 1.20 / 0.95, honeycomb 1.16 / 1.05 -> 1.15 / 0.96, knit
# 1.43 / 1.09 -> 1.37 / 1.07; 2.1 -> 2.4 s (the cuts of the 16 computed at once). Choosing by
# half-scale coherence (CANDIDATES' judge) instead took 330-360 s and cut as many discs
# (docs/decisions.md, session 33). A lattice's start keeps one block drawn (LATTICE_SEAMS):
# honeycomb's default synthesis (quilted, then refined at full size), 512 px, seeds 0-3,
# structure 1.05, 1.19, 1.16, 1.40 with one against 1.18, 1.43, 1.30, 1.44 with SEAMS.
SEAMS = 16
LATTICE_SEAMS = 1
# Even the cheapest of SEAMS cuts crosses a disc where none of the blocks lets it pass around
# (red_dots quilted at 1024 px: a comma, bitten and flat-sided discs, two fused). After the
# fill, the quilt heals its worst seams (Kwatra et al. 2003's refinement: new patches placed
# where the seams cost most): HEALS tries per block of the fill, each re-pasting one block
# (cut on its four sides, the cheapest of ``seams``) over the square of its side less two
# overlaps where the seams' mismatch (``seam_error``) sums highest, kept only if that lowers
# the mismatch around it (docs/decisions.md, session 34).
HEALS = 1.0
LATTICE_HEALS = 0.0
# A lattice's blocks are drawn in phase with what is known around them (``quilt``'s
# ``shifts``): the overlap alone does not fix a running bond's phase, whose head joints are
# a small share of its pixels beside the bricks' colours (a 128 px brick wall quilted at
# 1024 px, seeds 0-1: bricks more than 15% off their length 34 of 154 and 62 of 158 without,
# 4 and 6 with; repaired, 192 px hole, six seeds: 45 of 74 and 5 of 72). A block is in phase
# where its share of the known pixels in phase is within PHASE_SLACK of the best block's.
PHASE_SLACK = 0.1
# An edit's blocks also meet the kept pixels beyond the hole, where a block in phase but of
# another colour leaves a seam the blend spreads: a 128 px brick wall's 192 px repair,
# seeds 0 / 1, seam 0.50 / 0.49 without the phase, 2.13 / 2.30 with it (a green-grey tint
# along the hole's bottom joint, a magenta brick). An edit's blocks are drawn in phase among
# those within EDIT_PHASE_TOLERANCE of the least squared difference: seam 0.47 / 0.48, the
# edge judge (bench.edits) 0.82 / 0.80 (0.79 / 0.80 without); bricks off their length over
# six seeds 12 of 72 (45 of 74 without, 5 of 72 in phase first). A synthesis keeps the phase
# first (its 1024 px wall: 4 and 6 of about 150 off, 7 and 29 colour first).
EDIT_PHASE_TOLERANCE = 0.2
# A cut through an element joins two blocks' colours inside it; two blocks in phase agree on
# the joints between elements (grout, mortar, cell walls), so a cut finds a cheap path where
# the overlap holds a whole joint. A lattice's synthesis overlaps reach past both of its
# periods and JOINT of them (the grout's width), where half the block allows: a 48 px tile
# floor (4 px grout) quilted at 1024 px with 128 px blocks came out with vertical bands of
# two-toned tiles where the quarter-block overlaps fell inside tiles, and clean with 54 px
# overlaps. Where they do not fit (bricks longer than half a block, courses of no one
# height), a wider overlap only meant more cuts through elements: the 64 px bricks at 512
# px, half-block overlaps, smeared two-toned bricks, structure 1.02, 1.18, 0.93 -> 1.23,
# 1.14, 1.12 (seeds 0-2); they keep OVERLAP.
JOINT = 1 / 8


def lattice_overlap(shifts: torch.Tensor, side: int) -> float:
    """The overlap, of the block ``side``, of a lattice's quilt: one that reaches past both
    of its periods (``data.repeats.lattice_periods`` of its ``shifts``) and JOINT of them,
    where that is at least OVERLAP and at most half the block; else OVERLAP."""
    periods = lattice_periods(shifts)
    if None in periods:
        return OVERLAP
    reach = math.ceil(max(periods) * (1 + JOINT))
    return max(OVERLAP, reach / side) if reach <= side // 2 else OVERLAP


def correlate(
    image: torch.Tensor, kernel: torch.Tensor, spectrum: torch.Tensor | None = None
) -> torch.Tensor:
    """Sum over channels of the valid cross-correlation of ``image`` (C, H, W) with
    ``kernel`` (C, b, b): (H - b + 1, W - b + 1), by FFT; ``spectrum``, if given, is
    ``image``'s ``rfft2``, computed once for many kernels."""
    h, w = image.shape[-2:]
    b = kernel.shape[-1]
    if spectrum is None:
        spectrum = torch.fft.rfft2(image)
    spectrum = spectrum * torch.fft.rfft2(kernel, s=(h, w)).conj()
    return torch.fft.irfft2(spectrum.sum(0), s=(h, w))[: h - b + 1, : w - b + 1]


def block_side(
    valid: list[torch.Tensor], fill: torch.Tensor, smallest: int, free: bool = False
) -> int | None:
    """The largest block side, halving from a quarter of the short side of the canvas and of
    the largest source (at most the hole's extent; at least ``smallest``) down to
    ``smallest``, that the sources hold at least 16 whole blocks of, with ``free`` (a
    lattice) where some of them can also move an overlap's width both down and across
    (``_free``); None if none does."""
    rows, cols = torch.nonzero(fill, as_tuple=True)
    extent = int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1
    # An expand's canvas is larger than its source: a quarter of the canvas's side was half
    # the image's for a 2x expand, blocks whose long overlap no block of the image matched
    # where the edge cut its elements (a daisies photo: a glowing frame; session 23). A
    # source under 4 ``smallest`` still gets ``smallest`` blocks where it holds them.
    source = max(min(v.shape) for v in valid)
    side = min(min(fill.shape) // 4, max(source // 4, smallest), extent)
    while side >= smallest:
        starts = [whole_blocks(v, side) for v in valid]
        moves = not free or any(_free(s, max(2, round(side * OVERLAP))) for s in starts)
        if sum(int(s.sum()) for s in starts) >= 16 and moves:
            return side
        side //= 2
    return None


def _free(starts: torch.Tensor, reach: int) -> bool:
    """Whether the (h, w) bool block starts hold a ``reach`` x ``reach`` square of starts.

    Where a hole is half the image, its kept ring is a quarter of the image wide, a block's
    side: whole blocks then start on lines only (the top strip's at row 0, the left strip's
    at column 0), so no block had both the row and the column phase of a tile floor's grout
    lines around the hole, and the fill's grid came out half a tile off the ring's. Off a
    lattice the larger blocks are kept: half-size ones cut the procedural cells into more
    fragments (docs/decisions.md, session 18).
    """
    return bool(whole_blocks(starts, reach).any())


def whole_blocks(valid: torch.Tensor, side: int) -> torch.Tensor:
    """(H, W) bool valid pixels -> (H - side + 1, W - side + 1) bool: the blocks' top-left
    corners whose ``side`` x ``side`` block lies wholly in valid pixels."""
    if min(valid.shape) < side:
        return torch.zeros(0, 0, dtype=torch.bool)
    # invalid pixels per block from an integral image: a max-pool over side x side windows
    # cost H W side^2 (a 4000 x 2866 photo's 300 px blocks: minutes)
    total = F.pad((~valid).long().cumsum(0).cumsum(1), (1, 0, 1, 0))
    s = side
    holes = total[s:, s:] - total[:-s, s:] - total[s:, :-s] + total[:-s, :-s]
    return holes == 0


def quilt(
    canvas: torch.Tensor,
    fill: torch.Tensor,
    sources: list[torch.Tensor],
    valid: list[torch.Tensor],
    side: int,
    generator: torch.Generator,
    blend: bool = True,
    ring_weight: float = 0.0,
    offset_limit: float | None = None,
    grow: bool = False,
    ring_side: int | None = None,
    candidates: int = 1,
    seams: int = SEAMS,
    heals: float = HEALS,
    shifts: torch.Tensor | None = None,
    sourced: torch.Tensor | None = None,
    colour_first: float | None = None,
    overlap: float = OVERLAP,
    fresh: bool = False,
) -> torch.Tensor:
    """Fill ``canvas`` (C, H, W) where ``fill`` (H, W) is set with ``side`` x ``side`` blocks
    of ``sources`` (each (C, h, w), with (h, w) bool ``valid`` pixels that may be copied).

    Blocks step over the hole's bounding box in raster order, each reaching ``overlap`` of
    its side (OVERLAP; a lattice's: ``lattice_overlap``; at most half) into the known pixels
    around it (the kept ring included), and each is the source block with the least squared
    difference there (one of those within TOLERANCE of it).
    A block replaces the pixels pasted before it on its side of the least-error cuts through
    its left and top overlaps (``_cut_side``); kept pixels are never written. In that
    difference a kept pixel within RING px of the hole weighs ``1 + ring_weight`` (the
    editor's: RING_WEIGHT) against the window's other kept pixels, their total weight that
    of their count; pasted pixels weigh 1. With ``blend``, the fill is corrected by the
    membrane (``optimize.blending.membrane``) of the kept pixels' difference from what the
    pasted blocks continue into them (``_continuation``): the hole's edge no longer steps
    where the light drifts. With ``offset_limit`` (the editor's: OFFSET_LIMIT) only each
    channel's difference within that of its median over the ring is spread so; the rest
    (an element the edge cuts) fades within STEP_REACH px (``_blend``).

    With ``grow`` the blocks are placed in the order of a fill growing from the known pixels
    (``_grown``) instead of raster order, and cut through the overlaps of all four sides
    (``_cut_sides``). With ``ring_side`` the hole's pixels within a ``ring_side`` block's
    reach of the kept ones are first grown from ``ring_side`` x ``ring_side`` blocks (the
    editor's: RING_SIDE of its block side); the ``side`` blocks then fill the rest, their
    cuts free to run through that band. With ``candidates`` n > 1 (the editor's:
    CANDIDATES), each of that band's blocks is the one of n drawn within TOLERANCE whose
    paste leaves the fill most coherent at half scale (``optimize.coherence``). With
    ``seams`` n > 1 (default SEAMS), each of the ``side`` blocks is the one of n drawn within
    TOLERANCE whose least-error cuts cost least (the squared differences along them,
    ``_cut``): where a cut must cross an element that only one block holds (a disc larger
    than the overlap), the element comes out cut straight. Then ``heals`` tries per
    ``side`` block re-paste blocks over the worst seams (``_heal``).

    With ``shifts``, the lattice shifts of the one source (``data.repeats.lattice_shifts``,
    (2 h - 1, 2 w - 1) bool), each block is drawn among those in phase with the most known
    pixels of its window (``_Paste.in_phase``): a pasted pixel's source position, or a kept
    one's in ``sourced`` ((3, H, W) long: source, y, x; -1 where it is none, a repair's own
    image), less its place, differs from the block's by a lattice shift; with
    ``colour_first`` (the editor's: EDIT_PHASE_TOLERANCE), among the blocks within that
    tolerance of the least squared difference only. ``sourced`` also
    receives the pasted pixels' positions, so that a later quilt over the same pixels (the
    wrap-around bands of ``quilt_periodic``) reads them.

    With ``fresh``, a block is never one that continues a pixel pasted in its window as the
    source does (its offset within a pixel of that pixel's, ``_Paste.continuing``), where
    other blocks remain: such a block matches its overlap exactly and wins alone, so rows
    of blocks became strips of the source whose jumps cycled, and a large output repeated
    the source's regions (``judge.recurrence``).

    Returns (C, H, W), the filled canvas (a new tensor), in [0, 1] where the sources are.
    """
    out = canvas.clone()
    origin = torch.full((3, *fill.shape), -1, dtype=torch.long)  # (source, y, x) of a pixel
    known = ~fill
    emphasis = 1 + ring_weight * _ring(fill).to(canvas.dtype)
    paste = _Paste(out, origin, known, fill, sources, valid, emphasis, ring_weight, generator)
    paste.overlap, paste.fresh = overlap, fresh
    if shifts is not None:
        if len(sources) != 1:
            raise ValueError("lattice shifts are a single source's")
        paste.shifts, paste.colour_first = shifts, colour_first
        paste.sourced = torch.full_like(origin, -1) if sourced is None else sourced
    healed = fill
    if ring_side:
        reach = max(1, ring_side - max(1, round(ring_side * OVERLAP)))
        judge = Coherence(sources, valid) if candidates > 1 else None
        band = fill & _within(~fill, reach)
        paste(band, ring_side, True, judge, candidates)
        healed = fill & ~band
    paste(fill, side, grow, candidates=seams)
    tries = round(heals * int(healed.sum()) / (side - paste.reach(side)) ** 2)
    if tries and min(fill.shape) >= side:
        _heal(paste, side, tries, seams, healed)
    if sourced is not None:
        sourced.copy_(torch.where(fill, origin, sourced))
    if not blend:
        return out
    offset = canvas - _continuation(origin, fill, sources, valid)
    return torch.where(fill, (out + _blend(offset, fill, offset_limit)).clamp(0, 1), canvas)


class _Paste:
    """The block-pasting loop of ``quilt``, over the canvas ``out`` (C, H, W) it writes into
    with each pasted pixel's ``origin`` (3, H, W) and ``known`` (H, W), both updated."""

    def __init__(self, out, origin, known, fill, sources, valid, emphasis, ring_weight, g):
        self.out, self.origin, self.known, self.fill = out, origin, known, fill
        self.sources, self.valid, self.g = sources, valid, g
        self.emphasis, self.ring_weight = emphasis, ring_weight
        self.usable: dict[int, list[tuple]] = {}
        self.shifts: torch.Tensor | None = None  # ``quilt``'s, and its ``sourced``
        self.sourced: torch.Tensor | None = None
        self.colour_first: float | None = None
        self.overlap = OVERLAP  # ``quilt``'s, of the block side
        self.fresh = False  # ``quilt``'s: ban the blocks that continue a known pixel's source

    def reach(self, side: int) -> int:
        """How far, in px, a ``side`` block reaches into the blocks before it."""
        return max(1, min(side // 2, round(side * self.overlap)))

    def within(self, window: tuple[slice, slice]) -> _Paste:
        """The same loop over the ``window`` (rows, columns) of the canvas: views, so that
        what it pastes lands here; the sources' cache shared."""
        c = (slice(None), *window)
        inner = _Paste(self.out[c], self.origin[c], self.known[window], self.fill[window],
                       self.sources, self.valid, self.emphasis[window], self.ring_weight,
                       self.g)  # fmt: skip
        inner.usable, inner.overlap = self.usable, self.overlap
        if self.shifts is not None:
            inner.shifts, inner.sourced = self.shifts, self.sourced[(slice(None), *window)]
            inner.colour_first = self.colour_first
        return inner

    def _usable(self, side: int) -> list[tuple]:
        """Each source with its squares, their spectra and where its whole blocks start, if
        it has any (``_pick``'s), computed once per block side."""
        if side not in self.usable:
            self.usable[side] = [
                (k, u, u.pow(2), ok, torch.fft.rfft2(u), torch.fft.rfft2(u.pow(2)))
                for k, (u, v) in enumerate(zip(self.sources, self.valid, strict=True))
                if (ok := whole_blocks(v, side)).any()
            ]
        return self.usable[side]

    def in_phase(self, window: tuple[slice, slice], side: int) -> torch.Tensor | None:
        """(h - side + 1, w - side + 1): for each block of the source, the share of the known
        pixels of ``window`` whose offset (source position less place) differs from the
        block's by a lattice shift (``self.shifts``); None where none is from the source."""
        rows, cols = window
        here = self.known[window]
        origin = self.origin[(slice(None), *window)]
        origin = torch.where(origin[0] >= 0, origin, self.sourced[(slice(None), *window)])
        here = here & (origin[0] >= 0)
        if not here.any():
            return None
        y, x = torch.nonzero(here, as_tuple=True)
        offsets = torch.stack([origin[1][y, x] - y - rows.start, origin[2][y, x] - x - cols.start])
        offsets, counts = torch.unique(offsets, dim=1, return_counts=True)
        h, w = self.sources[0].shape[-2:]
        starts_y, starts_x = torch.arange(h - side + 1), torch.arange(w - side + 1)
        share = torch.zeros(len(starts_y), len(starts_x))
        for (oy, ox), n in zip(offsets.T.tolist(), counts.tolist(), strict=True):
            # a block at (sy, sx) placed at the window's corner: its offset less this one
            dy = starts_y - rows.start - oy + h - 1
            dx = starts_x - cols.start - ox + w - 1
            iy = ((dy >= 0) & (dy < 2 * h - 1)).nonzero()[:, 0]
            ix = ((dx >= 0) & (dx < 2 * w - 1)).nonzero()[:, 0]
            share[iy[:, None], ix[None, :]] += n * self.shifts[dy[iy][:, None], dx[ix][None, :]]
        return share / counts.sum()

    def continuing(self, window: tuple[slice, slice], side: int) -> list[torch.Tensor]:
        """Per usable source (``_usable``), (h - side + 1, w - side + 1) bool: the blocks whose
        offset (source position less place, at the window's corner) is within a pixel of a
        pasted pixel's of ``window``, from that source: those that continue it as the
        source does."""
        here = self.known[window] & (self.origin[0][window] >= 0)
        origin = self.origin[(slice(None), *window)]
        out = []
        for k, u, *_ in self._usable(side):
            h, w = u.shape[-2:]
            banned = torch.zeros(h - side + 1, w - side + 1, dtype=torch.bool)
            y, x = torch.nonzero(here & (origin[0] == k), as_tuple=True)
            # the start (sy, sx) of a block placed at the window's corner with that offset
            starts = torch.stack([origin[1][y, x] - y, origin[2][y, x] - x])
            for sy, sx in torch.unique(starts, dim=1).T.tolist():
                banned[max(0, sy - 1) : max(0, sy + 2), max(0, sx - 1) : max(0, sx + 2)] = True
            out.append(banned)
        return out

    def __call__(
        self, target: torch.Tensor, side: int, grow: bool, judge: Coherence | None = None,
        candidates: int = 1,
    ) -> None:  # fmt: skip
        """Paste ``side`` x ``side`` blocks until no ``target`` (H, W) pixel is unknown: in
        raster order over its bounding box, or grown from the known pixels (``_grown``); each
        the most coherent (``Coherence.score``) of ``candidates`` drawn with a ``judge``, the
        one whose cuts cost least (``_cut``) without."""
        out, origin, known, fill = self.out, self.origin, self.known, self.fill
        if not (target & ~known).any():
            return
        overlap = self.reach(side)
        places = _grown(target, known, side, overlap) if grow else _raster(target, side, overlap)
        usable = self._usable(side)
        dy, dx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        for y, x in places:
            window = (slice(y, y + side), slice(x, x + side))
            todo = target[window] & ~known[window]
            if not todo.any():
                continue
            k = known[window].to(out.dtype)
            kept = ~fill[window]
            if self.ring_weight and kept.any():
                # the kept pixels' weight moved towards the ring, their total kept: the
                # overlap with earlier blocks keeps its share of the pick
                e = self.emphasis[window][kept]
                k[kept] = e * (len(e) / e.sum())
            view = out[(slice(None), *window)]
            phase = None if self.shifts is None else self.in_phase(window, side)
            banned = self.continuing(window, side) if self.fresh else None
            picks = _pick(view, k, usable, self.g, candidates, phase, self.colour_first, banned)
            blocks = [self.sources[i][:, sy : sy + side, sx : sx + side] for i, sy, sx in picks]
            errors = torch.stack([(block - view).pow(2).sum(0) * k for block in blocks])
            cuts, costs = _cut_sides(errors, overlap) if grow else _cut_side(errors, overlap)
            takes = todo | (fill[window] & cuts)
            best = 0
            if judge and len(picks) > 1:
                scores = [
                    judge.score(out, known, (y, x), b, t)
                    for b, t in zip(blocks, takes, strict=True)
                ]
                best = scores.index(min(scores))
            elif len(picks) > 1:
                best = int(costs.argmin())
            (source, sy, sx), block, take = picks[best], blocks[best], takes[best]
            view.copy_(torch.where(take, block, view))
            at = torch.stack([torch.full_like(dy, source), sy + dy, sx + dx])
            here = origin[(slice(None), *window)]
            here.copy_(torch.where(take, at, here))
            known[window] |= todo


def seam_error(image: torch.Tensor, origin: torch.Tensor, sources: list[torch.Tensor]):
    """(H, W): on each pixel of ``image`` (C, H, W) copied from ``sources`` (its ``origin``
    (3, H, W): source, y, x; -1 where not copied), the squared differences, summed over its
    four neighbours copied from elsewhere (or not copied), between each neighbour and the
    source's pixel next to its own: 0 inside a block, the visible mismatch along a cut."""
    h, w = image.shape[-2:]
    error = torch.zeros(h, w, dtype=image.dtype)
    k, sy, sx = origin
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        # p: pixels whose neighbour q = p + (dy, dx) is on the canvas
        py = slice(max(0, -dy), h - max(0, dy))
        px = slice(max(0, -dx), w - max(0, dx))
        qy = slice(max(0, dy), h - max(0, -dy))
        qx = slice(max(0, dx), w - max(0, -dx))
        kp, ty, tx = k[py, px], sy[py, px] + dy, sx[py, px] + dx
        joined = (origin[:, qy, qx] == torch.stack([kp, ty, tx])).all(0)
        q = image[:, qy, qx]
        for n, u in enumerate(sources):
            hit = (kp == n) & ~joined & (ty >= 0) & (ty < u.shape[-2]) & (tx >= 0)
            hit &= tx < u.shape[-1]
            if not hit.any():
                continue
            beside = u[:, ty[hit], tx[hit]]
            error[py, px][hit] += (q[:, hit] - beside).pow(2).sum(0)
    return error


def _heal(paste: _Paste, side: int, tries: int, seams: int, region: torch.Tensor) -> None:
    """``tries`` times: re-paste one ``side`` block over the ``region`` (H, W) bool pixels of
    the square of side ``side`` less two overlaps (up to the canvas's edge) where
    ``seam_error`` sums highest on them, cut on its four sides, the cheapest of ``seams``
    drawn; undone unless it lowers the error around it, and that square then not tried
    again. An edit's ``region`` leaves out its first band (``quilt``'s ``ring_side``), whose
    blocks were picked for their coherence with the kept pixels."""
    out, origin, known, fill = paste.out, paste.origin, paste.known, paste.fill
    h, w = fill.shape
    overlap = paste.reach(side)
    inner = side - 2 * overlap
    error = seam_error(out, origin, paste.sources)  # 0 on kept pixels: not copied
    r = inner // 2
    # the squares' centres on a grid of an eighth of their side: the argmax over every pixel
    # of a 2048 px canvas was a third of the time
    step = max(1, inner // 8)
    rows, cols = torch.arange(0, h, step), torch.arange(0, w, step)
    near = _sums(error, r, rows, cols, region)
    tried = torch.zeros(near.shape, dtype=torch.bool)
    for _ in range(tries):
        at = int(near.argmax())
        if float(near.view(-1)[at]) <= 0:
            return
        i, j = divmod(at, len(cols))
        cy, cx = int(rows[i]), int(cols[j])
        y, x = max(0, min(cy - side // 2, h - side)), max(0, min(cx - side // 2, w - side))
        window = (slice(y, y + side), slice(x, x + side))
        ring = (slice(max(0, y - 1), y + side + 1), slice(max(0, x - 1), x + side + 1))
        before = float(error[ring].sum())
        saved = out[(slice(None), *window)].clone(), origin[(slice(None), *window)].clone()
        target = torch.zeros(side, side, dtype=torch.bool)
        top, left = (0 if y == 0 else overlap), (0 if x == 0 else overlap)
        bottom = side if y + side == h else side - overlap
        right = side if x + side == w else side - overlap
        target[top:bottom, left:right] = True
        target &= region[window]
        known[window] &= ~target
        paste.within(window)(target, side, True, candidates=seams)
        _update(error, out, origin, paste.sources, window)
        undo = float(error[ring].sum()) >= before
        if undo:
            out[(slice(None), *window)] = saved[0]
            origin[(slice(None), *window)] = saved[1]
            _update(error, out, origin, paste.sources, window)
        # the sums of the squares that reach the changed pixels
        ys = slice(-(-max(0, y - 1 - r) // step), -(-min(h, y + side + 1 + r) // step))
        xs = slice(-(-max(0, x - 1 - r) // step), -(-min(w, x + side + 1 + r) // step))
        if undo:
            k = r // step
            tried[max(0, i - k) : i + k + 1, max(0, j - k) : j + k + 1] = True
        near[ys, xs] = _sums(error, r, rows[ys], cols[xs], region).masked_fill(tried[ys, xs], -1)


def _sums(error, r: int, rows: torch.Tensor, cols: torch.Tensor, region) -> torch.Tensor:
    """(len(rows), len(cols)): for each centre (y, x) of the (ascending) ``rows`` x ``cols``,
    the sum of ``error`` (H, W) on the ``region`` (H, W) bool pixels of rows y - r .. y + r - 1
    and columns x - r .. x + r - 1 (within the canvas)."""
    h, w = error.shape
    e0, e1 = max(0, int(rows[0]) - r), min(h, int(rows[-1]) + r)
    f0, f1 = max(0, int(cols[0]) - r), min(w, int(cols[-1]) + r)
    part = torch.where(region[e0:e1, f0:f1], error[e0:e1, f0:f1], 0)
    total = F.pad(part.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    a, b = (rows - r).clamp(e0, e1) - e0, (rows + r).clamp(e0, e1) - e0
    c, d = (cols - r).clamp(f0, f1) - f0, (cols + r).clamp(f0, f1) - f0
    return _box(total, a, b, c, d).float()


def _box(total, y0, y1, x0, x1) -> torch.Tensor:
    """(len(y0), len(x0)): sums over rows y0[i] .. y1[i] - 1 and columns x0[j] .. x1[j] - 1,
    read from ``total``, an integral image padded with a zero row and column in front."""
    return total[y1][:, x1] - total[y0][:, x1] - total[y1][:, x0] + total[y0][:, x0]


def _update(error, image, origin, sources, window) -> None:
    """``error`` (H, W), ``seam_error``'s, recomputed where ``window`` and its neighbours
    changed."""
    h, w = error.shape
    (ys, xs), near, far = window, [], []
    for s, n in ((ys, h), (xs, w)):
        near.append(slice(max(0, s.start - 1), min(n, s.stop + 1)))
        far.append(slice(max(0, s.start - 2), min(n, s.stop + 2)))
    part = seam_error(image[(slice(None), *far)], origin[(slice(None), *far)], sources)
    inner = tuple(
        slice(a.start - b.start, a.stop - b.start) for a, b in zip(near, far, strict=True)
    )
    error[tuple(near)] = part[inner]


def _blend(offset: torch.Tensor, fill: torch.Tensor, limit: float | None) -> torch.Tensor:
    """(C, H, W) correction of the fill for the ring's ``offset`` (nan where it has no
    value): its membrane; with ``limit``, the membrane of each channel's offset clamped to
    its median over the ring +- ``limit``, plus the rest's screened membrane of reach
    STEP_REACH."""
    known = ~offset[0].isnan()
    if limit is None or not known.any():
        return membrane(offset, fill)
    median = offset[:, known].median(1).values.view(-1, 1, 1)
    light = offset.clamp(median - limit, median + limit)
    return membrane(light, fill) + membrane(offset - light, fill, STEP_REACH)


def _raster(target: torch.Tensor, side: int, overlap: int) -> list[tuple[int, int]]:
    """Block windows' top-left corners (y, x) in raster order over the bounding box of
    ``target`` (H, W) bool, each reaching ``overlap`` into the pixels before it."""
    h, w = target.shape
    stride = side - overlap
    rows, cols = torch.nonzero(target, as_tuple=True)
    top = max(0, min(int(rows.min()) - overlap, h - side))
    left = max(0, min(int(cols.min()) - overlap, w - side))
    # the last blocks reach OVERLAP into the kept pixels beyond the hole too
    ys = _starts(top, int(rows.max()) + 1 + overlap, side, stride, h)
    xs = _starts(left, int(cols.max()) + 1 + overlap, side, stride, w)
    return [(y, x) for y in ys for x in xs]


def _grown(fill: torch.Tensor, known: torch.Tensor, side: int, overlap: int):
    """Yield block windows' top-left corners (y, x) in the order of a fill that grows from
    the kept pixels inwards (Criminisi et al. 2004's confidence order), reading ``known``
    (H, W) bool, which the caller updates after each block.

    Each window holds the unknown pixel of the hole's front (beside a known pixel) whose
    neighbourhood (the square of odd side about ``side`` centred on it) is the most known,
    first in raster order among equals: concave corners of the front first, then along its
    straight stretches. The window reaches ``overlap`` into the known pixels on each side of
    that pixel that has them, and is centred on it along an axis that has none.
    """
    h, w = fill.shape
    half = side // 2
    # each pixel's neighbourhood, clipped to the canvas, as integral-image bounds
    y0, y1 = (torch.arange(h) - half).clamp(0, h), (torch.arange(h) + half + 1).clamp(0, h)
    x0, x1 = (torch.arange(w) - half).clamp(0, w), (torch.arange(w) + half + 1).clamp(0, w)
    while True:
        unknown = fill & ~known
        if not unknown.any():
            return
        pad = F.pad(known[None, None].float(), (1, 1, 1, 1))[0, 0]
        above, below = pad[:-2, 1:-1] > 0, pad[2:, 1:-1] > 0
        left, right = pad[1:-1, :-2] > 0, pad[1:-1, 2:] > 0
        front = unknown & (above | below | left | right)
        if not front.any():  # a hole with no kept pixels at all
            front = unknown
        total = F.pad(known.long().cumsum(0).cumsum(1), (1, 0, 1, 0))
        near = _box(total, y0, y1, x0, x1)
        near = torch.where(front, near, -1).flatten()
        at = int(near.argmax())
        py, px = divmod(at, w)
        y = _reach(py, bool(above[py, px]), bool(below[py, px]), side, overlap, h)
        x = _reach(px, bool(left[py, px]), bool(right[py, px]), side, overlap, w)
        yield y, x


def _reach(p: int, before: bool, after: bool, side: int, overlap: int, limit: int) -> int:
    """A window's start along one axis for the front pixel at ``p``: ``overlap`` into the
    known pixels before it, or after it, or centred on it where both or neither are known;
    clamped so that the window fits in ``limit``."""
    if before and not after:
        start = p - overlap
    elif after and not before:
        start = p + overlap + 1 - side
    else:
        start = p - side // 2
    return max(0, min(start, limit - side))


def _cut_sides(error: torch.Tensor, overlap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``_cut_side``, through the ``overlap`` bands of all four sides: a grown fill's
    block meets known pixels on any of them."""
    sides = torch.stack([error, error.flip(-1), error.mT, error.flip(-2).mT])
    (left, right, top, bottom), (a, b, c, d) = _cut(sides, overlap)
    return left & right.flip(-1) & top.mT & bottom.mT.flip(-2), a + b + c + d


def _ring(fill: torch.Tensor) -> torch.Tensor:
    """(H, W) bool hole -> (H, W) bool: the kept pixels within RING px (Chebyshev) of it."""
    return _within(fill, RING) & ~fill


def _within(mask: torch.Tensor, reach: int) -> torch.Tensor:
    """(H, W) bool -> (H, W) bool: the pixels within ``reach`` px (Chebyshev) of ``mask``."""
    return F.max_pool2d(mask[None, None].float(), 2 * reach + 1, 1, reach)[0, 0] > 0


def quilt_periodic(
    size: tuple[int, int],
    sources: list[torch.Tensor],
    valid: list[torch.Tensor],
    side: int,
    generator: torch.Generator,
    seams: int = SEAMS,
    heals: float = HEALS,
    shifts: torch.Tensor | None = None,
) -> torch.Tensor:
    """(C, H, W) quilted from ``side`` x ``side`` blocks of ``sources`` so that it tiles
    (``--tile``: the output's opposite edges meet as its inner pixels do); ``seams``,
    ``heals`` and ``shifts`` as ``quilt``'s (the bands' blocks in phase with both sides).

    A plain quilt (``quilt`` of the whole canvas) steps where its right edge meets its left
    and its bottom its top. Those seams are refilled as holes, each rolled to the canvas's
    middle so that the pixels on both sides of it are neighbours: a band of half a block
    across the left/right seam, then one across the top/bottom seam, then the square where
    the second band's own ends meet. With OVERLAP at 1/4, a block spans such a band and
    reaches a quarter of its side past each edge, so it is chosen to agree with both sides,
    and the membrane (``blend``) takes up the rest of the mismatch.
    """
    h, w = size
    everything = torch.ones(h, w, dtype=torch.bool)
    sourced = torch.full((3, h, w), -1, dtype=torch.long)
    out = quilt(torch.zeros(len(sources[0]), h, w), everything, sources, valid, side, generator,
                blend=False, seams=seams, heals=heals, shifts=shifts, sourced=sourced)  # fmt: skip
    band = max(1, side // 2)
    rows, cols = _middle(h, band), _middle(w, band)
    holes = [
        ((0, w // 2), cols[None, :].expand(h, w)),
        ((h // 2, 0), rows[:, None].expand(h, w)),
        ((h // 2, w // 2), rows[:, None] & cols[None, :]),
    ]
    for shift, hole in holes:
        rolled, at = out.roll(shift, dims=(-2, -1)), sourced.roll(shift, dims=(-2, -1))
        rolled = quilt(rolled, hole.contiguous(), sources, valid, side, generator, seams=seams,
                       heals=heals, shifts=shifts, sourced=at)  # fmt: skip
        out = rolled.roll((-shift[0], -shift[1]), dims=(-2, -1))
        sourced = at.roll((-shift[0], -shift[1]), dims=(-2, -1))
    return out


def _middle(n: int, band: int) -> torch.Tensor:
    """(n,) bool: the ``band`` indices around n // 2, where a seam at 0 lies once rolled."""
    i = torch.arange(n) - (n // 2 - band // 2)
    return (i >= 0) & (i < band)


def _continuation(origin, fill, sources, valid) -> torch.Tensor:
    """(C, H, W): on each kept pixel beside the hole, the mean of what the sources hold next
    to the pasted pixels beside it (the blocks continued one pixel past the hole's edge);
    nan elsewhere and where no source pixel continues them (off its edge, or not valid)."""
    c, (h, w) = sources[0].shape[0], fill.shape
    total = torch.zeros(c, h, w, dtype=sources[0].dtype)
    count = torch.zeros(h, w, dtype=sources[0].dtype)
    holes = torch.nonzero(fill, as_tuple=True)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        py, px = holes  # hole pixels and their neighbours, kept and on the canvas
        qy, qx = py + dy, px + dx
        on = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        py, px, qy, qx = py[on], px[on], qy[on], qx[on]
        kept = ~fill[qy, qx]
        py, px, qy, qx = py[kept], px[kept], qy[kept], qx[kept]
        k, sy, sx = origin[:, py, px]
        sy, sx = sy + dy, sx + dx
        for n, (u, v) in enumerate(zip(sources, valid, strict=True)):
            inside = (k == n) & (sy >= 0) & (sy < u.shape[-2]) & (sx >= 0) & (sx < u.shape[-1])
            hit = inside.clone()
            hit[inside] = v[sy[inside], sx[inside]]
            total.index_put_((torch.arange(c)[:, None], qy[hit], qx[hit]), u[:, sy[hit], sx[hit]],
                             accumulate=True)  # fmt: skip
            count.index_put_((qy[hit], qx[hit]), torch.ones(int(hit.sum())), accumulate=True)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def _pick(
    target, weight, usable, generator, n=1, phase=None, colour_first: float | None = None,
    banned: list[torch.Tensor] | None = None,
) -> list[tuple[int, int, int]]:  # fmt: skip
    """Where blocks may be copied from, ``n`` of (source index, top, left): ``side`` x
    ``side`` blocks of the ``usable`` sources ((index, source, its squares, where its whole
    blocks start, the spectra of the source and of its squares) each), drawn without repeats
    among those whose squared difference from ``target`` (C, b, b), weighted by ``weight``
    (b, b; 0 where unknown), is within TOLERANCE of the least (fewer where fewer are); with
    ``phase`` (the one source's blocks' shares in phase, ``_Paste.in_phase``), among those
    whose share is within PHASE_SLACK of the most; with ``colour_first`` too, of the blocks
    within that tolerance of the least squared difference. ``banned`` (per usable source, a
    bool map of its blocks, ``_Paste.continuing``) leaves those out where others remain."""
    errors = []
    energy = float((weight * target.pow(2)).sum())
    if banned is not None:
        fresh = [entry[3] & ~b for entry, b in zip(usable, banned, strict=True)]
        if any(f.any() for f in fresh):
            usable = [(*entry[:3], f, *entry[4:]) for entry, f in zip(usable, fresh, strict=True)]
    for _, u, u2, ok, spectrum, spectrum2 in usable:
        # sum of weight (source - target)^2, less the target's own term
        err = correlate(u2, weight.expand_as(target), spectrum2)
        err = err - 2 * correlate(u, weight * target, spectrum)
        if phase is not None and colour_first is not None:
            best = float(err.masked_fill(~ok, float("inf")).min())
            ok = ok & (err <= best + colour_first * max(best + energy, 1e-12))
        if phase is not None:
            ok = ok & (phase >= float(phase[ok].max()) - PHASE_SLACK)
        errors.append(err.masked_fill(~ok, float("inf")))
    least = min(float(e.min()) for e in errors)
    limit = least + TOLERANCE * max(least + energy, 1e-12)
    picks = [torch.nonzero(e <= limit) for e in errors]
    total = sum(len(p) for p in picks)
    if n == 1:  # one draw, as the quilt drew before candidates were judged (same stream)
        draws = [int(torch.randint(total, (1,), generator=generator))]
    else:
        draws = torch.randperm(total, generator=generator)[:n].tolist()
    found = torch.cat([torch.cat([torch.full_like(p[:, :1], index), p], 1)
                       for (index, *_), p in zip(usable, picks, strict=True)])  # fmt: skip
    return [tuple(int(v) for v in found[d]) for d in draws]


def _cut_side(error: torch.Tensor, overlap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, b, b) squared differences between n new blocks and the pixels under them (0 where
    none) -> ((n, b, b) bool, True on each new block's side of the least-error cuts through
    the left and the top ``overlap`` bands (Efros and Freeman's minimum error boundary cut):
    the seam between blocks runs where they agree; (n,) the sums of the squared differences
    along them)."""
    (left, top), (a, b) = _cut(torch.stack([error, error.mT]), overlap)
    return left & top.mT, a + b


def _cut(error: torch.Tensor, overlap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """True right of the least-cost top-to-bottom path through the first ``overlap`` columns
    of ``error`` (..., b, b), each step moving at most one column (dynamic programming), and
    the path's cost (..., ): the sum of ``error`` along it. The leading dimensions are
    candidate blocks, cut at once."""
    # NumPy: a row's few small operations cost a microsecond each there, several in torch
    band = error[..., :overlap].reshape(-1, *error.shape[-2:-1], overlap).numpy()
    n, rows = band.shape[:2]
    cost = np.full((n, rows, overlap + 2), np.inf, dtype=band.dtype)  # inf on both sides
    cost[:, :, 1:-1] = band
    for i in range(1, rows):
        up = cost[:, i - 1]
        cost[:, i, 1:-1] += np.minimum(up[:, 1:-1], np.minimum(up[:, :-2], up[:, 2:]))
    path = np.empty((n, rows), dtype=np.int64)  # padded columns: j is the band's j - 1
    path[:, -1] = cost[:, -1].argmin(1)
    candidates = np.arange(n)
    steps = np.arange(-1, 2)
    for i in range(rows - 2, -1, -1):
        j = path[:, i + 1]
        near = cost[candidates[:, None], i, j[:, None] + steps]
        path[:, i] = j - 1 + near.argmin(1)
    last = torch.from_numpy(cost[candidates, -1, path[:, -1]]).view(error.shape[:-2])
    cols = torch.arange(error.shape[-1])
    sides = cols > torch.from_numpy(path - 1).view(*error.shape[:-1], 1)
    return sides, last


def _starts(first: int, end: int, side: int, stride: int, limit: int) -> list[int]:
    """Block starts from ``first`` by ``stride`` until a block reaches ``end``, each clamped
    so that the block fits in ``limit``."""
    starts, y = [], first
    while True:
        starts.append(min(y, limit - side))
        if y + side >= end or y >= limit - side:
            return starts
        y += stride
