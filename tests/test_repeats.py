"""How strongly an exemplar repeats itself (data.repeats), which picks the optimize engine's
start (optimize.patches, ``--start auto``)."""

import torch
import torchvision.transforms.functional as TF

from data.procedural import make
from data.repeats import autocorrelation, lattice_periods, lattice_shifts, repeat_strength
from losses.spectrum import lattice_share
from optimize.patches import LATTICE_SHARE, START_REPEAT


def panel(h: int = 150, w: int = 140, period: int = 36) -> torch.Tensor:
    """(3, h, w): a cable panel, as knit's is: leaves every ``period`` px down one column,
    a rib on each side, grain; a period down, no period across."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(h * 1.0), torch.arange(w * 1.0), indexing="ij")
    leaf = (((x - 64) / 22) ** 2 + ((y % period - period / 2) / 13) ** 2 < 1).float()
    ribs = ((x - 20).abs() < 3).float() + ((x - 104).abs() < 3).float()
    return (0.3 + 0.4 * leaf + 0.2 * ribs + 0.2 * torch.rand(h, w, generator=g)).expand(3, h, w)


def running_bond(
    h: int,
    w: int,
    seed: int = 0,
    course=12,
    brick=26,
    mortar=2,
    stagger: int | None = None,
    grain: float = 0.04,
) -> torch.Tensor:
    """(3, h, w): a wall in running bond, as a photo of one is: courses of ``course`` px and
    bricks of ``brick`` px (each with its mortar joint), every other course shifted half a
    brick (or ``stagger`` px: 0 for a grid of tiles); each brick a random red-brown colour
    with ``grain``, the mortar pale grey."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    row = y // course
    shifted = x + (row % 2) * (brick // 2 if stagger is None else stagger)
    index = row * (w // brick + 2) + shifted // brick
    spread, base = torch.tensor([[0.4], [0.25], [0.15]]), torch.tensor([[0.4], [0.15], [0.1]])
    colour = base + spread * torch.rand(3, int(index.max()) + 1, generator=g)
    joint = (y % course < mortar) | (shifted % brick < mortar)
    wall = torch.where(joint, torch.tensor(0.8).view(1, 1, 1), colour[:, index])
    return (wall + grain * torch.randn(3, h, w, generator=g)).clamp(0, 1)


def pale_joints(wall: torch.Tensor, mortar: float = 0.7) -> torch.Tensor:
    """(H, W) bool: the pale grey joint pixels of a ``running_bond``-like (3, H, W) image."""
    return (wall.max(0).values - wall.min(0).values < 0.15) & (wall.mean(0) > mortar)


def between_joints(joint: torch.Tensor) -> list[tuple[int, int]]:
    """The runs (start, end) of rows (or columns) between two joints, of a (H,) bool that is
    True on the rows where most pixels are joint (``pale_joints``' share over 0.6)."""
    flags = (joint.float() > 0.6).tolist()
    edges = [i for i in range(1, len(flags)) if flags[i] != flags[i - 1]]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if not flags[a]]


def brick_lengths(wall: torch.Tensor, mortar: float = 0.7) -> list[int]:
    """The lengths (px) between head joints along the middle row of each course of a
    ``running_bond``-like (3, H, W) image; a joint is a run of pale grey pixels."""
    grey = pale_joints(wall, mortar)
    lengths = []
    for top, bottom in between_joints(grey.float().mean(1)):  # the courses
        cols = torch.nonzero(grey[(top + bottom) // 2])[:, 0].tolist()
        starts = [c for i, c in enumerate(cols) if i == 0 or c != cols[i - 1] + 1]
        lengths += [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return lengths


def test_the_autocorrelation_is_one_at_no_shift_and_peaks_at_the_period():
    a = autocorrelation(panel()[:, :128, :128])
    assert a.shape == (129, 129) and abs(float(a[64, 64]) - 1) < 1e-5
    down = a[64 + 4 :, 64]  # shifts straight down from 4 px
    assert int(down.argmax()) + 4 == 36  # the leaves' period
    assert float(down[36 // 2 - 4]) < 0.5 * float(down[36 - 4])  # half a period: a valley


def test_a_panel_repeats_at_any_crop_or_turn_where_its_spectrum_loses_its_peaks():
    p = panel()
    turned = TF.rotate(p, 6.0, interpolation=TF.InterpolationMode.BILINEAR)
    views = [p[:, :128, :128], p[:, 11:139, 5:133], turned[:, 11:139, 6:134]]
    # measured 0.24, 0.22, 0.08 spectral share and 0.43, 0.41, 0.48 repeat strength
    assert all(lattice_share(v) < LATTICE_SHARE for v in views)
    assert min(repeat_strength(v) for v in views) > START_REPEAT * 1.5


def test_grain_fibres_and_scattered_elements_do_not_repeat():
    noise = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    # fibres: noise smoothed along x, a ridge of correlation falling steadily along it
    along = torch.exp(-((torch.fft.fftfreq(128) / 0.03) ** 2))
    fibres = torch.fft.ifft2(torch.fft.fft2(noise) * along).real + 0.05 * noise
    scattered = [make(kind, 128, seed=s) for kind in ("cells", "dots") for s in range(3)]
    strengths = [repeat_strength(u) for u in (noise, fibres, *scattered)]
    assert max(strengths) < START_REPEAT * 0.75, strengths  # measured 0.17 at most
    assert repeat_strength(make("stripes", 128, seed=0)) > 0.7  # a lattice, for contrast
    assert repeat_strength(torch.full((3, 64, 64), 0.5)) == 0.0  # flat: nothing repeats


def test_lattice_shifts_fix_a_running_bond_where_the_luminance_alone_does_not():
    wall = running_bond(96, 156)  # courses of 12 px, bricks of 26 px
    shifts = lattice_shifts(wall)
    h, w = wall.shape[-2:]

    def at(dy, dx):  # the shift, or one within a pixel of it
        return bool(shifts[h - 1 + dy - 1 : h + dy + 1, w - 1 + dx - 1 : w + dx + 1].any())

    assert at(0, 26) and at(24, 0) and at(12, 13) and at(12, -13)  # the bond's lattice
    # a whole brick across is a lattice shift; half a brick, or a course down unshifted, is
    # not, though the bed joints line up there as well as they do at the lattice's
    assert not at(0, 13) and not at(12, 0) and not at(0, 7)
    a = autocorrelation(wall)
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    assert float(a[cy + 12, cx]) > 0.5 * float(a[cy + 12, cx + 13])  # the ridge the shifts skip


def test_lattice_shifts_read_only_the_valid_pixels_of_a_wall_with_a_hole():
    wall = running_bond(96, 156)
    hole = torch.zeros(96, 156, dtype=torch.bool)
    hole[24:72, 40:110] = True
    cut = torch.where(hole, torch.zeros(3, 1, 1), wall)  # black: its edges would read as joints
    shifts = lattice_shifts(cut, ~hole)
    assert shifts.shape == (191, 311) and bool(shifts[95, 155])
    assert bool(shifts[94:97, 180:183].any()) and not bool(shifts[94:97, 167:170].any())


def test_lattice_periods_are_a_bond_s_courses_and_bricks_and_a_grid_s_tiles():
    assert lattice_periods(lattice_shifts(running_bond(96, 156))) == (12, 26)
    tiles = running_bond(96, 156, course=14, brick=18, stagger=0)
    assert lattice_periods(lattice_shifts(tiles)) == (14, 18)
    alone = torch.zeros(5, 7, dtype=torch.bool)
    alone[2, 3] = True  # no shift but none
    assert lattice_periods(alone) == (None, None)
