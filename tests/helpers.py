"""Shared test helpers."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from gscodec import Splats
from gscodec.format.container import HEADER_SIZE, check_size
from gscodec.render.backends import render_rgb8


def render_reference(splats: Splats, /, *, scale: float = 1.0, backend: str = "torch") -> np.ndarray:
    """[H, W, 3] uint8 through `render_splats(backend=...)` and `to_uint8_rgb` on the CPU ("torch":
    the spec's reference decode; "numba": the encoder's kernels)."""
    h, w = max(1, round(splats.height * scale)), max(1, round(splats.width * scale))
    check_size(w, h)
    return render_rgb8(splats, h, w, scale=scale, backend=backend)


def split(data: bytes) -> tuple[bytearray, list[list]]:
    """(header without its CRC, [[type, payload], ...]) of a well-formed stream, for editing."""
    pos, chunks = HEADER_SIZE, []
    while pos < len(data):
        kind, n = struct.unpack_from("<4sI", data, pos)
        chunks.append([kind, bytearray(data[pos + 8 : pos + 8 + n])])
        pos += 12 + n
    return bytearray(data[: HEADER_SIZE - 4]), chunks


def join(head: bytes, chunks: list[list]) -> bytes:
    """A stream from `split`'s parts with every CRC computed afresh."""
    out = [bytes(head), struct.pack("<I", zlib.crc32(bytes(head)))]
    for kind, payload in chunks:
        out += [struct.pack("<4sI", kind, len(payload)), bytes(payload),
                struct.pack("<I", zlib.crc32(bytes(kind) + bytes(payload)))]
    return b"".join(out)
