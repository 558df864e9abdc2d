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
"""

from __future__ import annotations

import constriction
import numpy as np

from ..errors import GscError
from .constants import FIRST_BLOCK, MAX_BLOCK


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
    """Decodes streams in the order StreamEncoder wrote them."""

    def __init__(self, words: np.ndarray) -> None:
        self._coder = constriction.stream.queue.RangeDecoder(np.asarray(words, np.uint32))

    def decode(self, n: int, alphabet: int, dtype: type = np.int64) -> np.ndarray:
        """n symbols from an alphabet of the given size (as ``dtype``, int64 unless told)."""
        out = np.zeros(n, dtype)
        if alphabet == 1:
            return out
        hist = np.zeros(alphabet, np.int64)
        for start, stop in _blocks(n):
            try:
                block = self._coder.decode(_model(hist), stop - start)
            except Exception as exc:  # constriction reports exhausted or invalid data
                raise GscError(f"corrupt entropy-coded data: {exc}") from None
            out[start:stop] = block
            hist += np.bincount(block, minlength=alphabet)
        return out
