"""Corrupt .gsc streams: every failure is a GscError, fast, and without big allocations.

Mutations: truncations, raw byte flips (caught by the CRCs), byte edits with the CRCs
repaired (so the entropy decoder and the symbol checks see garbage), chunk swaps,
duplications and removals, and header field edits. constriction can raise
pyo3_runtime.PanicException (a BaseException), so the harness catches BaseException.
"""

from __future__ import annotations

import random
import struct
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gscodec import GscError
from gscodec.format.codec import decode_splats
from gscodec.format.constants import MAGIC
from gscodec.format.container import _HEADER, _LAYER_HEAD
from gscodec.render.backends import render_splats, to_uint8_rgb
from tests.helpers import join, split

CONFORMANCE = Path(__file__).resolve().parents[1] / "bitstream" / "conformance"
SOURCES = {name: (CONFORMANCE / name / "input.gsc").read_bytes()
           for name in ("typical", "typical_2", "contexts", "three_layers", "extremes", "one_pixel", "empty_layer")}
TIME_BOUND_S = 5.0  # per decode; the largest legal grid (2^26 patches) decodes in about 1.5 s
RENDER_PIXELS = 1 << 16  # render the decodes of images up to this size


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption of ``data``."""
    kind = rng.randrange(7)
    if kind == 0:  # truncation
        return data[: rng.randrange(len(data))]
    if kind == 1:  # raw byte flips: the CRCs must catch them
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    head, chunks = split(data)
    layers = [c for c in chunks if c[0] == b"LAYR"]
    if kind == 2 or (kind >= 4 and not layers):  # header bytes, CRC repaired
        for _ in range(rng.randint(1, 3)):
            head[rng.randrange(len(head))] = rng.randrange(256)
    elif kind == 3:  # chunk order: swap, duplicate or drop
        i, j = rng.randrange(len(chunks)), rng.randrange(len(chunks))
        op = rng.randrange(3)
        if op == 0:
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif op == 1:
            chunks.insert(j, [chunks[i][0], bytearray(chunks[i][1])])
        else:
            del chunks[i]
    elif kind == 4:  # LAYR fixed fields, CRC repaired
        payload = rng.choice(layers)[1]
        for _ in range(rng.randint(1, 3)):
            payload[rng.randrange(_LAYER_HEAD.size)] = rng.randrange(256)
    elif kind == 5:  # range-coded words, CRC repaired: only the symbol checks can notice
        payload = rng.choice(layers)[1]
        for _ in range(rng.randint(1, 4)):
            payload[rng.randrange(len(payload))] = rng.randrange(256)
    else:  # a whole LAYR field set to an extreme value, CRC repaired
        payload = rng.choice(layers)[1]
        offset, fmt = rng.choice([(0, "B"), (1, "B"), (2, "B"), (4, "h"), (6, "H"), (8, "H"), (10, "I"),
                                  (14, "I"), (18, "i"), (22, "I"), (50, "I")])
        bounds = {"B": (0, 255), "h": (-32768, 32767), "H": (0, 65535), "I": (0, 2**32 - 1), "i": (-(2**31), 2**31 - 1)}
        lo, hi = bounds[fmt]
        struct.pack_into("<" + fmt, payload, offset, rng.choice([lo, hi, 0, 1, rng.randint(lo, hi)]))
    return join(head, chunks)


def attempt(data: bytes) -> str:
    """Decode (and render small images); "ok", "GscError" or the name of anything else raised."""
    start = time.perf_counter()
    try:
        splats = decode_splats(data)
        if splats.width * splats.height <= RENDER_PIXELS:
            t = splats.tensors()
            with torch.no_grad():
                image = render_splats(t.means, t.scales, t.angles, t.colors, splats.height, splats.width,
                                      background=torch.from_numpy(splats.background))
            assert to_uint8_rgb(image).shape == (splats.height, splats.width, 3)
        result = "ok"
    except GscError:
        result = "GscError"
    except BaseException as exc:  # noqa: BLE001 - PanicException is a BaseException
        if isinstance(exc, KeyboardInterrupt):
            raise
        result = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:300]
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_BOUND_S, f"decode took {elapsed:.1f} s"
    return result


@pytest.mark.parametrize("name", ["typical", "typical_2", "contexts", "three_layers", "one_pixel"])
def test_every_truncation(name: str) -> None:
    data = SOURCES[name]
    for n in range(len(data)):
        with pytest.raises(GscError):
            decode_splats(data[:n])


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(GscError, match="after the GEND"):
        decode_splats(SOURCES["typical"] + b"\0")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(SOURCES)))
def test_random_corruption(seed: int, name: str) -> None:
    data = mutate(SOURCES[name], random.Random(seed))
    assert attempt(data) in ("ok", "GscError")


def _stream(width: int, height: int, layers: int, splats: int, layer_payloads: list[bytes] = (), major: int = 1
            ) -> bytes:
    head = _HEADER.pack(MAGIC, major, 0, 0, width, height, 0, layers, 0, splats, 0, 0, 0, 0)
    return join(head, [[b"LAYR", bytearray(p)] for p in layer_payloads] + [[b"GEND", bytearray()]])


@pytest.mark.parametrize("fields", [
    (1 << 20, 1 << 20, 0, 0), (1 << 16, 1 << 16, 0, 0), (0xFFFFFFFF, 1, 0, 0), (0, 5, 0, 0),
    (64, 64, 255, 0), (64, 64, 0, 0xFFFFFFFF), (64, 64, 1, 1 << 22),
])
def test_huge_header_fields_fail_fast(fields: tuple[int, int, int, int]) -> None:
    data = _stream(*fields)
    assert len(data) == 48
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(GscError):
            decode_splats(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20 and time.perf_counter() - start < 0.5


@pytest.mark.parametrize(("major", "flags"), [(1, 0), (2, 0), (2, 1)])
def test_largest_legal_grid_stays_bounded(major: int, flags: int) -> None:
    """A 114-byte stream declaring 2^26 one-pixel patches: decoded in bounded memory (format 2
    with the counts' contexts too)."""
    layer = _LAYER_HEAD.pack(0, 0, 1, flags, 0, 1, 1, 100, *(1, 0, 1) * 3, 0)
    data = _stream(1 << 16, 1 << 10, 1, 100, [layer], major)
    tracemalloc.start()
    try:
        with pytest.raises(GscError, match="patch counts"):
            decode_splats(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20  # one byte per patch, not eight (or sixteen)


def test_error_messages_say_what() -> None:
    head, chunks = split(SOURCES["typical"])
    with pytest.raises(GscError, match="magic"):
        decode_splats(b"GIF89a" + bytes(40))
    with pytest.raises(GscError, match="CRC"):
        decode_splats(SOURCES["typical"][:100] + bytes([SOURCES["typical"][100] ^ 1]) + SOURCES["typical"][101:])
    head[4] = 3
    with pytest.raises(GscError, match="version"):
        decode_splats(join(head, chunks))
    with pytest.raises(GscError, match="expected bytes"):
        decode_splats("not bytes")  # type: ignore[arg-type]


@pytest.mark.slow
def test_ten_thousand_corruptions() -> None:
    """10,000 random corruptions of the conformance inputs: no exception but GscError."""
    rng = random.Random(12345)
    names = sorted(SOURCES)
    outcomes: Counter[str] = Counter()
    start = time.perf_counter()
    for i in range(10_000):
        outcomes[attempt(mutate(SOURCES[names[i % len(names)]], rng))] += 1
    others = {k: v for k, v in outcomes.items() if k not in ("ok", "GscError")}
    print(f"\n10,000 corruptions in {time.perf_counter() - start:.1f} s: {dict(outcomes)}")
    assert not others, others
