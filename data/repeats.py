"""How strongly an exemplar repeats itself: the tallest secondary peak of its autocorrelation.

A texture made of large elements that recur (a cable panel's leaves, a tread plate's bars,
courses of bricks) matches itself when shifted by the offset between two of them, and
matches worse half way there; grain, fur, waves and scattered elements only match
themselves near no shift at all. The optimize engine starts such exemplars from copied
blocks (``optimize.patches``), which keep the elements whole.

This reads the spatial domain, where ``losses.spectrum.lattice_share`` reads isolated peaks
of the spectrum: a peak smears over several frequency bins when the image does not hold a
whole number of periods, so the share moves with the crop (knit 0.20 whole, 0.10 cropped by
16 px, 0.01 turned by 8 degrees), and a panel with two repeats has no isolated peak at all.
The autocorrelation's peak stays where it is (knit 0.43-0.47 at every crop and turn).

Convention: images (C, H, W) float in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data.images import luminance

# The luminance is analysed at LONGEST px on its longer side at most (the cost), with its
# light removed: less its box blur over LIGHT of the short side (a lamp's falloff, a
# vignette); shifts up to REACH of each side are read (at larger ones too few pixels
# overlap), and peaks under NEAREST px from no shift are the central peak's shoulders.
LONGEST, LIGHT, REACH, NEAREST = 256, 1 / 8, 1 / 2, 4
# A shift is a lattice's where each orientation's edges match at least PHASE of their
# tallest repeat (``lattice_shifts``). Repairs of a wall of 128 px bricks, 192 px hole,
# six seeds: bricks more than 15% off their length 45 of 74 without, 5 of 72 at 0.5; at
# 0.3 chance maxima beside the lattice's (a course down, 2 px across) pass too, and the
# fill's joints pinch (docs/decisions.md, session 37).
PHASE = 0.5


def autocorrelation(u: torch.Tensor) -> torch.Tensor:
    """The normalised autocorrelation of an image's luminance, its light removed.

    Args:
        u: (C, H, W) image; resized (antialiased) to at most LONGEST px on its longer side.

    Returns:
        (2 my + 1, 2 mx + 1) correlations in [-1, 1] for shifts of up to my = REACH h and
        mx = REACH w px of the resized (h, w) image; no shift at the centre (my, mx), whose
        value is 1 (0 everywhere for a flat image). Each shift's value is the sum of
        products over the pixels that overlap (no wrap-around) over the sum of squares: the
        biased estimate, which shrinks a shift by the share of pixels that overlap.
        Unbiased (the mean over the overlap), chance matches at shifts of nearly half the
        image, where a quarter of it overlaps, stood as tall as a lattice's: red_dots 0.28
        and daisies 0.16 against knit's 0.63; biased 0.11, 0.08 and 0.47.
    """
    g = luminance(u, LONGEST)[0][None, None]
    h, w = g.shape[-2:]
    k = max(3, int(LIGHT * min(h, w)) | 1)
    light = F.avg_pool2d(F.pad(g, (k // 2,) * 4, mode="replicate"), k, 1)
    z = (g - light)[0, 0]
    z = z - z.mean()
    z = z / z.pow(2).mean().sqrt().clamp_min(1e-8)
    a = _correlated(z, h, w) / (h * w)  # no shift at (h - 1, w - 1)
    my, mx = int(REACH * h), int(REACH * w)
    return a[h - 1 - my : h + my, w - 1 - mx : w + mx]


def _correlated(z: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(at most h, at most w) -> (2 h - 1, 2 w - 1): its sums of products with itself shifted
    by (dy, dx) at (h - 1 + dy, w - 1 + dx), over the pixels that overlap (zero padding: no
    wrap-around)."""
    f = torch.fft.rfft2(z, s=(2 * h, 2 * w))
    return torch.fft.fftshift(torch.fft.irfft2(f * f.conj(), s=(2 * h, 2 * w)))[1:, 1:]


def repeat_strength(u: torch.Tensor) -> float:
    """How strongly an image repeats: the tallest secondary peak of its autocorrelation.

    A peak's height counts above the lowest correlation on the straight line from no shift
    to it (the valley between a repeat and its neighbour), and at most its own correlation;
    a ridge that falls steadily away from no shift (fibres, wood's grain) has no peak above
    its own valley, so it scores near 0.

    Args:
        u: (C, H, W) image.

    Returns:
        In [0, 1]: near 1 for an image that repeats at a small shift, near 0 for noise. The
        photos: knit 0.47, blue_metal 0.46, honeycomb 0.60, metal_plate 0.57; red_dots 0.11,
        daisies 0.08, wood 0.07, fur 0.06, waves 0.06 (docs/decisions.md, session 36).
    """
    return tallest_peak(autocorrelation(u))


def tallest_peak(a: torch.Tensor) -> float:
    """The tallest secondary peak of an autocorrelation ``a`` (2 my + 1, 2 mx + 1), no shift at
    its centre: each local maximum (5 x 5) at least NEAREST px from no shift, counted above
    the lowest value on the straight line from no shift to it, and at most its own value;
    ``repeat_strength``'s measure, 0 where there is none."""
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    top = F.max_pool2d(F.pad(a[None, None], (2,) * 4, value=-2.0), 5, 1)[0, 0]
    y, x = torch.nonzero(a == top).unbind(1)
    dy, dx = y - cy, x - cx
    keep = (dy.abs().maximum(dx.abs()) >= NEAREST) & ((dy > 0) | ((dy == 0) & (dx > 0)))
    y, x, dy, dx = y[keep], x[keep], dy[keep], dx[keep]
    best = 0.0
    for i in a[y, x].argsort(descending=True).tolist():
        height = float(a[y[i], x[i]])
        if height <= best:  # no peak further down the list can beat it
            break
        n = int(max(abs(dy[i]), abs(dx[i])))
        t = torch.linspace(0, 1, n + 1)
        line = a[(cy + t * dy[i]).round().long(), (cx + t * dx[i]).round().long()]
        best = max(best, min(height, height - float(line.min())))
    return best


def lattice_shifts(u: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The shifts that carry an image's lattice onto itself, at its full resolution.

    The luminance's own autocorrelation (``autocorrelation``) does not fix a lattice's phase:
    on a brick wall the long bed joints line up under any sideways shift by whole courses,
    and the head joints, which fix where each brick ends, are a small share of the pixels
    (its 5 x 5 maxima along one course: a chance one at a ninth of a brick, 0.60, above the
    brick's length, 0.52). Each orientation of edges is read apart instead: the luminance's
    x differences (vertical edges: head joints, tile sides) and its y differences (bed
    joints, tile tops), each autocorrelated like ``autocorrelation`` (at most LONGEST px,
    zero padding, the light removed by the differences themselves). A shift belongs to the
    lattice where both reach PHASE of their own tallest repeat (``tallest_peak``), within a
    pixel of the analysed size.

    Args:
        u: (C, H, W) image.
        valid: (H, W) bool, the pixels to read (a repair's kept ones); others count as the
            valid pixels' mean colour.

    Returns:
        (2 H - 1, 2 W - 1) bool: entry (H - 1 + dy, W - 1 + dx) for the shift (dy, dx); no
        shift, at the centre, is always set. Meaningful for an image that repeats
        (``repeat_strength``): elsewhere the tallest repeat is a chance one (noise 0.04 of
        the no-shift value, the 128 px brick wall's vertical edges 0.07, its horizontal ones
        0.35), and chance maxima pass.
    """
    if valid is not None and bool(valid.any()):
        u = torch.where(valid, u, u[:, valid].mean(1).view(-1, 1, 1))
    g, ratio = luminance(u, LONGEST)
    h, w = g.shape
    edges = (g[:, 1:] - g[:, :-1], g[1:] - g[:-1])
    good = torch.ones(2 * h - 1, 2 * w - 1, dtype=torch.bool)
    my, mx = int(REACH * h), int(REACH * w)
    for z in edges:
        a = _correlated(z - z.mean(), h, w)
        a = a / a[h - 1, w - 1].clamp_min(1e-12)  # no shift at (h - 1, w - 1)
        peak = tallest_peak(a[h - 1 - my : h + my, w - 1 - mx : w + mx])
        near = F.max_pool2d(a[None, None], 3, 1, 1)[0, 0]  # within a pixel
        good &= near >= PHASE * peak if peak > 0 else torch.zeros_like(good)
    good[h - 1, w - 1] = True
    # to full resolution: each shift reads the analysed shift nearest to it
    big_h, big_w = u.shape[-2:]
    iy = (torch.arange(-(big_h - 1), big_h) * ratio).round().long() + h - 1
    ix = (torch.arange(-(big_w - 1), big_w) * ratio).round().long() + w - 1
    inside_y, inside_x = (iy >= 0) & (iy < 2 * h - 1), (ix >= 0) & (ix < 2 * w - 1)
    out = torch.zeros(2 * big_h - 1, 2 * big_w - 1, dtype=torch.bool)
    rows, cols = inside_y.nonzero()[:, 0], inside_x.nonzero()[:, 0]
    out[rows[:, None], cols[None, :]] = good[iy[rows][:, None], ix[cols][None, :]]
    return out


def lattice_periods(shifts: torch.Tensor) -> tuple[float | None, float | None]:
    """The spacing of a lattice's rows and of its elements along a row, in px.

    Args:
        shifts: (2 H - 1, 2 W - 1) bool, ``lattice_shifts``' map of the shifts that carry the
            lattice onto itself, no shift at its centre.

    Returns:
        (rows, columns): the least dy > 0 of a shift (any dx: a running bond's courses), and
        the least dx > 0 of a shift with dy = 0, each the middle of its run of set entries
        (``lattice_shifts`` sets a few px about each); None where there is none.
    """
    h, w = (shifts.shape[0] + 1) // 2, (shifts.shape[1] + 1) // 2
    return _second_run(shifts[h - 1 :].any(1)), _second_run(shifts[h - 1, w - 1 :])


def _second_run(line: torch.Tensor) -> float | None:
    """The middle of the second run of set entries of ``line`` (n,) bool, the first being the
    one about index 0; None where there is none."""
    unset = torch.nonzero(~line)[:, 0]
    if not len(unset):
        return None
    rest = line[int(unset[0]) :]
    start = torch.nonzero(rest)[:, 0]
    if not len(start):
        return None
    run = rest[int(start[0]) :]
    end = torch.nonzero(~run)[:, 0]
    length = int(end[0]) if len(end) else len(run)
    return int(unset[0]) + int(start[0]) + (length - 1) / 2
