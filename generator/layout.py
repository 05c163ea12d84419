"""Training and rendering of the layout painter (``models.layout``, ``train.py --layout F``).

Training: each step crops the exemplar at ``image_size`` (plus the painter's halo), shrinks
the crop by ``factor`` (area mean) and asks the painter to paint the crop back from it; the
loss is the mean absolute difference. Rendering: the exemplar's 1/``factor`` copy (carried
by the checkpoint) is quilted into a layout at 1/``factor`` of the output's size
(``optimize.quilting``, seeded), and the painter paints it in blocks with their halo.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from data.errors import UserError
from data.light import LIGHT_SPREAD, even_light, light_spread
from models.layout import HALO, LayoutPainter, region_noise
from models.noise import derived_seed
from optimize.quilting import block_side, quilt, quilt_periodic

EVAL_SEEDS = (0, 1)  # fixed crops and noise of the evaluation loss and sample images
SMALLEST = 8  # the smallest quilting block side, in layout pixels


def shrink(image: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., H, W) -> (..., H // factor, W // factor): means of ``factor`` x ``factor`` cells."""
    return F.avg_pool2d(image, factor)


def build_painter(image: torch.Tensor, factor: int, width: int) -> LayoutPainter:
    """A painter for the (C, H, W) exemplar in [0, 1], holding its 1/``factor`` copy."""
    source = shrink(image[None].float().cpu(), factor)[0]
    if min(source.shape[-2:]) < 2 * SMALLEST:
        raise UserError(
            f"--layout {factor}: the exemplar ({image.shape[-1]}x{image.shape[-2]}) at "
            f"1/{factor} is under {2 * SMALLEST} px a side; use a smaller --layout or a larger "
            "image"
        )
    model = LayoutPainter(factor, width, len(image), tuple(source.shape[-2:]))
    model.source.copy_(source)
    return model


def painter_image(images: list[torch.Tensor], cfg, stack: bool, log=print) -> torch.Tensor:
    """The one (C, H, W) exemplar a painter learns and quilts from: its light evened out
    (``data.light``) with ``cfg.even_light`` on, or auto where it varies by LIGHT_SPREAD or
    more. Quilted, a photo's light confined the blocks to its largest evenly lit part: wood's
    layouts were rows of its shaded corner (docs/decisions.md, session 32). A material
    stack's maps are kept: a normal map's "light" is a slope."""
    if len(images) != 1:
        raise UserError("--layout paints one exemplar's layouts; give one exemplar")
    image, mode = images[0], cfg.even_light
    if mode == "on" and stack:
        raise UserError("--even-light on: a material stack's maps are not evened")
    if mode == "off" or stack:
        return image
    spread = light_spread(image.float())
    if mode == "auto" and spread < LIGHT_SPREAD:
        return image
    log(f"light: evened out (it varied by {spread:.0%} across the exemplar; --even-light off)")
    return even_light(image.float())


def painter_objective(cfg) -> str:
    """What a painter is trained on, for the log and the checkpoint."""
    return f"none: the exemplar's crops painted from their 1/{cfg.layout} copies"


class LayoutTraining:
    """The pieces ``train.py`` strings together for a painter: the steps' inputs, a step's
    loss, and the evaluation (``evaluation(step)`` -> (inference copy, loss, images))."""

    def __init__(self, net: LayoutPainter, image: torch.Tensor, cfg, device, log=print):
        self.net, self.cfg, self.device = net, cfg, device
        f, short = net.factor, min(image.shape[-2:])
        if cfg.image_size % f:
            raise UserError(f"--image-size must be a multiple of --layout ({f})")
        # crops are the exemplar's own: none larger than it
        self.size = min(cfg.image_size, short // f * f)
        if self.size < cfg.image_size:
            log(f"note: training crops of {self.size} px, the exemplar's short side")
        # the crops' halo reaches past the exemplar's edge: mirrored
        pad = HALO * f
        self.image = F.pad(image[None].float(), (pad,) * 4, mode="reflect")[0].to(device)
        self.step, self.value = None, None

    def inputs(self, seed: int, count: int):
        """(layouts, targets, noises) of ``count`` crops drawn with ``seed``."""
        f, size, pad = self.net.factor, self.size, HALO * self.net.factor
        g = torch.Generator().manual_seed(seed)
        h, w = self.image.shape[-2] - 2 * pad, self.image.shape[-1] - 2 * pad
        ys = torch.randint(0, h - size + 1, (count,), generator=g).tolist()
        xs = torch.randint(0, w - size + 1, (count,), generator=g).tolist()
        crops = torch.stack([self.image[:, y : y + size + 2 * pad, x : x + size + 2 * pad]
                             for y, x in zip(ys, xs, strict=True)])  # fmt: skip
        side = (size // f + 2 * HALO,) * 2
        noises = [region_noise(self.net, derived_seed(seed, b), (0, 0), side, side, self.device)
                  for b in range(count)]  # fmt: skip
        noises = [torch.cat(level) for level in zip(*noises, strict=True)]
        return shrink(crops, f), crops[..., pad:-pad, pad:-pad], noises

    def batches(self, start: int, rank: int):
        """The inputs of steps ``start``, ``start + 1``, ... (one a ``next``), each a function
        of (run seed, step, process index)."""
        step = start
        while True:
            yield self.inputs(derived_seed(self.cfg.seed, step, rank, -1), self.cfg.batch_size)
            step += 1

    @staticmethod
    def loss(model, batch):
        """(mean absolute difference of the painted crops from the crops, its log)."""
        layouts, targets, noises = batch
        loss = (model(layouts, noises).float() - targets).abs().mean()
        return loss, {"loss/total": loss}

    @torch.no_grad()
    def __call__(self, step: int):
        if self.step != step:
            model = copy.deepcopy(self.net).float().eval()
            layouts, targets, noises = self.inputs(derived_seed(self.cfg.seed, -1), len(EVAL_SEEDS))
            images = model(layouts, noises)
            self.step = step
            self.value = (model, float((images - targets).abs().mean()), images.cpu())
        return self.value


def quilted_layout(model: LayoutPainter, size: tuple[int, int], seed: int, seamless: bool):
    """(C, h, w) layout of ``size`` quilted from the painter's source with ``seed``; periodic
    if ``seamless``."""
    source = model.source.float().cpu()
    valid = [torch.ones(source.shape[-2:], dtype=torch.bool)]
    fill = torch.ones(size, dtype=torch.bool)
    side = block_side(valid, fill, SMALLEST)
    if side is None:
        side = SMALLEST  # an output under 4 blocks a side: one block may cover it
    side = min(side, *size, *source.shape[-2:])
    g = torch.Generator().manual_seed(seed)
    if seamless:
        return quilt_periodic(size, [source], valid, side, g)
    return quilt(torch.zeros(len(source), *size), fill, [source], valid, side, g, blend=False)


def _indices(start: int, stop: int, n: int, seamless: bool) -> torch.Tensor:
    """Layout rows (or columns) ``start`` .. ``stop`` of a canvas of ``n``: wrapped if
    ``seamless``, else mirrored at its edges (``abcd`` -> ``dcba abcd dcba``)."""
    i = torch.arange(start, stop)
    if seamless:
        return i % n
    i = i % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


@torch.inference_mode()
def paint_region(model, layout, region, seed, seamless, precision="fp32") -> torch.Tensor:
    """(1, C, (y1 - y0) f, (x1 - x0) f) painting of ``layout`` (C, h, w) over ``region`` =
    (y0, y1, x0, x1) in layout pixels. ``precision`` "bf16": the layers before the output's
    1x1 convolution under bf16 autocast (as ``generator.render.render_region``)."""
    y0, y1, x0, x1 = region
    h, w = layout.shape[-2:]
    rows = _indices(y0 - HALO, y1 + HALO, h, seamless)
    cols = _indices(x0 - HALO, x1 + HALO, w, seamless)
    device = model.to_rgb.weight.device
    part = layout[:, rows][:, :, cols][None].to(device)
    noises = region_noise(model, seed, (y0 - HALO, x0 - HALO), part.shape[-2:], (h, w), device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        features = model.features(part, noises)
    return model.paint(part, features.float())


def layout_bands(model, size, seed, seamless, block, on_block=None, precision="fp32"):
    """Yield the texture of an (H, W) ``size`` as bands of ``block`` rows (a multiple of the
    factor), top to bottom: (C, h, W) float32 CPU tensors in [0, 1]."""
    f = model.factor
    low = (-(-size[0] // f), -(-size[1] // f))
    layout = quilted_layout(model, low, seed, seamless)
    ys, xs = range(0, size[0], block), range(0, size[1], block)
    done = 0
    for y in ys:
        band = torch.empty(model.out_channels, min(block, size[0] - y), size[1])
        for x in xs:
            y1, x1 = min(y + block, size[0]), min(x + block, size[1])
            region = (y // f, -(-y1 // f), x // f, -(-x1 // f))
            texture = paint_region(model, layout, region, seed, seamless, precision)
            band[:, :, x:x1] = texture[0, :, : y1 - y, : x1 - x].cpu()
            done += 1
            if on_block is not None:
                on_block(done, len(ys) * len(xs))
        yield band
