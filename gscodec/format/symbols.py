"""The symbol streams of one layer, in coding order (SPEC 5).

Stream order inside a layer's range-coded words: counts, off_x, off_y, major,
minor_gap, angle (only where minor_gap > 0), then the Y, Cb and Cr colour indices;
every stream with the adaptive model of `gscodec.format.entropy`.
"""

from __future__ import annotations

import numpy as np

from ..errors import GscError
from .constants import MAX_PER_PATCH
from .entropy import StreamDecoder, StreamEncoder
from .params import LayerParams, LayerSymbols

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
