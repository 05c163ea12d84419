"""Fourier spectrum constraint with one phase shared by the colour channels (Liu et al. 2016).

Convention: the constraint set for an output of size (H, W) is
``{y : Y_c(k) = T_c(k) * exp(i phi(k)) for some phase field phi}`` where ``Y = fft2(y)`` and
``T`` is the exemplar's spectrum with its absolute phase removed (see
:func:`spectrum_target`). The modulus of every channel is the exemplar's and the
relative phase between channels (which carries colour correlations) is kept; only
the phase common to all channels is free. The projection of ``x`` onto that set
chooses ``phi = arg(sum_c X_c conj(T_c))`` (Liu et al. 2016, eq. 8; Gonthier et al.
2022 use the same projection).

Sizes: for an exemplar of (Hu, Wu) and an output of (H, W), ``T`` is resampled from
the exemplar's frequency grid to the output's by linear interpolation in frequency
(cycles per pixel, periodic), scaled by sqrt(H W / (Hu Wu)) so that the power per
pixel is unchanged; the DC term (the mean colour) is scaled by H W / (Hu Wu). When
the sizes are equal this is the identity, i.e. exactly Liu's projection.

Before the transform, the exemplar is replaced by its periodic component (Moisan
2011), which removes the cross of spurious energy that its non-periodic borders
would add to the spectrum.
"""

import math

import torch
import torch.nn.functional as F

from data.images import luminance

# lattice_fit locates peaks to 1/FINE of a frequency bin, and scales an axis only where the
# lattice then misses whole periods across the output by at most FIT_MISS cycles (RMS).
FINE = 32
FIT_MISS = 0.1
# The spectral peaks of lattice_share and lattice_fit: frequencies under LOWEST cycles per
# short side left out, a peak PEAK times its PEAK_WINDOW-square neighbourhood's median, the
# luminance analysed at LONGEST px at most.
LOWEST, PEAK, PEAK_WINDOW, LONGEST = 4, 30, 7, 512
# The spectrum projection's modes (SynthConfig.spectrum_projection): ``auto`` applies it where
# the exemplar is a lattice (:func:`lattice_share`), ``on`` and ``off`` always and never.
SPECTRUM_PROJECTIONS = ("auto", "on", "off")


def periodic_component(u: torch.Tensor) -> torch.Tensor:
    """Moisan's periodic + smooth decomposition: return the periodic part.

    Args:
        u: (C, H, W) real image.

    Returns:
        (C, H, W) image ``p = u - s`` where ``s`` is the smooth image whose Laplacian
        equals the border discontinuities of ``u``; ``p`` has the same mean as ``u``.
    """
    _, h, w = u.shape
    u = u.double()
    v = torch.zeros_like(u)
    jump_y = u[:, -1, :] - u[:, 0, :]
    jump_x = u[:, :, -1] - u[:, :, 0]
    v[:, 0, :] += jump_y
    v[:, -1, :] -= jump_y
    v[:, :, 0] += jump_x
    v[:, :, -1] -= jump_x
    q = torch.arange(h, dtype=torch.float64).view(h, 1)
    r = torch.arange(w, dtype=torch.float64).view(1, w)
    denom = 2 * torch.cos(2 * math.pi * q / h) + 2 * torch.cos(2 * math.pi * r / w) - 4
    denom[0, 0] = 1.0
    s_hat = torch.fft.fft2(v) / denom
    s_hat[:, 0, 0] = 0
    return (u - torch.fft.ifft2(s_hat).real).float()


def _resample_periodic(z: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    """Linearly interpolate a spectrum along ``dim`` onto an ``n_out``-point frequency grid."""
    n_in = z.shape[dim]
    if n_in == n_out:
        return z
    pos = torch.fft.fftfreq(n_out, dtype=torch.float64) * n_in  # fractional input index
    i0 = torch.floor(pos)
    t = (pos - i0).to(z.real.dtype)
    i0 = i0.long()
    shape = [1] * z.dim()
    shape[dim] = n_out
    t = t.view(shape)
    a = z.index_select(dim, i0 % n_in)
    b = z.index_select(dim, (i0 + 1) % n_in)
    return a * (1 - t) + b * t


def spectrum_target(exemplars: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Phase-free exemplar spectrum on the frequency grid of an output of ``size``.

    Args:
        exemplars: list of (3, Hu, Wu) images in [0, 1] (sizes may differ).
        size: (H, W) of the output.

    Returns:
        (3, H, W) complex64 ``T``: per exemplar, ``fft2`` of its periodic component
        multiplied by ``exp(-i arg(sum_c U_c))`` (removing the absolute phase, which
        only encodes position), resampled to (H, W) as described in the module
        docstring, then averaged over the exemplars.
    """
    h, w = size
    total = None
    for u in exemplars:
        hu, wu = u.shape[-2:]
        spec = torch.fft.fft2(periodic_component(u).double())
        ref = spec.sum(0, keepdim=True)
        phase = torch.where(ref.abs() > 0, ref / ref.abs(), torch.ones_like(ref))
        t = spec * phase.conj()
        # The DC term is a delta, not a density: keep it out of the interpolation.
        dc = t[:, 0, 0].clone()
        t[:, 0, 0] = 0
        t = _resample_periodic(_resample_periodic(t, h, 1), w, 2)
        t = t * math.sqrt(h * w / (hu * wu))
        t[:, 0, 0] = dc * (h * w / (hu * wu))
        total = t if total is None else total + t
    return (total / len(exemplars)).to(torch.complex64)


def spectrum_projection(x: torch.Tensor, target: torch.Tensor, lowest: float = 0.0) -> torch.Tensor:
    """Project images onto the set of images with the target's spectrum (see module docstring).

    Args:
        x: (B, 3, H, W) real images.
        target: (3, H, W) complex from :func:`spectrum_target` for size (H, W).
        lowest: frequencies below this radius (cycles per pixel) keep ``x``'s own
            coefficients (0: none do, Liu's projection). A photo's lighting gradient lives
            there; imposed on the output, it became blotches of light and shade.

    Returns:
        (B, 3, H, W) fp32 projection. Idempotent; ``|fft2(out)_c| == |target_c|`` at
        every frequency of radius ``lowest`` or more.
    """
    spec = torch.fft.fft2(x.float())
    inner = (spec * target.conj()).sum(1, keepdim=True)  # (B, 1, H, W)
    mag = inner.abs()
    phase = torch.where(mag > 0, inner / mag.clamp_min(1e-30), torch.ones_like(inner))
    projected = target * phase
    if lowest > 0:
        h, w = x.shape[-2:]
        fy = torch.fft.fftfreq(h, device=x.device).view(-1, 1)
        fx = torch.fft.fftfreq(w, device=x.device).view(1, -1)
        projected = torch.where(fy.pow(2) + fx.pow(2) < lowest**2, spec, projected)
    return torch.fft.ifft2(projected).real


def spectrum_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * mean((x - proj(x))^2)`` with the projection treated as a constant.

    The mean (not Liu's sum) keeps the weight independent of the image size.
    """
    with torch.no_grad():
        proj = spectrum_projection(x, target)
    return 0.5 * (x.float() - proj).pow(2).mean()


def lattice_share(
    u: torch.Tensor,
    lowest: float = LOWEST,
    peak: float = PEAK,
    window: int = PEAK_WINDOW,
    longest: int = LONGEST,
) -> float:
    """How much of an image is a lattice: the share of its spectral energy in isolated peaks.

    A lattice (a tread plate, a honeycomb, bricks, a weave) has a spectrum of sharp peaks at
    its period's harmonics; grain, fibres and scattered elements have broad bands, and a
    strongly oriented texture (wood) a ridge along a line, whose coefficients are no higher
    than their neighbours along it.

    Args:
        u: (C, H, W) image; its luminance (channel mean) is analysed, resized (antialiased)
            so that its longer side is at most ``longest`` px, which bounds the cost.
        lowest: frequencies under this many cycles per short side (lighting, vignetting)
            are left out of the energy.
        peak: a coefficient is in a peak when its power is at least ``peak`` times the
            median power of its ``window`` x ``window`` frequency neighbourhood.

    Returns:
        The share in [0, 1] of the power at ``lowest`` cycles or more that lies in peaks.
    """
    power, peaks, kept, _, _ = _peaks(u, lowest, peak, window, longest)
    total = power[kept].sum()
    if total <= 0:
        return 0.0
    return float(power[peaks].sum() / total)


def lattice_fit(
    u: torch.Tensor, size: tuple[int, int], largest: float = 0.05, strongest: int = 8
) -> tuple[float, float]:
    """The scales (sy, sx) of ``u`` that bring its lattice to a whole number of periods
    across an output of ``size`` (H, W): what a periodic output (``--tile``) of a lattice
    needs, or it must absorb a fraction of a period somewhere (a row of short bricks).

    Each of the ``strongest`` spectral peaks (:func:`lattice_share`'s, one of each
    conjugate pair; located to 1/FINE of a frequency bin by the transform evaluated there) at
    frequency (fy, fx) cycles/px lies at H fy / sy and W fx / sx cycles of the output once
    ``u`` is scaled by (sy, sx). Each scale is searched within ``1 +- largest`` for the least
    power-weighted mean squared distance of those to whole numbers, plus (s - 1)^2 so that
    of two equal fits the smaller change wins; it is kept only where that distance's root
    is at most FIT_MISS cycles, else the axis stays unscaled (a lattice no scale fits, such
    as a photo's irregular honeycomb at some sizes, is left as it is).

    Returns:
        (sy, sx); (1.0, 1.0) where ``u`` has no peak or is flat.
    """
    power, peaks, kept, g, ratio = _peaks(u, LOWEST, PEAK, PEAK_WINDOW, LONGEST)
    if not power[kept].sum() > 0:  # a flat image: nothing to fit
        return 1.0, 1.0
    h, w = power.shape
    fy, fx = torch.fft.fftfreq(h).view(-1, 1), torch.fft.fftfreq(w).view(1, -1)
    half = (fy > 0) | ((fy == 0) & (fx > 0))  # one of each conjugate pair
    at = torch.nonzero(peaks & half)
    if len(at) == 0:
        return 1.0, 1.0
    weight = power[at[:, 0], at[:, 1]].double()
    order = weight.argsort(descending=True)[:strongest]
    at, weight = at[order], weight[order]
    # a Hann window: without it the other peaks' side lobes pulled a pure tone's maximum off
    # its frequency by a sixth of a bin
    hann = torch.hann_window(h, periodic=False, dtype=torch.float64)[:, None]
    z = (g - g.mean()).double() * hann * torch.hann_window(w, periodic=False, dtype=torch.float64)
    near = torch.arange(-FINE, FINE + 1, dtype=torch.float64) / FINE  # in bins
    freq_y, freq_x = [], []
    for iy, ix in at.tolist():
        # the transform on a grid of 1/FINE bins around the peak, as two matrix products
        vy = (float(fy[iy, 0]) + near / h)[:, None]  # (n, 1) cycles per px
        vx = (float(fx[0, ix]) + near / w)[:, None]
        ey = torch.exp(-2j * math.pi * vy * torch.arange(h, dtype=torch.float64))  # (n, h)
        ex = torch.exp(-2j * math.pi * vx * torch.arange(w, dtype=torch.float64))  # (n, w)
        local = (ey @ z.to(ey.dtype) @ ex.T).abs()  # (n, n)
        k = int(local.argmax())
        freq_y.append(vy[k // len(near), 0] * ratio)
        freq_x.append(vx[k % len(near), 0] * ratio)
    steps = round(2000 * largest) + 1
    scales = torch.linspace(1 - largest, 1 + largest, steps, dtype=torch.float64)

    def best(freq: list[torch.Tensor], n: int) -> float:
        cycles = n * torch.stack(freq).double()[None, :] / scales[:, None]  # (scales, peaks)
        miss = (cycles - cycles.round()).pow(2) @ weight / weight.sum()
        k = int((miss + (scales - 1).pow(2)).argmin())
        return float(scales[k]) if float(miss[k]) <= FIT_MISS**2 else 1.0

    return best(freq_y, size[0]), best(freq_x, size[1])


def _peaks(u, lowest, peak, window, longest):
    """The luminance's power spectrum (h, w) (resized to at most ``longest`` px), its peaks
    at ``lowest`` cycles or more (bool), the frequencies kept (bool), the resized luminance's
    periodic component (h, w), and the resize ratio (cycles per px of it times the ratio are
    cycles per px of ``u``)."""
    g, ratio = luminance(u, longest)
    g = periodic_component(g[None])[0]
    h, w = g.shape
    power = torch.fft.fft2(g - g.mean()).abs().pow(2)
    pad = window // 2
    near = F.pad(power[None, None], (pad, pad, pad, pad), mode="circular")[0, 0]
    median = near.unfold(0, window, 1).unfold(1, window, 1).reshape(h, w, -1).median(-1).values
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.fftfreq(w).view(1, -1)
    kept = (fy.pow(2) + fx.pow(2)).sqrt() * min(h, w) >= lowest
    return power, kept & (power >= peak * median), kept, g, ratio
