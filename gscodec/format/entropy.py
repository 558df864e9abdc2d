"""Entropy coding of symbol streams with constriction's range coder (SPEC 5).

Every stream uses the same adaptive model (SPEC 5.2): symbols are coded in blocks
whose lengths double (16, 16, 32, 64, ... capped at MAX_BLOCK); a block's weights
are 2 * (count of each symbol in all earlier blocks) + 1, integers, so encoder and
decoder build identical models on any machine without side information.

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


class StreamEncoder:
    """Codes streams one after another into one range-coded word sequence."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, alphabet: int) -> int:
        """Append a stream; returns the bits it took."""
        symbols = np.asarray(symbols, np.int32).ravel()
        if len(symbols) and (symbols.min() < 0 or symbols.max() >= alphabet):
            raise GscError(f"symbol outside its alphabet 0..{alphabet - 1}")
        before = self._coder.num_bits()
        hist = np.zeros(alphabet, np.int64)
        for start, stop in _blocks(len(symbols)):
            block = symbols[start:stop]
            if alphabet > 1:
                self._coder.encode(block, _model(hist))
            hist += np.bincount(block, minlength=alphabet)
        return self._coder.num_bits() - before

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

    def decode(self, n: int, alphabet: int, dtype: type = np.int64) -> np.ndarray:
        """n symbols from an alphabet of the given size (as ``dtype``, int64 unless told)."""
        out = np.zeros(n, dtype)
        if alphabet == 1 or n == 0:
            return out  # not coded: the decoder is left as it is (SPEC 5.2)
        if _decode_stream(self._words, self._state, alphabet, out):
            raise GscError("corrupt entropy-coded data: a quantile beyond the model (SPEC 5.4)")
        return out


_ONE = np.uint64(1)
_WORD = np.uint64(32)
_PRECISION = np.uint64(PRECISION)
_QUANTILES = np.uint64(1 << PRECISION)
_RENORMALISE = np.uint64(1 << 32)


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
    # the symbol at the start of each of 2^bits equal slices of the quantiles: a search starts
    # there and steps over the few boundaries inside a slice (branches that a binary search
    # would mispredict half the time)
    bits = 4
    while (1 << bits) < 4 * alphabet and bits < 12:
        bits += 1
    shift = np.uint64(PRECISION - bits)
    first = np.empty(1 << bits, np.int64)
    start = 0
    while start < n:
        stop = min(n, start + min(MAX_BLOCK, max(FIRST_BLOCK, start)))
        total = alphabet + 2 * start  # the weights 2 h + 1: every earlier symbol counted once in h
        scale = np.float64((1 << PRECISION) - alphabet) / np.float64(total)  # one binary64 division
        below = 0
        for k in range(alphabet):
            cdf[k] = np.uint64(np.int64(np.float64(below) * scale) + k)  # one binary64 product, truncated
            below += 2 * hist[k] + 1
        cdf[alphabet] = _QUANTILES
        k = 0
        for j in range(1 << bits):
            while cdf[k + 1] <= np.uint64(j) << shift:
                k += 1
            first[j] = k
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
