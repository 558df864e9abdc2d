"""The symbol streams of one layer, in coding order (SPEC 5).

Stream order inside a layer's range-coded words: counts, off_x, off_y, major,
minor_gap, angle (only where minor_gap > 0), then the Y, Cb and Cr colour indices;
every stream with the adaptive model of `gscodec.format.entropy`. From format 2.0, five
streams may split among contexts (SPEC 5.6), each where its layer's flags say. The
contexts are those that saved the most bits on training crops (Sun-Hays, 768 x 512, the
default effort) among the few tried; each one's change to the whole stream's rate at
qualities 20 / 50 / 80, taken in every layer:

- a patch count by its neighbours' counts (+0.1 / -1.4 / -1.3 %): splats cluster;
- a minor gap by its major index (+0.1 / -0.3 / -0.5 %): large splats are rounder;
- Y and Cb by the sign of the previous splat's (-1.4 / -0.4 / 0 %, -1.1 / -0.5 / -0.2 %):
  in the coarsest layer, neighbouring splats share a sign (in finer layers this costs bits);
- Cr by the sign of the same splat's Cb (-1.5 / -0.9 / -0.5 %): chroma correlates.

The encoder takes each stream's contexts in a layer where they take fewer bits there: on 8
crops, 4.9 / 3.7 / 2.7 % fewer bits than format 1.0 for the same symbols.
"""

from __future__ import annotations

import numpy as np

from ..errors import GscError
from .constants import CONTEXT_BITS, COUNT_CONTEXTS, GAP_CONTEXTS, MAX_PER_PATCH, SIGN_CONTEXTS, VERSION
from .entropy import Contexts, StreamDecoder, StreamEncoder, ideal_bits
from .params import LayerParams, LayerSymbols

STREAMS = ("counts", "off_x", "off_y", "major", "minor_gap", "angle", "Y", "Cb", "Cr")


def encode_symbols(params: LayerParams, symbols: LayerSymbols, width: int, height: int,
                   version: tuple[int, int] = VERSION, bits: dict[str, int] | None = None,
                   flags: int | None = None) -> tuple[np.ndarray, int]:
    """The range-coded words of one layer of an image of ``width`` x ``height`` pixels, in format
    ``version``, and the layer's context flags: in format 2, each stream takes its contexts
    (SPEC 5.6) where they save bits, unless ``flags`` says which; ``bits`` (if given) receives
    each stream's size."""
    cells = 1 << params.pos_bits
    color = symbols.color
    streams = {
        "counts": (symbols.counts, MAX_PER_PATCH + 1), "off_x": (symbols.off_x, cells), "off_y": (symbols.off_y, cells),
        "major": (symbols.major, params.scale_levels), "minor_gap": (symbols.minor_gap, params.scale_levels),
        "angle": (symbols.angle, params.angle_levels),
        **{name: (color[:, c], params.color_levels[c]) for c, name in enumerate(("Y", "Cb", "Cr"))},
    }
    rules = {
        "counts": count_contexts(params.grid(width, height)[1]), "minor_gap": gap_contexts(params, symbols.major),
        "Y": sign_contexts(params, 0), "Cb": sign_contexts(params, 1), "Cr": sign_contexts(params, 2, color[:, 1]),
    } if version[0] >= 2 else {}
    # each symbol's context, found once for the choice and the coding (all symbols are known here)
    contexts = {name: Contexts.from_given(rule.of(streams[name][0]), rule.count) for name, rule in rules.items()}
    if not contexts:
        flags = 0
    elif flags is None:
        flags = sum(CONTEXT_BITS[name] for name, context in contexts.items()
                    if ideal_bits(*streams[name], context) < ideal_bits(*streams[name]))
    enc = StreamEncoder()
    for name in STREAMS:
        used = enc.encode(*streams[name], contexts[name] if flags & CONTEXT_BITS.get(name, 0) else None)
        if bits is not None:
            bits[name] = bits.get(name, 0) + used
    return enc.words(), flags


def count_contexts(cols: int) -> Contexts:
    """A patch count's context, on a grid of ``cols`` columns: by the sum of its left, upper-left,
    upper and upper-right neighbours."""
    return Contexts.from_neighbours(COUNT_CONTEXTS, cols, int(COUNT_CONTEXTS.max()) + 1)


def gap_contexts(params: LayerParams, major: np.ndarray) -> Contexts:
    """A minor gap's context: the quarter of the scale levels its splat's major index is in."""
    return Contexts.from_given(np.minimum(GAP_CONTEXTS * major // params.scale_levels, GAP_CONTEXTS - 1),
                               GAP_CONTEXTS)


def sign_contexts(params: LayerParams, channel: int, cb: np.ndarray | None = None) -> Contexts:
    """A colour index's context: the sign of a value (index + color_min): the previous splat's in
    this channel, or for Cr (``cb``: the layer's Cb indices) the same splat's Cb."""
    if cb is not None:
        return Contexts.from_given(np.sign(cb + params.color_min[1]) + 1, SIGN_CONTEXTS)
    value = np.arange(params.color_levels[channel]) + params.color_min[channel]
    return Contexts.from_previous(np.sign(value) + 1, 1, SIGN_CONTEXTS)


def decode_symbols(params: LayerParams, count: int, words: np.ndarray, width: int, height: int,
                   flags: int = 0) -> LayerSymbols:
    """One layer's symbols, its streams with contexts where ``flags`` say (SPEC 5.6); raises
    GscError when they contradict the declared counts."""
    dec = StreamDecoder(words)
    rows, cols = params.grid(width, height)
    on = {name: bool(flags & bit) for name, bit in CONTEXT_BITS.items()}
    # uint8 (counts are at most MAX_PER_PATCH): a grid of 2^26 patches then takes 64 MB, not 512 MB
    counts = dec.decode(rows * cols, MAX_PER_PATCH + 1, np.uint8,
                        count_contexts(cols) if on["counts"] else None)
    if int(counts.sum()) != count:
        raise GscError(f"corrupt layer: patch counts add up to {int(counts.sum())}, not {count}")
    cells = 1 << params.pos_bits
    off_x, off_y = dec.decode(count, cells), dec.decode(count, cells)
    major = dec.decode(count, params.scale_levels)
    gap = dec.decode(count, params.scale_levels, contexts=gap_contexts(params, major) if on["minor_gap"] else None)
    if (gap > major + params.scale_min + 16 * params.scale_den).any():
        raise GscError("corrupt layer: a minor axis below the smallest scale (2^-16 pixels)")
    angle = dec.decode(int((gap > 0).sum()), params.angle_levels)
    y = dec.decode(count, params.color_levels[0], contexts=sign_contexts(params, 0) if on["Y"] else None)
    cb = dec.decode(count, params.color_levels[1], contexts=sign_contexts(params, 1) if on["Cb"] else None)
    cr = dec.decode(count, params.color_levels[2], contexts=sign_contexts(params, 2, cb) if on["Cr"] else None)
    return LayerSymbols(counts, off_x, off_y, major, gap, angle, np.stack([y, cb, cr], 1).reshape(count, 3))
