"""Splats <-> .gsc bytes: quantize, entropy-code and pack each layer (and back).

Stream order inside a layer's range-coded words (bitstream/SPEC.md, section 5):
counts, off_x, off_y, major, minor_gap, angle (only where minor_gap > 0), then the
Y, Cb and Cr colour indices; every stream with the adaptive model of `entropy`.
"""

from __future__ import annotations

import numpy as np

from .container import BACKGROUND_UNIT, Header, LayerChunk, pack, parse
from .entropy import StreamDecoder, StreamEncoder
from .errors import GscError
from .quantize import MAX_PER_PATCH, LayerParams, LayerSymbols, Steps, dequantize_layer, fit_params, quantize_layer
from .splats import Splats


def quantize_background(background: np.ndarray) -> tuple[int, int, int]:
    b = np.clip(np.rint(np.asarray(background, np.float64) * BACKGROUND_UNIT), -32768, 32767)
    return tuple(int(v) for v in b)  # type: ignore[return-value]


STREAMS = ("counts", "off_x", "off_y", "major", "minor_gap", "angle", "Y", "Cb", "Cr")


def encode_symbols(params: LayerParams, symbols: LayerSymbols, bits: dict[str, int] | None = None) -> np.ndarray:
    """The range-coded words of one layer; ``bits`` (if given) receives each stream's size."""
    enc = StreamEncoder()
    cells = 1 << params.pos_bits
    streams = [
        (symbols.counts, MAX_PER_PATCH + 1), (symbols.off_x, cells), (symbols.off_y, cells),
        (symbols.major, params.scale_levels), (symbols.minor_gap, params.scale_levels),
        (symbols.angle, params.angle_levels),
        *((symbols.color[:, c], params.color_levels[c]) for c in range(3)),
    ]
    for name, (values, alphabet) in zip(STREAMS, streams, strict=True):
        used = enc.encode(values, alphabet)
        if bits is not None:
            bits[name] = bits.get(name, 0) + used
    return enc.words()


def stream_bits(data: bytes, /) -> tuple[Splats, dict[str, int]]:
    """The splats of a stream and the bits each symbol stream takes (summed over layers).

    Decoding is deterministic, so re-encoding the decoded symbols reproduces the
    coded sizes exactly (range-coder flush bits aside).
    """
    header, chunks = parse(_as_bytes(data))
    bits: dict[str, int] = {}
    for chunk in chunks:
        symbols = decode_symbols(chunk.params, chunk.splat_count, chunk.words, header.width, header.height)
        encode_symbols(chunk.params, symbols, bits)
    return decode_splats(data), bits


def decode_symbols(params: LayerParams, count: int, words: np.ndarray, width: int, height: int) -> LayerSymbols:
    """One layer's symbols; raises GscError when they contradict the declared counts."""
    dec = StreamDecoder(words)
    rows, cols = params.grid(width, height)
    # uint8 (counts are at most MAX_PER_PATCH): a grid of 2^26 patches then takes 64 MB, not 512 MB
    counts = dec.decode(rows * cols, MAX_PER_PATCH + 1, np.uint8)
    if int(counts.sum()) != count:
        raise GscError(f"corrupt layer: patch counts add up to {int(counts.sum())}, not {count}")
    cells = 1 << params.pos_bits
    off_x, off_y = dec.decode(count, cells), dec.decode(count, cells)
    major = dec.decode(count, params.scale_levels)
    gap = dec.decode(count, params.scale_levels)
    if (gap > major + params.scale_min + 16 * params.scale_den).any():
        raise GscError("corrupt layer: a minor axis below the smallest scale (2^-16 pixels)")
    angle = dec.decode(int((gap > 0).sum()), params.angle_levels)
    color = np.stack([dec.decode(count, params.color_levels[c]) for c in range(3)], 1)
    return LayerSymbols(counts, off_x, off_y, major, gap, angle, color.reshape(count, 3))


def encode_splats(splats: Splats, /, *, quality: float = 50.0, steps: Steps | None = None) -> bytes:
    """Quantize and code ``splats``; ``quality`` (0-100) picks the quantizer steps."""
    from .encoder import steps_for_quality

    if not isinstance(splats, Splats):
        raise GscError(f"encode_splats expects a Splats, got {type(splats).__name__}")
    steps = steps or steps_for_quality(quality)
    layers = []
    total = 0
    for index, patch in enumerate(splats.patch_sizes):
        part = splats.select(splats.layer == index)
        params = fit_params(part, patch, steps)
        symbols, _ = quantize_layer(part, params)
        layers.append(LayerChunk(params, len(symbols), encode_symbols(params, symbols)))
        total += len(symbols)
    header = Header(splats.width, splats.height, len(layers), total, quantize_background(splats.background))
    return pack(header, layers)


def decode_splats(data: bytes, /, *, layers: int | None = None) -> Splats:
    """The splats of a .gsc stream (the first ``layers`` layers, or all)."""
    header, chunks = parse(_as_bytes(data))
    if layers is not None:
        if not isinstance(layers, int) or layers < 0:
            raise GscError(f"layers must be a non-negative integer, got {layers!r}")
        chunks = chunks[:layers]
    parts = []
    for chunk in chunks:
        symbols = decode_symbols(chunk.params, chunk.splat_count, chunk.words, header.width, header.height)
        parts.append(dequantize_layer(chunk.params, symbols, header.width, header.height))
    def cat(i: int, width: int) -> np.ndarray:
        return np.concatenate([p[i] for p in parts]) if parts else np.zeros((0, width), np.float32)
    layer_of = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)]) if parts else None
    return Splats(
        header.width, header.height, cat(0, 2), cat(1, 2), cat(2, 0).reshape(-1), cat(3, 3),
        background=np.asarray(header.background, np.float32) / BACKGROUND_UNIT,
        layer=layer_of,
        patch_sizes=tuple(c.params.patch_size for c in chunks) or (1,),
    )


def _as_bytes(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise GscError(f"expected bytes, got {type(data).__name__}")
