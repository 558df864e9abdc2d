"""The .gsc container: header, chunks, CRC32, limits (bitstream/SPEC.md, sections 2-4).

Layout: a 36-byte header (magic, version, image size, colour space, layer count,
splat count, background colour, header CRC), then chunks
``type (4 ASCII) | length (u32 LE) | payload | CRC32(type + payload) (u32 LE)``:
one LAYR chunk per layer, in order, then an empty GEND chunk. All integers are
little-endian. Every declared size is checked against the limits below and the
bytes actually present before anything is allocated.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import GscError
from .constants import (
    COLOR_SPACE_YCBCR601,
    CONTEXT_BITS,
    MAGIC,
    MAX_LAYERS,
    MAX_PATCHES,
    MAX_PER_PATCH,
    MAX_PIXELS,
    MAX_SIDE,
    MAX_SPLATS,
    READ_MAJOR,
    VERSION,
)
from .params import LayerParams

_HEADER = struct.Struct("<4sBBHIIBBHIhhhH")  # 32 bytes, then its CRC32
HEADER_SIZE = _HEADER.size + 4
_CHUNK_HEAD = struct.Struct("<4sI")
_LAYER_HEAD = struct.Struct("<BBBBhHHI" + "IiI" * 3 + "I")


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    layer_count: int
    splat_count: int
    background: tuple[int, int, int]  # YCbCr in units of 1/BACKGROUND_UNIT
    version: tuple[int, int] = VERSION  # (major, minor)


@dataclass(frozen=True)
class LayerChunk:
    params: LayerParams
    splat_count: int
    words: np.ndarray  # uint32 range-coder output
    contexts: int = 0  # which streams take contexts (format 2: CONTEXT_BITS; format 1: none)


def _crc(*parts: bytes) -> int:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def check_size(width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise GscError(f"image size {width}x{height} outside 1..{MAX_SIDE} per side")
    if width * height > MAX_PIXELS:
        raise GscError(f"image of {width * height} pixels exceeds the limit of {MAX_PIXELS}")


def pack(header: Header, layers: list[LayerChunk]) -> bytes:
    """The complete .gsc byte string."""
    check_size(header.width, header.height)
    head = _HEADER.pack(
        MAGIC, *header.version, 0, header.width, header.height, COLOR_SPACE_YCBCR601,
        header.layer_count, 0, header.splat_count, *header.background, 0,
    )
    out = [head, struct.pack("<I", _crc(head))]
    for layer in layers:
        p = layer.params
        fields = [p.patch_log2, p.pos_bits, p.scale_den, layer.contexts, p.scale_min, p.scale_levels, p.angle_levels]
        fields.append(layer.splat_count)
        for c in range(3):
            fields += [p.color_step[c], p.color_min[c], p.color_levels[c]]
        words = np.ascontiguousarray(layer.words, "<u4")
        fields.append(len(words))
        out.append(_chunk(b"LAYR", _LAYER_HEAD.pack(*fields) + words.tobytes()))
    out.append(_chunk(b"GEND", b""))
    return b"".join(out)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return _CHUNK_HEAD.pack(kind, len(payload)) + payload + struct.pack("<I", _crc(kind, payload))


def parse_header(data: bytes) -> Header:
    """The header of a .gsc stream (reads only its first HEADER_SIZE bytes)."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise GscError("not a .gsc stream (bad magic bytes)")
    if len(data) < HEADER_SIZE:
        raise GscError(f"truncated .gsc header ({len(data)} of {HEADER_SIZE} bytes)")
    fields = _HEADER.unpack_from(data)
    (crc,) = struct.unpack_from("<I", data, _HEADER.size)
    if crc != _crc(data[: _HEADER.size]):
        raise GscError("corrupt .gsc header (CRC mismatch)")
    _, major, minor, flags, width, height, space, layers, _, splats, by, bcb, bcr, _ = fields
    if major not in READ_MAJOR:
        readable = " and ".join(f"{m}.x" for m in READ_MAJOR)
        raise GscError(f".gsc version {major}.{minor} is not supported (this decoder reads {readable})")
    if flags:
        raise GscError(f"unknown header flags {flags:#x}")
    if space != COLOR_SPACE_YCBCR601:
        raise GscError(f"unknown colour space {space}")
    check_size(width, height)
    if layers > MAX_LAYERS:
        raise GscError(f"{layers} layers exceed the limit of {MAX_LAYERS}")
    if splats > MAX_SPLATS:
        raise GscError(f"{splats} splats exceed the limit of {MAX_SPLATS}")
    return Header(width, height, layers, splats, (by, bcb, bcr), (major, minor))


def parse(data: bytes) -> tuple[Header, list[LayerChunk]]:
    """Header and layer chunks of a complete .gsc stream, every CRC and limit checked.

    The checks run in the order of SPEC 4.4; a message naming a byte offset names the
    offset (from the start of the stream) of the chunk it is about.
    """
    data = bytes(data)
    header = parse_header(data)
    pos, layers, total, patches = HEADER_SIZE, [], 0, 0
    while True:
        start = pos  # this chunk's offset
        if start + _CHUNK_HEAD.size > len(data):
            raise GscError(f"truncated .gsc stream (chunk head at byte {start}: {len(data) - start} of "
                           f"{_CHUNK_HEAD.size} bytes)")
        kind, length = _CHUNK_HEAD.unpack_from(data, start)
        end = start + _CHUNK_HEAD.size + length  # the payload's end, where the CRC starts
        if end + 4 > len(data):
            raise GscError(f"truncated .gsc stream (chunk {kind!r} at byte {start} declares a {length}-byte "
                           f"payload: it needs {end + 4 - start} bytes, {len(data) - start} remain)")
        payload = data[start + _CHUNK_HEAD.size : end]
        if struct.unpack_from("<I", data, end)[0] != _crc(kind, payload):
            raise GscError(f"corrupt .gsc stream (CRC mismatch in chunk {kind!r} at byte {start})")
        pos = end + 4
        if kind == b"GEND":
            if length:
                raise GscError(f"GEND chunk at byte {start} has a {length}-byte payload; it must be empty")
            break
        if kind != b"LAYR":
            raise GscError(f"unknown chunk type {kind!r} at byte {start}")
        if len(layers) == header.layer_count:
            raise GscError(f"LAYR chunk at byte {start}: more LAYR chunks than the {header.layer_count} "
                           "the header declares")
        try:
            layer = _parse_layer(payload, header)
        except GscError as exc:
            raise GscError(f"LAYR chunk {len(layers)} at byte {start}: {exc}") from None
        total += layer.splat_count
        rows, cols = layer.params.grid(header.width, header.height)
        patches += rows * cols
        if patches > MAX_PATCHES:
            raise GscError(f"LAYR chunk {len(layers)} at byte {start}: the patch grids of the layers so far hold "
                           f"{patches} patches, more than the limit of {MAX_PATCHES}")
        layers.append(layer)
    if len(layers) != header.layer_count:
        raise GscError(f"{len(layers)} LAYR chunks, the header declares {header.layer_count}")
    if total != header.splat_count:
        raise GscError(f"layers hold {total} splats, the header declares {header.splat_count}")
    if pos != len(data):
        raise GscError(f"{len(data) - pos} unexpected bytes after the GEND chunk (from byte {pos})")
    return header, layers


def _parse_layer(payload: bytes, header: Header) -> LayerChunk:
    """One LAYR payload; GscError messages say which field (the caller adds the chunk's offset)."""
    if len(payload) < _LAYER_HEAD.size:
        raise GscError(f"payload of {len(payload)} bytes is shorter than the {_LAYER_HEAD.size} bytes of fixed fields")
    f = _LAYER_HEAD.unpack_from(payload)
    if header.version[0] == 1 and f[3] != 0:
        raise GscError(f"reserved byte 3 is {f[3]}, not zero")
    if f[3] & ~sum(CONTEXT_BITS.values()):
        raise GscError(f"reserved bits 5-7 of byte 3 (the context flags, {f[3]:#x}) are set")
    params = LayerParams(
        patch_log2=f[0], pos_bits=f[1], scale_den=f[2], scale_min=f[4], scale_levels=f[5],
        angle_levels=f[6], color_step=(f[8], f[11], f[14]), color_min=(f[9], f[12], f[15]),
        color_levels=(f[10], f[13], f[16]),
    )
    params.validate()
    count, n_words = f[7], f[17]
    rows, cols = params.grid(header.width, header.height)
    if count > header.splat_count or count > MAX_PER_PATCH * rows * cols:
        raise GscError(f"declares {count} splats, more than the header's {header.splat_count} or the "
                       f"{MAX_PER_PATCH} x {rows} x {cols} its patch grid can hold")
    if len(payload) != _LAYER_HEAD.size + 4 * n_words:
        raise GscError(f"declares {n_words} words ({4 * n_words} bytes) but holds "
                       f"{len(payload) - _LAYER_HEAD.size} bytes after its fixed fields")
    words = np.frombuffer(payload, "<u4", n_words, _LAYER_HEAD.size).astype(np.uint32)
    return LayerChunk(params, count, words, f[3])
