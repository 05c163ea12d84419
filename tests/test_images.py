"""data/: reading every supported mode and format, refusing bad files, atomic PNG writes."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data.images as images
import data.sidecar as sidecar_module
from data.errors import UserError
from data.images import check_output_path, load_image, save_image
from data.sidecar import file_sha256, library_versions, write_json_atomic
from data.sizes import parse_size

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
ALPHA8 = RNG.integers(0, 256, (6, 5), dtype=np.uint8)


def png_with(array: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand with the Sub filter, whose unfiltering depends on the
    bytes per pixel: it catches a decoder that reads the samples with the wrong layout."""
    height, width, channels = array.shape
    bpp = 2 * channels
    raw = array.astype(">u2").view(np.uint8).reshape(height, width * bpp).astype(np.int16)
    sub = (raw - np.pad(raw, ((0, 0), (bpp, 0)))[:, :-bpp]) % 256
    rows = np.concatenate([np.ones((height, 1)), sub], axis=1).astype(np.uint8)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    idat = zlib.compress(rows.tobytes())
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def tiff_rgb16(array: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF (Pillow cannot write one)."""
    height, width, _ = array.shape
    pixels = array.astype("<u2").tobytes()
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, 8 + 2 + 10 * 12 + 4),  # offset of the three BitsPerSample values
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, 8 + 2 + 10 * 12 + 4 + 6),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        short = kind == 3 and count == 1  # a lone SHORT is stored left-justified
        value_bytes = struct.pack("<HH", value, 0) if short else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + value_bytes
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + pixels


def grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[None], 3, axis=0)


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return rgb * alpha + (1 - alpha)


def chw(hwc: np.ndarray) -> np.ndarray:
    return hwc.transpose(2, 0, 1)


def save(tmp_path, name: str, im: Image.Image, **options) -> str:
    path = tmp_path / name
    im.save(path, **options)
    return path


def load_checked(path) -> tuple[np.ndarray, str]:
    img, note = load_image(path)
    assert img.dtype == torch.float32 and img.ndim == 3 and img.shape[0] == 3
    assert 0 <= img.min() and img.max() <= 1
    assert "\n" not in note and note.startswith(os.path.basename(path) + ": ")
    return img.numpy(), note


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "tiff", "bmp", "webp"])
def test_rgb_lossless_formats_exact(tmp_path, fmt):
    options = {"lossless": True} if fmt == "webp" else {}
    img, note = load_checked(save(tmp_path, f"a.{fmt}", Image.fromarray(RGB8), **options))
    np.testing.assert_array_equal(img, chw(RGB8) / np.float32(255))
    assert note.endswith(": 5x6 RGB 8-bit")


@pytest.mark.parametrize("fmt", ["png", "tiff", "webp"])
def test_rgba_composited_over_white(tmp_path, fmt):
    rgba = Image.fromarray(np.dstack([RGB8, ALPHA8]))
    options = {"lossless": True, "exact": True} if fmt == "webp" else {}
    img, note = load_checked(save(tmp_path, f"a.{fmt}", rgba, **options))
    expected = over_white(chw(RGB8) / 255, ALPHA8 / 255)
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert "RGBA 8-bit" in note and "alpha composited over white" in note


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "bmp"])
def test_grey_expanded(tmp_path, fmt):
    values = np.repeat(np.arange(0, 250, 50, dtype=np.uint8), 8)[None].repeat(8, 0)  # JPEG blocks
    img, note = load_checked(save(tmp_path, f"a.{fmt}", Image.fromarray(values, "L")))
    np.testing.assert_allclose(img, grey(values / 255), atol=2 / 255 if fmt == "jpeg" else 0)
    assert "L 8-bit grey" in note and "expanded to RGB" in note


def test_grey_alpha_and_bilevel(tmp_path):
    la = Image.merge("LA", [Image.fromarray(RGB8[..., 0]), Image.fromarray(ALPHA8)])
    img, note = load_checked(save(tmp_path, "la.png", la))
    np.testing.assert_allclose(img, grey(over_white(RGB8[..., 0] / 255, ALPHA8 / 255)), atol=1e-6)
    assert "alpha composited over white" in note

    bits = Image.fromarray(RGB8[..., 0] > 127)
    img, note = load_checked(save(tmp_path, "bits.png", bits))
    np.testing.assert_array_equal(img, grey(RGB8[..., 0] > 127).astype(np.float32))
    assert "1-bit grey" in note


@pytest.mark.parametrize("fmt", ["png", "bmp", "tiff", "gif"])
def test_palette_converted(tmp_path, fmt):
    palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]
    indices = RNG.integers(0, 4, (6, 5), dtype=np.uint8)
    im = Image.fromarray(indices, "P")
    im.putpalette(sum(palette, []))
    img, note = load_checked(save(tmp_path, f"a.{fmt}", im))
    np.testing.assert_allclose(img, chw(np.array(palette)[indices] / 255), atol=1e-6)
    assert "palette converted to RGB" in note


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_transparency_composited(tmp_path, fmt):
    im = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    im.putpalette([0, 0, 0, 200, 100, 50])
    img, note = load_checked(save(tmp_path, f"a.{fmt}", im, transparency=0))
    white, colour = [1.0, 1.0, 1.0], [200 / 255, 100 / 255, 50 / 255]
    expected = np.array([[white, colour], [colour, white]])
    np.testing.assert_allclose(img, chw(expected), atol=1e-6)
    assert "palette with transparency" in note and "over white" in note


@pytest.mark.parametrize("fmt", ["tiff", "jpeg"])
def test_cmyk_converted(tmp_path, fmt):
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[..., 0] = 255  # pure cyan
    img, note = load_checked(save(tmp_path, f"a.{fmt}", Image.fromarray(cmyk, "CMYK")))
    np.testing.assert_allclose(img, chw(np.broadcast_to([0.0, 1.0, 1.0], (8, 8, 3))), atol=2 / 255)
    assert "CMYK converted to RGB" in note


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_grey_16_bit_keeps_precision(tmp_path, fmt):
    ramp = np.arange(0, 65536, 2185, dtype=np.uint16)[:30].reshape(6, 5)
    ramp[0, 0], ramp[-1, -1] = 1, 65535  # neighbours that 8 bits would merge
    img, note = load_checked(save(tmp_path, f"a.{fmt}", Image.fromarray(ramp)))
    np.testing.assert_array_equal(np.round(img * 65535), grey(ramp))
    assert "I;16 16-bit grey" in note and "1/65535" in note


@pytest.mark.parametrize(
    ("colour_type", "channels", "mode"), [(2, 3, "RGB"), (6, 4, "RGBA"), (4, 2, "LA")]
)
def test_colour_16_bit_png_keeps_precision(tmp_path, colour_type, channels, mode):
    samples = RNG.integers(0, 65536, (6, 5, channels), dtype=np.uint16)
    path = tmp_path / "a.png"
    path.write_bytes(png_with(samples, colour_type))
    img, note = load_checked(path)
    values = samples / 65535
    if mode == "LA":
        expected = grey(over_white(values[..., 0], values[..., 1]))
    elif mode == "RGBA":
        expected = chw(over_white(values[..., :3], values[..., 3:]))
    else:
        expected = chw(values)
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert f"{mode} 16-bit" in note and "1/65535" in note


def test_rgb_16_bit_tiff_keeps_precision(tmp_path):
    samples = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    path = tmp_path / "a.tif"
    path.write_bytes(tiff_rgb16(samples))
    img, _ = load_checked(path)
    np.testing.assert_array_equal(np.round(img * 65535), chw(samples))


@pytest.mark.parametrize(
    ("mode", "values", "expected", "rescaled"),
    [
        ("I", [[0, 65535], [1000, 2]], [[0, 1], [1000 / 65535, 2 / 65535]], False),
        ("I", [[-10, 90], [40, 0]], [[0, 1], [0.5, 0.1]], True),
        ("F", [[0.0, 1.0], [0.25, 0.5]], [[0, 1], [0.25, 0.5]], False),
        ("F", [[-1.0, 3.0], [1.0, 0.0]], [[0, 1], [0.5, 0.25]], True),
    ],
)
def test_wide_grey_tiff(tmp_path, mode, values, expected, rescaled):
    array = np.array(values, np.int32 if mode == "I" else np.float32)
    img, note = load_checked(save(tmp_path, "a.tif", Image.fromarray(array)))
    np.testing.assert_allclose(img, grey(np.array(expected)), atol=1e-6)
    assert f"{mode} 32-bit" in note and ("rescaled" in note) == rescaled


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90 degrees clockwise
    img, note = load_checked(save(tmp_path, "a.png", Image.fromarray(RGB8), exif=exif))
    np.testing.assert_array_equal(img, chw(np.rot90(RGB8, -1)) / np.float32(255))
    assert note.startswith("a.png: 6x5 ") and "EXIF orientation 6 applied" in note


def test_exif_orientation_applied_to_16_bit_colour(tmp_path):
    samples = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    source = tmp_path / "raw.png"
    source.write_bytes(png_with(samples, 2))
    exif = Image.Exif()
    exif[0x0112] = 3  # 180 degrees
    exif_bytes = exif.tobytes().removeprefix(b"Exif\x00\x00")  # the eXIf chunk has no prefix
    chunk = struct.pack(">I", len(exif_bytes)) + b"eXIf" + exif_bytes
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + exif_bytes))
    data = source.read_bytes()
    path = tmp_path / "a.png"
    path.write_bytes(data[:33] + chunk + data[33:])  # after the signature and IHDR
    img, note = load_checked(path)
    np.testing.assert_array_equal(np.round(img * 65535), chw(samples[::-1, ::-1]))
    assert "EXIF orientation 3 applied" in note


@pytest.mark.parametrize("fmt", ["gif", "png", "webp"])
def test_animation_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (4, 3), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / f"a.{fmt}"
    options = {"lossless": True} if fmt == "webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, **options)
    img, note = load_checked(path)
    np.testing.assert_allclose(img, chw(np.broadcast_to([1.0, 0, 0], (3, 4, 3))), atol=1 / 255)
    assert "first of 2 frames" in note


# -- refusing bad files -------------------------------------------------------------------


def assert_refused(path, *words: str) -> None:
    with pytest.raises(UserError) as caught:
        load_image(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_missing_directory_empty(tmp_path):
    assert_refused(tmp_path / "nope.png", "no such file")
    assert_refused(tmp_path, "directory")
    (tmp_path / "empty.png").write_bytes(b"")
    assert_refused(tmp_path / "empty.png", "empty")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated(tmp_path, fmt):
    path = save(tmp_path, f"a.{fmt}", Image.fromarray(RNG.integers(0, 256, (64, 64, 3), np.uint8)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(path, "truncated or corrupt")


def test_not_images(tmp_path):
    (tmp_path / "noise.png").write_bytes(RNG.integers(0, 256, 4096, np.uint8).tobytes())
    assert_refused(tmp_path / "noise.png", "not an image")
    (tmp_path / "notes.txt").write_text("a texture of knitted wool\n")
    assert_refused(tmp_path / "notes.txt", "not an image")


def test_zero_size(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_with(np.zeros((4, 0, 3), np.uint16), 2))
    assert_refused(path)


def test_too_large(tmp_path, monkeypatch):
    path = save(tmp_path, "a.png", Image.fromarray(RGB8))
    monkeypatch.setattr(images, "MAX_PIXELS", 29)
    assert_refused(path, "too large", "5x6")
    monkeypatch.undo()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow's own bomb check
    assert_refused(path, "too large")


def test_nan_float_refused(tmp_path):
    path = save(tmp_path, "a.tif", Image.fromarray(np.array([[0.5, np.nan]], np.float32)))
    assert_refused(path, "NaN")


def test_unreadable(tmp_path, monkeypatch):
    path = save(tmp_path, "a.png", Image.fromarray(RGB8))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)  # root reads through chmod 000
    assert_refused(path, "permission denied")


# -- writing ------------------------------------------------------------------------------


def test_round_trip_8_bit(tmp_path):
    x = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    out = save_image(x, tmp_path / "a.png")
    assert out == tmp_path / "a.png"
    img, note = load_checked(out)
    np.testing.assert_array_equal(img * 255, torch.round(x[0] * 255).numpy())
    assert note == "a.png: 9x7 RGB 8-bit"


def test_round_trip_16_bit(tmp_path):
    x = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(2)) * 1.2 - 0.1
    path = save_image(x, tmp_path / "a.png", bits=16)
    with Image.open(path) as im:  # a valid PNG to other readers, too
        assert (im.mode, im.size) == ("RGB", (9, 7))
    img, _ = load_checked(path)
    np.testing.assert_array_equal(np.round(img * 65535), torch.round(x.clamp(0, 1) * 65535))


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"precious")
    with pytest.raises(UserError, match="--overwrite"):
        save_image(torch.zeros(3, 2, 2), path)
    assert path.read_bytes() == b"precious"
    save_image(torch.zeros(3, 2, 2), path, overwrite=True)
    assert load_image(path)[0].sum() == 0


@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, existing):
    path = tmp_path / "a.png"
    if existing:
        path.write_bytes(b"precious")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UserError, match="No space left"):
        save_image(torch.rand(3, 4, 4), path, bits=16, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["a.png"] if existing else [])
    if existing:
        assert path.read_bytes() == b"precious"


def test_failed_sidecar_removes_image(tmp_path, monkeypatch):
    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sidecar_module, "stage_file", fail)
    with pytest.raises(UserError, match="No space left"):
        save_image(torch.rand(3, 4, 4), tmp_path / "a.png", sidecar={"seed": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fail_at", ["stage", "second rename"])
def test_overwrite_keeps_the_old_pair_when_the_new_one_cannot_be_written(
    tmp_path, monkeypatch, fail_at
):
    path = tmp_path / "a.png"
    save_image(torch.zeros(3, 4, 4), path, sidecar={"seed": 1})
    old_png, old_json = path.read_bytes(), path.with_suffix(".json").read_bytes()
    if fail_at == "stage":  # e.g. the disk fills up while the sidecar is written
        real_stage = sidecar_module.stage_file

        def stage(target, data, token=None):
            if target.suffix == ".json":
                raise OSError(28, "No space left on device")
            return real_stage(target, data, token)

        monkeypatch.setattr(sidecar_module, "stage_file", stage)
    else:  # the image is already in place when the sidecar's rename fails
        real_replace, calls = os.replace, []

        def replace(src, dst):  # the new sidecar's move fails; the old one's restore works
            calls.append(dst)
            if Path(dst).name == "a.json" and calls.count(dst) == 1:
                raise OSError(5, "Input/output error")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UserError, match="cannot write"):
        save_image(torch.ones(3, 4, 4), path, overwrite=True, sidecar={"seed": 2})
    monkeypatch.undo()
    assert path.read_bytes() == old_png and path.with_suffix(".json").read_bytes() == old_json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png"]


def test_existing_sidecar_is_not_replaced_without_overwrite(tmp_path):
    (tmp_path / "a.json").write_text("precious")
    with pytest.raises(UserError, match="a.json.*--overwrite"):
        save_image(torch.zeros(3, 2, 2), tmp_path / "a.png", sidecar={"seed": 1})
    assert (tmp_path / "a.json").read_text() == "precious"
    assert not (tmp_path / "a.png").exists()


def test_sidecar(tmp_path):
    save_image(torch.rand(3, 4, 4), tmp_path / "a.png", sidecar={"seed": 3, "config": {"b": 1}})
    text = (tmp_path / "a.json").read_text()
    meta = json.loads(text)
    assert meta["seed"] == 3 and meta["versions"] == library_versions()
    assert text == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    assert set(library_versions()) == {
        "python",
        "torch",
        "torchvision",
        "numpy",
        "pillow",
        "texsynth",
    }

    save_image(torch.rand(3, 4, 4), tmp_path / "b.png", sidecar={"versions": {"mine": "1"}})
    assert json.loads((tmp_path / "b.json").read_text())["versions"] == {"mine": "1"}


def test_save_rejects_bad_arguments(tmp_path):
    with pytest.raises(UserError, match=r"\.png"):
        save_image(torch.rand(3, 4, 4), tmp_path / "a.jpg")
    for bad in [torch.rand(4, 4), torch.rand(2, 3, 4, 4), torch.rand(4, 4, 4)]:
        with pytest.raises(ValueError):
            save_image(bad, tmp_path / "a.png")
    with pytest.raises(ValueError):
        save_image(torch.full((3, 2, 2), float("nan")), tmp_path / "a.png")
    with pytest.raises(ValueError):
        save_image(torch.rand(3, 2, 2), tmp_path / "a.png", bits=12)
    assert list(tmp_path.iterdir()) == []


def test_check_output_path(tmp_path, monkeypatch):
    assert check_output_path(str(tmp_path / "a.png"), overwrite=False) == tmp_path / "a.png"
    assert check_output_path(tmp_path / "A.PNG", overwrite=False) == tmp_path / "A.PNG"
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    assert check_output_path(tmp_path / "a.png", overwrite=True) == tmp_path / "a.png"
    refused = {
        "a.png": "--overwrite",
        "dir.png": "directory",
        "b.jpg": ".png",
        "missing/a.png": "not an existing directory",
        "file/a.png": "not an existing directory",
    }
    for name, words in refused.items():
        with pytest.raises(UserError, match=words):
            check_output_path(tmp_path / name, overwrite=False)
    with pytest.raises(UserError, match="not writable"):  # a folder no file can be made in
        check_output_path(Path("/proc/c.png"), overwrite=False)


# -- sizes and sidecar helpers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024x512", (512, 1024)),
        ("512", (512, 512)),
        (" 64X32 ", (32, 64)),
        ("32768", (32768,) * 2),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "x", "abc", "0x5", "5x0", "0", "-5x5", "1.5x2", "1x2x3", "32769x1"]
)
def test_parse_size_refuses(text):
    with pytest.raises(UserError):
        parse_size(text)


def test_hash_and_json(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(bytes(range(256)) * 5000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    write_json_atomic(tmp_path / "m.json", {"b": tmp_path, "a": 1})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1, "b": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "w.bin"]
