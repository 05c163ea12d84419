"""The texture objective: Gram matrices over a Gaussian pyramid, spectrum and TV terms."""

from losses.gram import gram_matrix
from losses.pyramid import gaussian_pyramid
from losses.spectrum import spectrum_projection, spectrum_target
from losses.texture import TextureLoss
from losses.tv import total_variation

__all__ = [
    "TextureLoss",
    "gaussian_pyramid",
    "gram_matrix",
    "spectrum_projection",
    "spectrum_target",
    "total_variation",
]
