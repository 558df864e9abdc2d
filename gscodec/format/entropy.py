"""Entropy coding of symbol streams with constriction's range coder (SPEC 5).

Every stream uses the same adaptive model (SPEC 5.2): symbols are coded in blocks
whose lengths double (16, 16, 32, 64, ... capped at MAX_BLOCK); a block's weights
are 2 * (count of each symbol in all earlier blocks) + 1, integers, so encoder and
decoder build identical models on any machine without side information. From format
2.0 a stream may split its symbols among a few contexts (`Contexts`, SPEC 5.6), each
with a model of its own that learns from that context's symbols only; a symbol's
context follows from symbols decoded before it, so it costs no bits either.

constriction (0.4.0 to 0.5.0 alike) does the rest, and SPEC 5.3-5.5 state exactly
what it computes, so a decoder can be written without it (tests/spec_decoder.py):
``Categorical(weights, perfect=False)`` quantizes the weights to 24-bit fixed-point
probabilities with one binary64 division and one binary64 multiplication per symbol
(SPEC 5.3), and ``stream.queue.RangeDecoder`` / ``RangeEncoder`` are a range coder
with 32-bit words and a 64-bit state (SPEC 5.4, 5.5). Invalid data (a quantile of
2^24 or more) raises GscError; running out of words does not.

Encoding calls constriction. Decoding is SPEC 5.3-5.4 compiled (`_decode_stream`, numba):
the same symbols as constriction's decoder (tests/test_entropy.py checks them against it,
on valid and on arbitrary words), without a Python call and a model object per block,
which took most of an entropy decode (8.3 ms of a 24 ms decode of a 1.4 bpp Kodak
stream; 338 blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numba
import numpy as np

from ..errors import GscError
from .constants import FIRST_BLOCK, MAX_BLOCK, PRECISION


def _blocks(n: int):
    """(start, stop) of each block of a stream of n symbols."""
    start = 0
    while start < n:
        stop = min(n, start + min(MAX_BLOCK, max(FIRST_BLOCK, start)))
        yield start, stop
        start = stop


def _model(hist: np.ndarray):
    return constriction.stream.model.Categorical((2 * hist + 1).astype(np.float64), perfect=False)


# how a symbol's context is found (SPEC 5.6); the kernel takes the number
_GIVEN, _PREVIOUS, _NEIGHBOURS = 0, 1, 2


@dataclass(frozen=True)
class Contexts:
    """How the symbols of a stream choose among ``count`` models (SPEC 5.6), in one of three ways:

    - ``given``: each symbol's context, known before the stream (from earlier streams);
    - ``previous``: a symbol's context is ``table[the stream's previous symbol]``, the first
      symbol's ``first`` (``table`` has an entry for every symbol of the alphabet);
    - ``neighbours``: the stream is a grid of ``cols`` columns in raster order, and a symbol's
      context is ``table[the sum of its left, upper-left, upper and upper-right neighbours]``
      (0 for those outside the grid; ``table`` has an entry for every possible sum).
    """

    count: int
    kind: int
    table: np.ndarray  # int64; of the previous symbol, or of the neighbours' sum
    given: np.ndarray  # int64, one per symbol (kind given only)
    first: int = 0
    cols: int = 1

    @classmethod
    def from_given(cls, contexts: np.ndarray, count: int) -> Contexts:
        return cls(count, _GIVEN, np.zeros(1, np.int64), np.asarray(contexts, np.int64).ravel())

    @classmethod
    def from_previous(cls, table: np.ndarray, first: int, count: int) -> Contexts:
        return cls(count, _PREVIOUS, np.asarray(table, np.int64), np.zeros(0, np.int64), first)

    @classmethod
    def from_neighbours(cls, table: np.ndarray, cols: int, count: int) -> Contexts:
        return cls(count, _NEIGHBOURS, np.asarray(table, np.int64), np.zeros(0, np.int64), cols=cols)

    def of(self, symbols: np.ndarray) -> np.ndarray:
        """The context of each of ``symbols`` (all known: the encoder's side)."""
        symbols = np.asarray(symbols, np.int64).ravel()
        if self.kind == _GIVEN:
            return self.given
        if self.kind == _PREVIOUS:
            return np.concatenate([[self.first], self.table[symbols[:-1]]])[: len(symbols)]
        rows = -(-len(symbols) // self.cols)
        padded = np.zeros((rows + 1, self.cols + 2), np.int64)  # a row above, a column each side
        padded[1:, 1:-1].flat[: len(symbols)] = symbols
        total = padded[1:, :-2] + padded[:-1, :-2] + padded[:-1, 1:-1] + padded[:-1, 2:]
        return self.table[total.ravel()[: len(symbols)]]


def ideal_bits(symbols: np.ndarray, alphabet: int, contexts: Contexts | None = None) -> float:
    """The bits a stream takes under its adaptive model(s), to within the 24-bit probabilities'
    rounding and the coder's flush: what the encoder compares to choose contexts."""
    symbols = np.asarray(symbols, np.int64).ravel()
    if alphabet == 1 or not len(symbols):
        return 0.0
    if contexts is None or contexts.count == 1:
        return _ideal_bits(symbols, alphabet, np.zeros(len(symbols), np.int64), 1)
    return _ideal_bits(symbols, alphabet, contexts.of(symbols), contexts.count)


class StreamEncoder:
    """Codes streams one after another into one range-coded word sequence."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, alphabet: int, contexts: Contexts | None = None) -> int:
        """Append a stream, with one model or one per context; returns the bits it took."""
        symbols = np.asarray(symbols, np.int32).ravel()
        if len(symbols) and (symbols.min() < 0 or symbols.max() >= alphabet):
            raise GscError(f"symbol outside its alphabet 0..{alphabet - 1}")
        before = self._coder.num_bits()
        if alphabet > 1 and contexts is not None and contexts.count > 1:
            self._encode_contexts(symbols, alphabet, contexts.of(symbols), contexts.count)
        elif alphabet > 1:
            hist = np.zeros(alphabet, np.int64)
            for start, stop in _blocks(len(symbols)):
                block = symbols[start:stop]
                self._coder.encode(block, _model(hist))
                hist += np.bincount(block, minlength=alphabet)
        return self._coder.num_bits() - before

    def _encode_contexts(self, symbols: np.ndarray, alphabet: int, contexts: np.ndarray, count: int) -> None:
        """Each symbol with the block model of its context: the weights of every (context,
        block) as a row of a table, and each symbol's row, coded in stream order by
        constriction's categorical family (the same quantization as `_model`'s, SPEC 5.3)."""
        rows, weights = np.empty(len(symbols), np.int64), []
        for context in range(count):
            mine = np.flatnonzero(contexts == context)
            hist = np.zeros(alphabet, np.int64)
            for start, stop in _blocks(len(mine)):
                rows[mine[start:stop]] = len(weights)
                weights.append(2 * hist + 1)
                hist += np.bincount(symbols[mine[start:stop]], minlength=alphabet)
        table = np.asarray(weights, np.float64)
        family = constriction.stream.model.Categorical(perfect=False)
        chunk = max(1, (1 << 22) // alphabet)  # rows of weights built at a time: 32 MB
        for start in range(0, len(symbols), chunk):
            part = slice(start, start + chunk)
            self._coder.encode(symbols[part], family, table[rows[part]])

    def words(self) -> np.ndarray:
        """The compressed words, uint32."""
        return self._coder.get_compressed()


class StreamDecoder:
    """Decodes streams in the order StreamEncoder wrote them (SPEC 5.4's decoder, compiled)."""

    def __init__(self, words: np.ndarray) -> None:
        self._words = np.asarray(words, np.uint32).astype(np.uint64)
        first = self._words[0] if len(self._words) else 0
        second = self._words[1] if len(self._words) > 1 else 0
        # lower, range, point, index of the next word
        self._state = np.array([0, 2**64 - 1, (int(first) << 32) | int(second), 2], np.uint64)

    def decode(self, n: int, alphabet: int, dtype: type = np.int64, contexts: Contexts | None = None) -> np.ndarray:
        """n symbols from an alphabet of the given size (as ``dtype``, int64 unless told), with
        one model or one per context."""
        out = np.zeros(n, dtype)
        if alphabet == 1 or n == 0:
            return out  # not coded: the decoder is left as it is (SPEC 5.2)
        if contexts is None or contexts.count == 1:
            failed = _decode_stream(self._words, self._state, alphabet, out)
        else:
            c = contexts
            failed = _decode_contexts(self._words, self._state, alphabet, c.count, c.kind, c.given, c.table,
                                      c.first, c.cols, out)
        if failed:
            raise GscError("corrupt entropy-coded data: a quantile beyond the model (SPEC 5.4)")
        return out


_ONE = np.uint64(1)
_WORD = np.uint64(32)
_PRECISION = np.uint64(PRECISION)
_QUANTILES = np.uint64(1 << PRECISION)
_RENORMALISE = np.uint64(1 << 32)


@numba.njit(cache=True, nogil=True)
def _lookup_bits(alphabet):  # pragma: no cover - compiled
    """log2 of the number of equal slices of the quantiles `_build_model` indexes: a search starts
    at the symbol where its slice starts and steps over the few boundaries inside it (branches
    that a binary search would mispredict half the time)."""
    bits = 4
    while (1 << bits) < 4 * alphabet and bits < 12:
        bits += 1
    return bits


@numba.njit(cache=True, nogil=True)
def _build_model(hist, start, alphabet, cdf, first, shift):  # pragma: no cover - compiled
    """Fill ``cdf`` [alphabet + 1] with SPEC 5.3's model of the weights 2 ``hist`` + 1 (``start``
    symbols counted in ``hist``), and ``first`` with the symbol at the start of each slice."""
    scale = np.float64((1 << PRECISION) - alphabet) / np.float64(alphabet + 2 * start)  # one binary64 division
    below = 0
    for k in range(alphabet):
        cdf[k] = np.uint64(np.int64(np.float64(below) * scale) + k)  # one binary64 product, truncated
        below += 2 * hist[k] + 1
    cdf[alphabet] = _QUANTILES
    k = 0
    for j in range(len(first)):
        while cdf[k + 1] <= np.uint64(j) << shift:
            k += 1
        first[j] = k


@numba.njit(cache=True, nogil=True)
def _decode_stream(words, state, alphabet, out):  # pragma: no cover - compiled
    """Fill ``out`` with one stream's symbols (SPEC 5.2-5.4), carrying the range decoder's
    ``state`` [lower, range, point, next] (uint64, updated in place) from stream to stream.
    Every integer is uint64 (numba would turn mixed signed and unsigned into floats). Returns
    1, the state as it was before the bad symbol, when a quantile is 2^24 or more, else 0."""
    lower, rng, point, nxt = state[0], state[1], state[2], state[3]
    n_words = np.uint64(len(words))
    n = len(out)
    hist = np.zeros(alphabet, np.int64)
    cdf = np.empty(alphabet + 1, np.uint64)
    bits = _lookup_bits(alphabet)
    shift = np.uint64(PRECISION - bits)
    first = np.empty(1 << bits, np.int64)
    start = 0
    while start < n:
        stop = min(n, start + min(MAX_BLOCK, max(FIRST_BLOCK, start)))
        _build_model(hist, start, alphabet, cdf, first, shift)  # every earlier symbol counted in hist
        for i in range(start, stop):
            s = rng >> _PRECISION
            quantile = (point - lower) // s
            if quantile >= _QUANTILES:
                state[0], state[1], state[2], state[3] = lower, rng, point, nxt
                return 1
            lo = first[quantile >> shift]  # then cdf[lo] <= quantile < cdf[lo + 1]
            while cdf[lo + 1] <= quantile:
                lo += 1
            lower = lower + s * cdf[lo]
            rng = s * (cdf[lo + 1] - cdf[lo])
            if rng < _RENORMALISE:
                word = words[nxt] if nxt < n_words else np.uint64(0)  # past the end: 0, no error
                nxt += _ONE
                lower = lower << _WORD
                rng = rng << _WORD
                point = (point << _WORD) | word
            out[i] = lo
        for i in range(start, stop):
            hist[out[i]] += 1
        start = stop
    state[0], state[1], state[2], state[3] = lower, rng, point, nxt
    return 0


@numba.njit(cache=True, nogil=True)
def _decode_contexts(words, state, alphabet, count, kind, given, table, first, cols, out):  # pragma: no cover
    """`_decode_stream` with a model per context (SPEC 5.6): each symbol's context comes from
    ``given``, or from ``table`` of the previous symbol or of the sum of its grid neighbours
    (``kind``), and each context's model is 5.2's over that context's symbols alone."""
    lower, rng, point, nxt = state[0], state[1], state[2], state[3]
    n_words = np.uint64(len(words))
    hist = np.zeros((count, alphabet), np.int64)  # each context's symbols so far
    seen = np.zeros(count, np.int64)
    block_end = np.zeros(count, np.int64)  # in the context's own symbols: when its model is rebuilt
    cdf = np.empty((count, alphabet + 1), np.uint64)
    bits = _lookup_bits(alphabet)
    shift = np.uint64(PRECISION - bits)
    first_of = np.empty((count, 1 << bits), np.int64)
    for i in range(len(out)):
        if kind == 0:
            k = given[i]
        elif kind == 1:
            k = first if i == 0 else table[out[i - 1]]
        else:
            r = i // cols
            c = i - r * cols
            total = 0
            if c > 0:
                total += out[i - 1]
            if r > 0:
                total += out[i - cols]
                if c > 0:
                    total += out[i - cols - 1]
                if c + 1 < cols:
                    total += out[i - cols + 1]
            k = table[total]
        if seen[k] == block_end[k]:  # a new block of this context: its model from all its earlier symbols
            block_end[k] = seen[k] + min(MAX_BLOCK, max(FIRST_BLOCK, seen[k]))
            _build_model(hist[k], seen[k], alphabet, cdf[k], first_of[k], shift)
        s = rng >> _PRECISION  # then as in `_decode_stream`, with context k's model
        quantile = (point - lower) // s
        if quantile >= _QUANTILES:
            state[0], state[1], state[2], state[3] = lower, rng, point, nxt
            return 1
        lo = first_of[k, quantile >> shift]
        while cdf[k, lo + 1] <= quantile:
            lo += 1
        lower = lower + s * cdf[k, lo]
        rng = s * (cdf[k, lo + 1] - cdf[k, lo])
        if rng < _RENORMALISE:
            word = words[nxt] if nxt < n_words else np.uint64(0)
            nxt += _ONE
            lower = lower << _WORD
            rng = rng << _WORD
            point = (point << _WORD) | word
        out[i] = lo
        hist[k, lo] += 1
        seen[k] += 1
    state[0], state[1], state[2], state[3] = lower, rng, point, nxt
    return 0


@numba.njit(cache=True, nogil=True)
def _ideal_bits(symbols, alphabet, contexts, count):  # pragma: no cover - compiled
    """Sum over symbols of -log2 of their probability under their context's block model (5.2's
    weights 2h + 1 of the context's symbols before the block), in one pass."""
    hist = np.zeros((count, alphabet), np.int64)
    frozen = np.zeros((count, alphabet), np.int64)  # each context's histogram when its block began
    seen = np.zeros(count, np.int64)
    block_end = np.zeros(count, np.int64)
    log_total = np.zeros(count)
    total = 0.0
    for i in range(len(symbols)):
        k = contexts[i]
        if seen[k] == block_end[k]:
            start = seen[k]
            block_end[k] = start + min(MAX_BLOCK, max(FIRST_BLOCK, start))
            frozen[k] = hist[k]
            log_total[k] = np.log2(alphabet + 2 * start)
        s = symbols[i]
        total += log_total[k] - np.log2(2 * frozen[k, s] + 1)
        hist[k, s] += 1
        seen[k] += 1
    return total
