"""Fuzz targets: each takes bytes and must end in success or `GscError`, nothing else.

- ``container``: the container parser (header, chunks, CRCs, limits), no entropy decoding.
- ``entropy``: the adaptive model and range decoder on arbitrary words, with and without
  contexts (SPEC 5.6).
- ``decode``: the whole public decode, rendering included (`gscodec.decode`).

`repair_crcs` makes a mutated stream's CRCs right again (the structure-aware mode), so
mutations get past the CRC checks to the entropy decoder, the symbol checks and the
renderer. constriction reports some errors as pyo3 PanicException, a BaseException, so
the outcome check catches BaseException and treats anything but GscError as a failure.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

import gscodec
from gscodec.format.constants import COUNT_CONTEXTS, MAX_PER_PATCH
from gscodec.format.container import HEADER_SIZE, parse
from gscodec.format.entropy import Contexts, StreamDecoder

MAX_ENTROPY_SYMBOLS = 1 << 12  # per entropy input: about 2 ms a call, so a campaign reaches 10^6 inputs


def container(data: bytes) -> None:
    parse(data)


def entropy(data: bytes) -> None:
    """First 2 bytes: alphabet - 1 (mod 4096) + 1; next 3: symbol count; the rest: u32 words,
    decoded as the streams of `entropy_streams`."""
    if len(data) < 5:
        return
    alphabet = int.from_bytes(data[:2], "little") % 4096 + 1
    count = int.from_bytes(data[2:5], "little") % (MAX_ENTROPY_SYMBOLS + 1)
    body = data[5:]
    words = np.frombuffer(body[: len(body) // 4 * 4], "<u4")
    decoder = StreamDecoder(words)
    for n, size, contexts in entropy_streams(alphabet, count):
        decoder.decode(n, size, contexts=contexts)


def entropy_streams(alphabet: int, count: int) -> list[tuple[int, int, Contexts | None]]:
    """The streams the entropy target decodes, one after another in the same words: (symbols,
    alphabet, contexts): one without contexts, one with contexts by the previous symbol, and
    patch counts with their neighbours' contexts on a grid of a width the alphabet gives."""
    cols = alphabet % 61 + 1
    previous = Contexts.from_previous(np.arange(alphabet) % 3, 1, 3)
    grid = Contexts.from_neighbours(COUNT_CONTEXTS, cols, int(COUNT_CONTEXTS.max()) + 1)
    return [(count, alphabet, None), (count // 2, alphabet, previous),
            (count // 2 // cols * cols, MAX_PER_PATCH + 1, grid)]


def decode(data: bytes) -> None:
    gscodec.decode(data)


TARGETS = {"container": container, "entropy": entropy, "decode": decode}


def outcome(target, data: bytes) -> str:
    """"ok" or "GscError"; any other exception propagates (a finding)."""
    try:
        target(data)
    except gscodec.GscError:
        return "GscError"
    return "ok"


def repair_crcs(data: bytes) -> bytes:
    """``data`` with the header CRC and every complete chunk's CRC recomputed."""
    out = bytearray(data)
    if len(out) >= HEADER_SIZE:
        struct.pack_into("<I", out, HEADER_SIZE - 4, zlib.crc32(bytes(out[: HEADER_SIZE - 4])))
    pos = HEADER_SIZE
    while pos + 8 <= len(out):
        (length,) = struct.unpack_from("<I", out, pos + 4)
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        struct.pack_into("<I", out, end, zlib.crc32(bytes(out[pos : pos + 4]) + bytes(out[pos + 8 : end])))
        pos = end + 4
    return bytes(out)
