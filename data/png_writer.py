"""Streaming PNG writer: an image of any height written band by band, in bounded memory.

``data.images.save_image`` needs the whole image as one float tensor (12 bytes a pixel), which
a 16384x16384 texture cannot afford; this writer holds one band of rows at a time. It keeps
the same guarantees: the file appears atomically (temporary file, fsync, rename) and the JSON
sidecar is written after it, or the image is removed.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from data.sidecar import (
    commit_files,
    json_bytes,
    library_versions,
    new_token,
    reporting_write_errors,
    stage_file,
    temporary_path,
)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


class PngStream:
    """Write an RGB PNG (PNG spec, ISO 15948) from successive (h, W, 3) bands, top to bottom.

    Args:
        path: the ``.png`` file; checked by the caller (``data.images.check_output_path``).
        size: (H, W) of the whole image.
        bits: 8 (uint8 bands) or 16 (uint16 bands).
        level: zlib level; 3 is ~3x faster than Pillow's 6 on textures for ~3% more bytes.

    Use as a context manager; leaving it by an exception deletes the temporary file. Set
    ``sidecar`` (a dict) before leaving the block to write the JSON sidecar with the image
    (a ``versions`` entry is added): both files arrive together, or the old ones stay.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], bits: int = 8, level: int = 3):
        self.path, self.size, self.bits = Path(path), size, bits
        self.token = new_token()
        self.tmp = temporary_path(self.path, self.token)
        self.rows = 0
        self.sidecar: dict | None = None  # set before leaving the block: written with the image
        self._zlib = zlib.compressobj(level)

    def __enter__(self) -> PngStream:
        height, width = self.size
        header = struct.pack(">IIBBBBB", width, height, self.bits, 2, 0, 0, 0)  # colour type 2
        with reporting_write_errors(self.path):
            self.file = open(self.tmp, "xb", buffering=0)  # errors surface at write(), once
            try:
                self._put(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header))
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
        """Append rows: (h, W, 3) uint8 (8 bits) or uint16 (16 bits)."""
        h, w, _ = band.shape
        rows = np.zeros((h, 1 + w * 3 * (self.bits // 8)), np.uint8)  # column 0: filter None
        rows[:, 1:] = (
            band.astype(">u2" if self.bits == 16 else np.uint8).view(np.uint8).reshape(h, -1)
        )
        with reporting_write_errors(self.path):
            self._put(_chunk(b"IDAT", self._zlib.compress(rows.tobytes())))
        self.rows += h

    def __exit__(self, kind, error, trace) -> None:
        try:
            with reporting_write_errors(self.path):
                if kind is None:
                    if self.rows != self.size[0]:
                        raise ValueError(f"wrote {self.rows} rows of {self.size[0]}")
                    self._put(_chunk(b"IDAT", self._zlib.flush()) + _chunk(b"IEND", b""))
                    self.file.flush()
                    os.fsync(self.file.fileno())
                self.file.close()
                if kind is None:
                    staged = {self.path: self.tmp}
                    if self.sidecar is not None:
                        meta = {"versions": library_versions(), **self.sidecar}
                        json_path = self.path.with_suffix(".json")
                        staged[json_path] = stage_file(json_path, json_bytes(meta), self.token)
                    commit_files(staged, self.token)
        finally:
            self.file.close()
            self.tmp.unlink(missing_ok=True)
