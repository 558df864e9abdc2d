"""The compiled range decoder (gscodec.format.entropy.StreamDecoder) against constriction's.

Encoding is constriction's; decoding is SPEC 5.3-5.4 compiled. These tests hold the
compiled decoder to constriction's own decoder symbol for symbol, on streams the encoder
wrote and on arbitrary words (where both must fail together, or give the same symbols).
"""

from __future__ import annotations

import constriction
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gscodec import GscError
from gscodec.format import entropy
from gscodec.format.constants import MAX_LEVELS
from gscodec.format.entropy import Contexts, StreamDecoder, StreamEncoder, ideal_bits


class ConstrictionDecoder:
    """SPEC 5.2's adaptive model on constriction's RangeDecoder: the decoder before it was compiled."""

    def __init__(self, words: np.ndarray) -> None:
        self._coder = constriction.stream.queue.RangeDecoder(np.asarray(words, np.uint32))

    def decode(self, n: int, alphabet: int) -> np.ndarray:
        out = np.zeros(n, np.int64)
        if alphabet == 1:
            return out
        hist = np.zeros(alphabet, np.int64)
        for start, stop in entropy._blocks(n):
            weights = (2 * hist + 1).astype(np.float64)
            out[start:stop] = self._coder.decode(constriction.stream.model.Categorical(weights, perfect=False),
                                                 stop - start)
            hist += np.bincount(out[start:stop], minlength=alphabet)
        return out


def skewed(rng: np.random.Generator, n: int, alphabet: int) -> np.ndarray:
    """n symbols with a random, usually peaked distribution (as quantized attributes are)."""
    p = rng.dirichlet(np.full(alphabet, rng.choice([0.05, 0.5, 5.0])))
    return rng.choice(alphabet, size=n, p=p)


streams = st.lists(st.tuples(st.integers(0, 3000), st.sampled_from([1, 2, 3, 16, 37, 64, 190, 1024, MAX_LEVELS])),
                   min_size=1, max_size=9)


@settings(max_examples=60, deadline=None)
@given(streams, st.integers(0, 2**32 - 1))
def test_decodes_what_the_encoder_wrote(specs: list[tuple[int, int]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = [skewed(rng, n, a) for n, a in specs]
    enc = StreamEncoder()
    for values, (_, a) in zip(data, specs, strict=True):
        enc.encode(values, a)
    dec = StreamDecoder(enc.words())
    for values, (n, a) in zip(data, specs, strict=True):
        np.testing.assert_array_equal(dec.decode(n, a), values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 0xFFFFFFFF])), max_size=40), streams)
def test_arbitrary_words_decode_as_constriction_decodes_them(words: list[int], specs: list[tuple[int, int]]) -> None:
    """Any words, any streams: the same symbols, or a failure at the same stream."""
    words = np.array(words, np.uint32)
    ours, theirs = StreamDecoder(words), ConstrictionDecoder(words)
    for n, a in specs:
        try:
            want = theirs.decode(n, a)
        except Exception:  # constriction's error for a quantile beyond the model
            with pytest.raises(GscError, match="corrupt entropy-coded data"):
                ours.decode(n, a)
            event("both failed")
            return
        np.testing.assert_array_equal(ours.decode(n, a), want)
    event("both decoded")


def test_a_quantile_beyond_the_model_is_an_error() -> None:
    """SPEC 5.4's example of invalid words: w[0] = w[1] = 0xFFFFFFFF at the first symbol."""
    with pytest.raises(GscError, match="corrupt entropy-coded data"):
        StreamDecoder(np.array([0xFFFFFFFF, 0xFFFFFFFF], np.uint32)).decode(1, 3)


def test_one_symbol_alphabets_and_empty_streams_read_nothing() -> None:
    enc = StreamEncoder()
    for n, a in ((5, 1), (0, 7), (40, 5)):
        enc.encode(np.arange(n) % a, a)
    dec = StreamDecoder(enc.words())
    np.testing.assert_array_equal(dec.decode(5, 1), np.zeros(5))
    assert dec.decode(0, 7).shape == (0,)
    np.testing.assert_array_equal(dec.decode(40, 5), np.arange(40) % 5)


def test_running_out_of_words_is_not_an_error() -> None:
    """Words past the end read as 0 (SPEC 5.4), as in constriction: no words at all decode too."""
    np.testing.assert_array_equal(StreamDecoder(np.zeros(0, np.uint32)).decode(100, 16),
                                  ConstrictionDecoder(np.zeros(0, np.uint32)).decode(100, 16))


# --- contexts (format 2, SPEC 5.6) ---------------------------------------------------------

def constriction_contexts(words: np.ndarray, n: int, alphabet: int, contexts: Contexts) -> np.ndarray:
    """SPEC 5.6 symbol by symbol on constriction's RangeDecoder: each symbol's context from the
    symbols before it (`Contexts.of` on them), each context's 5.2 model over its own symbols."""
    coder = constriction.stream.queue.RangeDecoder(np.asarray(words, np.uint32))
    out = np.zeros(n, np.int64)
    hist = np.zeros((contexts.count, alphabet), np.int64)
    seen = np.zeros(contexts.count, np.int64)
    model: dict[int, object] = {}
    for i in range(n):
        k = int(contexts.of(np.append(out[:i], 0))[i])  # the context does not depend on symbol i itself
        if seen[k] in {start for start, _ in entropy._blocks(seen[k] + 1)}:
            model[k] = constriction.stream.model.Categorical((2 * hist[k] + 1).astype(np.float64), perfect=False)
        out[i] = coder.decode(model[k], 1)[0]
        hist[k, out[i]] += 1
        seen[k] += 1
    return out


def context_rules(rng: np.random.Generator, n: int, alphabet: int) -> list[Contexts]:
    """One of each kind: given, by the previous symbol, by grid neighbours (for n symbols)."""
    cols = max(1, int(rng.integers(1, 12)))
    rules = [Contexts.from_given(rng.integers(0, 3, n), 3),
             Contexts.from_previous(rng.integers(0, 4, alphabet), int(rng.integers(0, 4)), 4)]
    if n % cols == 0:
        rules.append(Contexts.from_neighbours(rng.integers(0, 5, 4 * (alphabet - 1) + 1), cols, 5))
    return rules


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 600), st.sampled_from([2, 3, 16, 37]), st.integers(0, 2**32 - 1))
def test_contexts_decode_as_constriction_decodes_them(n: int, alphabet: int, seed: int) -> None:
    """Streams with contexts of every kind, between streams without: the compiled decoder gives
    the encoder's symbols, and so does SPEC 5.6 on constriction's decoder."""
    rng = np.random.default_rng(seed)
    rules = context_rules(rng, n, alphabet)
    data = [skewed(rng, n, alphabet) for _ in rules]
    enc = StreamEncoder()
    for values, rule in zip(data, rules, strict=True):
        enc.encode(values, alphabet, rule)
        enc.encode(values[: n // 2], alphabet)
    words = enc.words()
    dec = StreamDecoder(words)
    for values, rule in zip(data, rules, strict=True):
        np.testing.assert_array_equal(dec.decode(n, alphabet, contexts=rule), values)
        np.testing.assert_array_equal(dec.decode(n // 2, alphabet), values[: n // 2])
    if rules:  # the first stream alone, independently
        np.testing.assert_array_equal(constriction_contexts(words, n, alphabet, rules[0]), data[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), max_size=30), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_arbitrary_words_with_contexts_decode_as_constriction_decodes_them(words: list[int], n: int, seed: int
                                                                          ) -> None:
    rng = np.random.default_rng(seed)
    alphabet = 16
    for rule in context_rules(rng, n, alphabet):
        w = np.array(words, np.uint32)
        try:
            want = constriction_contexts(w, n, alphabet, rule)
        except Exception:
            with pytest.raises(GscError, match="corrupt entropy-coded data"):
                StreamDecoder(w).decode(n, alphabet, contexts=rule)
            continue
        np.testing.assert_array_equal(StreamDecoder(w).decode(n, alphabet, contexts=rule), want)


def test_ideal_bits_are_what_the_coder_takes() -> None:
    """`ideal_bits`, with which the encoder chooses contexts, is the coded size to within the
    24-bit probabilities and the flush; and contexts that fit the data take fewer bits."""
    rng = np.random.default_rng(7)
    n = 5000
    sign = rng.integers(0, 3, n)
    values = np.where(sign == 0, rng.integers(0, 8, n), np.where(sign == 1, 8, rng.integers(9, 17, n)))
    rule = Contexts.from_given(sign, 3)
    for contexts in (None, rule):
        enc = StreamEncoder()
        taken = enc.encode(values, 17, contexts)
        assert abs(taken - ideal_bits(values, 17, contexts)) < 64
    assert ideal_bits(values, 17, rule) < 0.7 * ideal_bits(values, 17)
