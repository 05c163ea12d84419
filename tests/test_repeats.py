"""How strongly an exemplar repeats itself (data.repeats), which picks the optimize engine's
start (optimize.patches, ``--start auto``)."""

import torch
import torchvision.transforms.functional as TF

from data.procedural import make
from data.repeats import autocorrelation, repeat_strength
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
