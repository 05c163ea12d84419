"""Reading exemplars as float RGB tensors and writing results as PNG files (8 or 16 bits,
whole or streamed in bands), each with its JSON sidecar.

Convention: images in memory are ``(3, H, W)`` float32 RGB in ``[0, 1]``. Every conversion
on the way in (alpha, grey, palette, CMYK, bit depth, EXIF orientation, animation) is done
explicitly and reported in one human line, so a user sees what the model was given.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from data import sidecar as sidecar_files
from data.errors import UserError
from data.sidecar import (
    check_writable,
    json_bytes,
    library_versions,
    recover_leftovers,
    reporting_write_errors,
)

MAX_SIDE = 40000
MAX_PIXELS = 400_000_000
# Pillow warns above its limit and refuses above twice it; lifting it to ours lets the size
# check in load_image decide, with a message that says what to do.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

FORMATS = "PNG, JPEG, WebP, TIFF, BMP"

# Pillow has no 16-bit colour mode: it keeps only one byte of each sample, chosen by the
# decoder's raw mode. Decoding a second time with the opposite byte order yields the other
# byte. Both raw modes have the same bits per pixel, so PNG filtering and TIFF strips decode
# identically. Maps the raw mode Pillow picked -> the one that yields the low bytes.
_LOW_BYTE_RAWMODE = {
    "RGB;16B": "RGB;16L",
    "RGB;16L": "RGB;16B",
    "RGB;16N": "RGB;16B" if struct.pack("=H", 1) == b"\x01\x00" else "RGB;16L",
    "RGBA;16B": "RGBA;16L",
    "RGBA;16L": "RGBA;16B",
}
# 16-bit grey+alpha PNGs open as RGBA via "LA;16B", which has no opposite: raw "RGBA" has the
# same 32 bits per pixel and yields all four bytes (L high, L low, A high, A low) at once.
_GREY_ALPHA_16 = "LA;16B"

_GREY = "grey expanded to RGB"
_ALPHA = "alpha composited over white"


def load_image(path: str | Path) -> tuple[torch.Tensor, str]:
    """Read an exemplar image file.

    Reads PNG, JPEG, WebP, TIFF and BMP (and anything else Pillow opens) in modes 1, L, LA,
    P (with or without transparency), RGB, RGBA, CMYK, I;16, I and F, at 8 or 16 bits.

    Convention:
        - alpha is composited over white (straight alpha: ``rgb * a + (1 - a)``), the page a
          cut-out texture is usually shown on;
        - grey is repeated into three channels; palettes and CMYK are converted by Pillow
          (CMYK naively: ICC profiles are ignored);
        - 8-bit samples are scaled by 1/255 and 16-bit ones by 1/65535 (16-bit colour PNGs
          keep their full precision); 32-bit integer grey within 0..65535 is read as 16-bit,
          and integer or float grey outside ``[0, 1]`` after that is rescaled min-to-max;
        - the EXIF orientation is applied (``ImageOps.exif_transpose``);
        - of an animation or multi-page file, the first frame is used.

    Args:
        path: the image file.

    Returns:
        ``(img, note)``: img ``(3, H, W)`` float32 RGB in ``[0, 1]``; note one line such as
        ``"logo.png: 256x256 RGBA 8-bit, alpha composited over white"``.

    Raises:
        UserError: missing, directory, unreadable, empty, not an image, truncated or corrupt,
            zero-sized, or larger than ``MAX_SIDE`` a side or ``MAX_PIXELS`` in all.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give an image file")
    try:
        if path.exists() and not path.is_file():  # a FIFO, /dev/zero: stat says 0 bytes
            raise UserError(f"{path}: not a regular file (a pipe or device); give an image file")
        if path.stat().st_size == 0:
            raise UserError(f"{path}: empty file (0 bytes); give an image file ({FORMATS})")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                img, note = _decode(im, path)
        damaged = _bad_png_crcs(path)
        if damaged:
            note += f", {damaged}"
        return img, note
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied; make the file readable") from None
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind:  # Pillow reports a damaged header (a bad IHDR CRC) as an unknown format
            raise UserError(
                f"{path}: a {kind} file whose header is damaged (Pillow cannot read it); "
                "the file is corrupt"
            ) from None
        raise UserError(f"{path}: not an image file Pillow can read ({FORMATS})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's message quotes its own limit (twice ours for the error); say ours.
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(pixels[1]) // 1_000_000} megapixels, " if pixels else ""
        raise UserError(
            f"{path}: too large ({count}at most {MAX_PIXELS // 1_000_000} megapixels); "
            "downscale it first"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise UserError(
            f"{path}: cannot decode the image ({_one_line(e)}); the file is truncated or corrupt"
        ) from None


_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"GIF8": "GIF",
}


def load_exemplars(exemplars, log=print) -> tuple[list[torch.Tensor], list[str]]:
    """A path, a (3, H, W) tensor in [0, 1], or a list of either -> (images, source names)."""
    items = exemplars if isinstance(exemplars, (list, tuple)) else [exemplars]
    if not items:
        raise UserError("no exemplar given")
    images, sources = [], []
    for item in items:
        if isinstance(item, torch.Tensor):
            images.append(item.detach().float().clamp(0, 1))
            sources.append(f"tensor {tuple(item.shape)}")
        else:
            img, note = load_image(item)
            log(note)
            images.append(img)
            sources.append(str(item))
    return images, sources


def luminance(u: torch.Tensor, longest: int) -> tuple[torch.Tensor, float]:
    """(C, H, W) image -> its luminance (the channels' mean) as (h, w), resized (bilinear,
    antialiased) so that its longer side is at most ``longest`` px, and the ratio h / H
    (1.0 where it was small enough): what the exemplar analyses read, at a bounded cost."""
    g = u.float().mean(0)[None, None]
    ratio = min(1.0, longest / max(g.shape[-2:]))
    if ratio < 1:
        size = [max(1, round(n * ratio)) for n in g.shape[-2:]]
        g = torch.nn.functional.interpolate(g, size=size, mode="bilinear", antialias=True)
    return g[0, 0], ratio


def _signature(path: Path) -> str | None:
    """The format a file's first bytes announce (None if none of ours)."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)


def _bad_png_crcs(path: Path) -> str:
    """For a PNG file, the chunks whose CRC does not match (Pillow checks no IDAT CRC, so a
    damaged file can decode); '' if all match or the file is no PNG."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return ""
        bad = []
        while header := f.read(8):
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            body = f.read(length)
            stored = f.read(4)
            if len(stored) < 4:
                break  # a truncated file: the decoder has reported it already
            if zlib.crc32(kind + body) != struct.unpack(">I", stored)[0]:
                bad.append(kind.decode("latin-1"))
            if kind == b"IEND":
                break
    if not bad:
        return ""
    names = ", ".join(sorted(set(bad)))
    return f"WARNING: bad CRC in chunk {names} (a damaged file; its pixels decoded, used as read)"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _decode(im: Image.Image, path: Path) -> tuple[torch.Tensor, str]:
    width, height = im.size
    if width == 0 or height == 0:
        raise UserError(f"{path}: the image is {width}x{height} pixels; it has no pixels")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise UserError(
            f"{path}: {width}x{height} is too large (at most {MAX_SIDE} pixels a side and "
            f"{MAX_PIXELS // 1_000_000} megapixels); downscale it first"
        )
    frames = getattr(im, "n_frames", 1)
    rawmodes = {_rawmode(tile) for tile in im.tile}  # load() empties im.tile
    rawmode = rawmodes.pop() if len(rawmodes) == 1 else None
    im.load()
    orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    if rawmode in _LOW_BYTE_RAWMODE or rawmode == _GREY_ALPHA_16:
        rgb, notes = _sixteen_bit_colour(im, path, rawmode)
    else:
        rgb, notes = _to_rgb(ImageOps.exif_transpose(im), path)
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation} applied")
    if frames > 1:
        notes.append(f"first of {frames} frames")
    img = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))
    return img.clamp_(0, 1), f"{path.name}: {img.shape[2]}x{img.shape[1]} " + ", ".join(notes)


def _rawmode(tile: tuple) -> str | None:
    args = tile[3]  # a raw mode, or a tuple starting with one, depending on the decoder
    if isinstance(args, tuple) and args:
        args = args[0]
    return args if isinstance(args, str) else None


def _with_rawmode(tile, rawmode: str):
    args = (rawmode, *tile.args[1:]) if isinstance(tile.args, tuple) else rawmode
    return tile._replace(args=args)


def _sixteen_bit_colour(im: Image.Image, path: Path, rawmode: str) -> tuple[np.ndarray, list]:
    """Full-precision samples of a 16-bit colour or grey+alpha image, via a second decode."""
    with Image.open(path) as again:
        if rawmode == _GREY_ALPHA_16:
            again.tile = [_with_rawmode(t, "RGBA") for t in again.tile]
            b = np.asarray(ImageOps.exif_transpose(again)).astype(np.uint16)  # (H, W, 4) bytes
            grey, alpha = (b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]
            samples = np.stack([grey, grey, grey, alpha], axis=-1) / np.float32(65535)
            return _over_white(samples), ["LA 16-bit", "scaled by 1/65535", _GREY, _ALPHA]
        again.tile = [_with_rawmode(t, _LOW_BYTE_RAWMODE[rawmode]) for t in again.tile]
        low = np.asarray(ImageOps.exif_transpose(again)).astype(np.uint16)
    high = np.asarray(ImageOps.exif_transpose(im)).astype(np.uint16)
    samples = ((high << 8) | low) / np.float32(65535)
    if im.mode == "RGBA":
        return _over_white(samples), ["RGBA 16-bit", "scaled by 1/65535", _ALPHA]
    return samples, ["RGB 16-bit", "scaled by 1/65535"]


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) straight-alpha RGBA in [0, 1] -> (H, W, 3) RGB composited over white."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1 - alpha)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def _unit(array: np.ndarray, scale: float) -> np.ndarray:
    return array.astype(np.float32) / np.float32(scale)


def _to_rgb(im: Image.Image, path: Path) -> tuple[np.ndarray, list]:
    """(H, W, 3) float32 RGB in [0, 1] and the notes saying how it was obtained."""
    mode = im.mode
    if mode.startswith("I;16"):
        grey = _unit(np.asarray(im), 65535)
        return _grey_to_rgb(grey), [f"{mode} 16-bit grey", "scaled by 1/65535", _GREY]
    if mode in ("I", "F"):
        grey, note = _wide_grey(np.asarray(im), mode, path)
        kind = "32-bit integer grey" if mode == "I" else "32-bit float grey"
        return _grey_to_rgb(grey), [f"{mode} {kind}", note, _GREY]
    if mode in ("1", "L"):
        grey = _unit(np.asarray(im.convert("L")), 255)
        return _grey_to_rgb(grey), [f"{mode} {'1-bit' if mode == '1' else '8-bit'} grey", _GREY]
    if mode in ("LA", "La"):
        la = _unit(np.asarray(im.convert("LA")), 255)
        rgba = np.concatenate([_grey_to_rgb(la[..., 0]), la[..., 1:]], axis=-1)
        return _over_white(rgba), [f"{mode} 8-bit grey with alpha", _GREY, _ALPHA]
    if mode in ("P", "PA"):
        if mode == "PA" or im.has_transparency_data:
            rgba = _unit(np.asarray(im.convert("RGBA")), 255)
            return _over_white(rgba), [
                f"{mode} 8-bit palette with transparency",
                "palette converted to RGB",
                _ALPHA,
            ]
        rgb = _unit(np.asarray(im.convert("RGB")), 255)
        return rgb, [f"{mode} 8-bit palette", "palette converted to RGB"]
    if mode == "RGB":
        return _unit(np.asarray(im), 255), ["RGB 8-bit"]
    if mode in ("RGBA", "RGBa"):
        return _over_white(_unit(np.asarray(im.convert("RGBA")), 255)), [f"{mode} 8-bit", _ALPHA]
    if mode == "CMYK":
        rgb = _unit(np.asarray(im.convert("RGB")), 255)
        return rgb, ["CMYK 8-bit", "CMYK converted to RGB (naively, ICC profile ignored)"]
    try:
        rgb = _unit(np.asarray(im.convert("RGB")), 255)
    except ValueError:
        raise UserError(
            f"{path}: unsupported image mode {mode}; convert it to an RGB PNG first"
        ) from None
    return rgb, [mode, "converted to RGB"]


def _wide_grey(values: np.ndarray, mode: str, path: Path) -> tuple[np.ndarray, str]:
    """Grey from 32-bit integer or float samples, whose range the file does not state."""
    if not np.isfinite(values).all():
        raise UserError(f"{path}: the {mode} image contains NaN or infinite values")
    low, high = values.min(), values.max()
    if mode == "I" and 0 <= low and high <= 65535:
        return _unit(values, 65535), "values within 0..65535 scaled by 1/65535"
    if mode == "F" and 0 <= low and high <= 1:
        return values.astype(np.float32), "values within 0..1 used as they are"
    span = float(high) - float(low)
    grey = (values.astype(np.float64) - float(low)) / (span if span > 0 else 1.0)
    return grey.astype(np.float32), f"values rescaled from [{low:g}, {high:g}] to [0, 1]"


def check_output_path(path: str | Path, overwrite: bool, log=print) -> Path:
    """Check, before a long computation, that an image can be written at ``path``.

    Leftovers of an earlier run killed while writing ``path`` and its sidecar are cleaned up
    first, each said in one line through ``log`` (:func:`data.sidecar.recover_leftovers`).

    Args:
        path: where the PNG will go.
        overwrite: whether an existing file there may be replaced.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        UserError: ``path`` is a directory, does not end in ``.png``, exists while
            ``overwrite`` is false, or its parent directory is missing or a file cannot be
            created in it (tried, not guessed from permission bits).
    """
    if str(path).strip() in ("", "."):  # the command line turns -o '' into "."
        raise UserError("the output path is empty (or '.'); give a file name such as out.png")
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name such as {path / 'out.png'}")
    if path.suffix.lower() != ".png":
        raise UserError(f"{path}: outputs are PNG files; use a name ending in .png")
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"{parent}: is not an existing directory; create it first")
    sidecar = path.with_suffix(".json")
    for line in recover_leftovers([path, sidecar]):
        log(line)
    if (path.exists() or path.is_symlink()) and not overwrite:  # a dangling link too
        raise UserError(f"{path}: already exists; use --overwrite to replace it")
    if sidecar.is_dir():
        raise UserError(f"{sidecar}: is a directory, where {path.name}'s sidecar goes")
    if sidecar.exists() and not overwrite:
        raise UserError(
            f"{sidecar}: already exists (the sidecar {path.name} would get); "
            "use --overwrite to replace it"
        )
    check_writable(parent)
    return path


def quantise(img: torch.Tensor, bits: int) -> np.ndarray:
    """(C, H, W) float, nominally in [0, 1] -> (H, W, C) uint8 (8 bits) or uint16 (16 bits):
    clamped to [0, 1], then rounded to the nearest of 255 or 65535 levels."""
    levels = 255 if bits == 8 else 65535
    pixels = img.detach().to("cpu", torch.float32).clamp(0, 1).mul(levels).round()
    return pixels.permute(1, 2, 0).contiguous().numpy().astype(np.uint8 if bits == 8 else np.uint16)


def save_image(
    img: torch.Tensor,
    path: str | Path,
    *,
    bits: int = 8,
    overwrite: bool = False,
    sidecar: dict | None = None,
) -> Path:
    """Write an image as an RGB (or grey) PNG, and optionally its JSON sidecar, atomically.

    Args:
        img: ``(3, H, W)`` or ``(1, 3, H, W)`` float RGB, nominally in ``[0, 1]``
            (:func:`quantise`); ``(1, H, W)`` or ``(1, 1, H, W)``: a grey PNG.
        path: the ``.png`` file to write.
        bits: 8, or 16 for 16-bit RGB.
        overwrite: replace an existing file at ``path``; refused otherwise.
        sidecar: if given, written as pretty JSON with sorted keys to
            ``path.with_suffix(".json")``, with a ``"versions"`` entry
            (:func:`data.sidecar.library_versions`) added unless present. The sidecar belongs
            to the image, so an existing one is replaced along with it.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        UserError: as :func:`check_output_path`, or the files cannot be written.
        ValueError: wrong shape, non-finite values, or ``bits`` not 8 or 16.

    The one-band case of :class:`PngStream`: both files are written to temporary files and
    renamed into place together, so no output lacks its provenance and nothing is lost.
    """
    path = check_output_path(path, overwrite)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) or (1, H, W) image, got {tuple(img.shape)}")
    if not torch.isfinite(img).all():
        raise ValueError("the image contains NaN or infinite values")
    with PngStream(path, tuple(img.shape[-2:]), bits, level=6, channels=img.shape[0]) as png:
        png.write(quantise(img, bits))
        png.sidecar = sidecar
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


class PngStream:
    """Write an RGB PNG (PNG spec, ISO 15948) from successive (h, W, 3) bands, top to bottom,
    in bounded memory: a 16384x16384 texture never exists as one tensor (a grey PNG from
    (h, W, 1) bands with ``channels=1``).

    Args:
        path: the ``.png`` file; checked by the caller (:func:`check_output_path`).
        size: (H, W) of the whole image.
        bits: 8 (uint8 bands) or 16 (uint16 bands).
        level: zlib level; 3 is ~3x faster than 6 on textures for ~3% more bytes.

    Use as a context manager; leaving it by an exception deletes the temporary file. Set
    ``sidecar`` (a dict) before leaving the block to write the JSON sidecar with the image
    (a ``versions`` entry is added): both files arrive together, or the old ones stay
    (:func:`data.sidecar.commit_files`).
    """

    def __init__(
        self, path: str | Path, size: tuple[int, int], bits: int = 8, level: int = 3, channels=3
    ):
        self.path, self.size, self.bits, self.channels = Path(path), size, bits, channels
        self.token = sidecar_files.new_token()
        self.tmp = sidecar_files.temporary_path(self.path, self.token)
        self.rows = 0
        self.sidecar: dict | None = None  # set before leaving the block: written with the image
        self._zlib = zlib.compressobj(level)

    def __enter__(self) -> PngStream:
        height, width = self.size
        colour = 2 if self.channels == 3 else 0  # colour type 2: RGB, 0: grey
        header = struct.pack(">IIBBBBB", width, height, self.bits, colour, 0, 0, 0)
        with reporting_write_errors(self.path):
            self.file = open(self.tmp, "xb", buffering=0)  # errors surface at write(), once
            try:
                self._put(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header))
            except BaseException:
                self.file.close()
                self.tmp.unlink(missing_ok=True)
                raise
        return self

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # an unbuffered write may be short (the disk filled up): the next one fails
            view = view[self.file.write(view) :]

    def write(self, band: np.ndarray) -> None:
        """Append rows: (h, W, channels) uint8 (8 bits) or uint16 (16 bits)."""
        h, w, c = band.shape
        rows = np.zeros((h, 1 + w * c * (self.bits // 8)), np.uint8)  # column 0: filter None
        rows[:, 1:] = (
            band.astype(">u2" if self.bits == 16 else np.uint8).view(np.uint8).reshape(h, -1)
        )
        with reporting_write_errors(self.path):
            self._put(_png_chunk(b"IDAT", self._zlib.compress(rows.tobytes())))
        self.rows += h

    def __exit__(self, kind, error, trace) -> None:
        try:
            with reporting_write_errors(self.path):
                if kind is None:
                    if self.rows != self.size[0]:
                        raise ValueError(f"wrote {self.rows} rows of {self.size[0]}")
                    self._put(_png_chunk(b"IDAT", self._zlib.flush()) + _png_chunk(b"IEND", b""))
                    self.file.flush()
                    os.fsync(self.file.fileno())
                self.file.close()
                if kind is None:
                    self._commit()
        finally:
            self.file.close()
            self.tmp.unlink(missing_ok=True)

    def _commit(self) -> None:
        staged = {self.path: self.tmp}
        if self.sidecar is not None:
            meta = {"versions": library_versions(), **self.sidecar}
            json_path = self.path.with_suffix(".json")
            # through the module, so that a test or a fault injection can replace it
            staged[json_path] = sidecar_files.stage_file(json_path, json_bytes(meta), self.token)
        sidecar_files.commit_files(staged, self.token)
