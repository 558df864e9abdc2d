"""Layers of symbols <-> .gsc bytes, and the decoded splats of a stream.

`write_stream` packs layers whose symbols are already quantized (the quantizer,
`gscodec.quant`, makes them); `decode_splats` is the whole decoder up to rendering:
parse, check, entropy-decode, dequantize (SPEC 3-6).
"""

from __future__ import annotations

import numpy as np

from ..errors import GscError
from ..splats import Splats
from .constants import BACKGROUND_UNIT, VERSION
from .container import Header, LayerChunk, pack, parse
from .params import LayerParams, LayerSymbols, dequantize_layer
from .symbols import decode_symbols, encode_symbols


def write_stream(
    width: int, height: int, background: tuple[int, int, int], layers: list[tuple[LayerParams, LayerSymbols]],
    version: tuple[int, int] = VERSION,
) -> bytes:
    """The .gsc bytes of an image of ``width`` x ``height`` pixels: the background (YCbCr, in
    units of 1/BACKGROUND_UNIT) and each layer's parameters and symbols, in order, in format
    ``version`` (the current one unless told)."""
    chunks = [LayerChunk(params, len(symbols), *encode_symbols(params, symbols, width, height, version))
              for params, symbols in layers]
    header = Header(width, height, len(chunks), sum(c.splat_count for c in chunks), background, version)
    return pack(header, chunks)


def stream_bits(data: bytes, /) -> tuple[Splats, dict[str, int]]:
    """The splats of a stream and the bits each symbol stream takes (summed over layers).

    Decoding is deterministic, so re-encoding the decoded symbols reproduces the
    coded sizes exactly (range-coder flush bits aside).
    """
    header, chunks = parse(as_bytes(data))
    bits: dict[str, int] = {}
    for chunk in chunks:
        symbols = decode_symbols(chunk.params, chunk.splat_count, chunk.words, header.width, header.height,
                                 chunk.contexts)
        encode_symbols(chunk.params, symbols, header.width, header.height, header.version, bits, chunk.contexts)
    return decode_splats(data), bits


def decode_splats(data: bytes, /, *, layers: int | None = None) -> Splats:
    """The splats of a .gsc stream (the first ``layers`` layers, or all)."""
    header, chunks = parse(as_bytes(data))
    if layers is not None:
        if not isinstance(layers, int) or isinstance(layers, bool) or not 0 <= layers <= header.layer_count:
            raise GscError(f"layers must be an integer in 0..{header.layer_count} (the stream's layer count), "
                           f"got {layers!r}")
        chunks = chunks[:layers]
    parts = []
    for chunk in chunks:
        symbols = decode_symbols(chunk.params, chunk.splat_count, chunk.words, header.width, header.height,
                                 chunk.contexts)
        parts.append(dequantize_layer(chunk.params, symbols, header.width, header.height))

    def cat(i: int, width: int) -> np.ndarray:
        return np.concatenate([p[i] for p in parts]) if parts else np.zeros((0, width), np.float32)

    layer_of = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)]) if parts else None
    return Splats(
        header.width, header.height, cat(0, 2), cat(1, 2), cat(2, 0).reshape(-1), cat(3, 3),
        background=np.asarray(header.background, np.float32) / BACKGROUND_UNIT,
        layer=layer_of,
        patch_sizes=tuple(c.params.patch_size for c in chunks),
    )


def as_bytes(data: object) -> bytes:
    """``data`` as bytes (bytes, bytearray or memoryview); GscError for anything else."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise GscError(f"expected bytes, got {type(data).__name__}")
