"""bitstream/SPEC.md is enough to decode: tests/spec_decoder.py, written from its text
alone in plain Python, agrees with the reference decoder (gscodec.format).

- every conformance case: symbols, header, splats exactly; invalid cases rejected;
- range coding: random streams from gscodec's StreamEncoder decode identically;
- a real encode: the same splats as gscodec.decode_splats;
- the checks of SPEC 4.4: both decoders reject the same streams at the same check,
  and the reference's messages name the offset of the chunk they are about.
"""

from __future__ import annotations

import ast
import json
import random
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gscodec
from gscodec import GscError
from gscodec.format.codec import decode_splats, write_stream
from gscodec.format.entropy import StreamEncoder
from gscodec.format.params import LayerParams, LayerSymbols
from tests import spec_decoder as spec
from tests.helpers import join, split

ROOT = Path(__file__).resolve().parents[1] / "bitstream" / "conformance"
CASES = sorted(p.name for p in ROOT.iterdir() if (p / "test.json").exists())


def _case(name: str) -> tuple[bytes, dict]:
    return (ROOT / name / "input.gsc").read_bytes(), json.loads((ROOT / name / "test.json").read_text())


def _f32(values: list) -> np.ndarray:
    return np.asarray(values, np.float64).astype(np.float32)


def test_decoder_is_independent() -> None:
    """The spec decoder imports nothing but a few standard modules."""
    tree = ast.parse((Path(__file__).parent / "spec_decoder.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "json", "math", "struct", "sys", "zlib"}, names


@pytest.mark.parametrize("name", CASES)
def test_conformance_case(name: str) -> None:
    data, test = _case(name)
    if test["expect"] == "GscError":
        with pytest.raises(spec.SpecError):
            spec.decode(data)
        return
    expected = json.loads((ROOT / name / "expected_symbols.json").read_text())
    got = spec.decode(data)
    for key in ("width", "height", "layer_count", "splat_count", "background"):
        assert got[key] == expected[key], key
    assert len(got["layers"]) == len(expected["layers"])
    for layer, want in zip(got["layers"], expected["layers"], strict=True):
        assert layer["params"] == want["params"]
        assert (layer["splat_count"], layer["n_words"]) == (want["splat_count"], want["n_words"])
        assert layer["symbols"] == want["symbols"]  # all nine streams, exactly
        splats = layer["splats"]
        actual = {"means": [s["mean"] for s in splats], "colors": [s["color"] for s in splats],
                  "scales": [s["scale"] for s in splats], "angles": [s["angle"] for s in splats]}
        for key, values in actual.items():
            mine, ref = _f32(values), _f32(want["splats"][key])
            if test["splats"].get(key) == "exact":  # as float32, as the reference stores them
                np.testing.assert_array_equal(mine, ref, err_msg=f"{name} {key}")
            else:
                np.testing.assert_allclose(mine, ref, rtol=test["splats"][f"{key}_rtol"], atol=0)


def test_spec_examples() -> None:
    """The worked examples of SPEC 5.3 and 5.4."""
    assert spec.model_cdf([0] * 16) == [1048576 * k for k in range(17)]
    assert spec.model_cdf([0, 1, 2]) == [0, 1864135, 7456541, 1 << 24]
    dec = spec.RangeDecoder([0x12345678, 0x9ABCDEF0])
    assert dec.decode(spec.model_cdf([0, 1, 2])) == 0
    assert (dec.lower, dec.range, dec.point) == (0, 0x1C71C6FFFFE38E39, 0x123456789ABCDEF0)
    with pytest.raises(spec.SpecError, match="range-invalid"):
        spec.RangeDecoder([0xFFFFFFFF, 0xFFFFFFFF]).decode(spec.model_cdf([0] * 16))


def _symbols(rng: np.random.Generator, n: int, alphabet: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(0, alphabet, n)
    if kind == "geometric":
        return np.minimum(rng.geometric(rng.uniform(0.05, 0.9), n) - 1, alphabet - 1)
    if kind == "constant":
        return np.full(n, int(rng.integers(alphabet)))
    return np.where(rng.random(n) < 0.995, alphabet - 1, rng.integers(0, alphabet, n))  # rare outliers


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams=st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 5000),
                                  st.sampled_from(["uniform", "geometric", "constant", "sparse"])),
                        min_size=1, max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_range_decoder_matches_constriction(streams: list[tuple[int, int, str]], seed: int) -> None:
    """Streams coded one after another by gscodec's StreamEncoder (constriction) decode identically."""
    rng = np.random.default_rng(seed)
    enc, coded = StreamEncoder(), []
    for alphabet, n, kind in streams:
        n = n if alphabet > 1 else min(n, 50)
        symbols = _symbols(rng, n, alphabet, kind)
        enc.encode(symbols, alphabet)
        coded.append((symbols.tolist(), alphabet))
    dec = spec.RangeDecoder(enc.words().tolist())
    for symbols, alphabet in coded:
        assert spec.decode_stream(dec, len(symbols), alphabet) == symbols


def _smooth_image(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    image = np.zeros((height, width, 3))
    for _ in range(12):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(1.5, 6)
        image += rng.uniform(-0.5, 1, 3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
    image = 0.3 + 0.5 * image + 0.05 * rng.standard_normal(image.shape)
    return np.round(255 * np.clip(image, 0, 1)).astype(np.uint8)


def test_real_encode_same_splats() -> None:
    data = gscodec.encode(_smooth_image(7), quality=90, effort=0)
    ref = decode_splats(data)
    got = spec.decode(data)
    assert (got["width"], got["height"]) == (ref.width, ref.height) and got["splat_count"] == len(ref.means) > 0
    splats = [s for layer in got["layers"] for s in layer["splats"]]
    np.testing.assert_array_equal(_f32([s["mean"] for s in splats]), ref.means)
    np.testing.assert_array_equal(_f32([s["color"] for s in splats]), ref.colors)
    np.testing.assert_allclose(_f32([s["scale"] for s in splats]), ref.scales, rtol=1e-6, atol=0)
    np.testing.assert_allclose(_f32([s["angle"] for s in splats]), ref.angles, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(_f32(got["background_ycbcr"]), ref.background)


# --- the checks of SPEC 4.4: same order, same verdicts, right offsets -------------------

# What the reference says for each check of SPEC 4.4 ({pos}: the chunk's offset; {field}: the LayerParams field)
REFERENCE_MESSAGE = {
    "magic": r"bad magic", "header-size": r"truncated \.gsc header", "header-crc": r"corrupt \.gsc header",
    "version": r"version \d+\.\d+ is not supported", "flags": r"unknown header flags",
    "colour-space": r"unknown colour space", "side": r"per side", "pixels": r"pixels exceeds the limit",
    "layer-count": r"layers exceed the limit", "splat-count": r"splats exceed the limit",
    "chunk-head": r"chunk head at byte {pos}:", "chunk-size": r"chunk b'.*' at byte {pos} declares a",
    "chunk-crc": r"CRC mismatch in chunk b'.*' at byte {pos}\)", "gend-payload": r"^GEND chunk at byte {pos} has",
    "chunk-type": r"^unknown chunk type b'.*' at byte {pos}$", "layer-excess": r"^LAYR chunk at byte {pos}: more LAYR",
    "layer-fixed": r"^LAYR chunk \d+ at byte {pos}: payload of",
    "layer-reserved": r"^LAYR chunk \d+ at byte {pos}: reserved",
    "layer-params": r"^LAYR chunk \d+ at byte {pos}: invalid layer parameters: {field}",
    "layer-splats": r"^LAYR chunk \d+ at byte {pos}: declares \d+ splats",
    "layer-words": r"^LAYR chunk \d+ at byte {pos}: declares \d+ words",
    "patch-sum": r"^LAYR chunk \d+ at byte {pos}: the patch grids of the layers so far hold",
    "layer-number": r"LAYR chunks, the header",
    "splat-sum": r"^layers hold", "trailing": r"after the GEND chunk \(from byte {pos}\)",
    "range-invalid": r"corrupt entropy-coded data", "counts-sum": r"patch counts add up", "minor": r"minor axis below",
}


def verdicts(data: bytes) -> tuple[str | None, str | None]:
    """(the spec decoder's failed check or None, the reference's GscError message or None); both
    decoders accepting must give the same splats."""
    try:
        mine = spec.decode(data)
        check = None
    except spec.SpecError as exc:
        mine, check = None, exc
    try:
        ref = decode_splats(data)
        message = None
    except GscError as exc:
        ref, message = None, str(exc)
    if mine is not None and ref is not None:
        splats = [s for layer in mine["layers"] for s in layer["splats"]]
        np.testing.assert_array_equal(_f32([s["mean"] for s in splats]).reshape(-1, 2), ref.means)
        np.testing.assert_array_equal(_f32([s["color"] for s in splats]).reshape(-1, 3), ref.colors)
    return check, message


def assert_agree(data: bytes, want: str | None = None) -> str | None:
    """Both decoders accept, or both reject at the same check (and the reference names the same offset)."""
    check, message = verdicts(data)
    if check is None or message is None:
        assert check is None and message is None, f"spec decoder: {check}; reference: {message}"
        assert want is None
        return None
    assert want is None or check.check == want, f"spec decoder failed {check.check}, not {want}: {check}"
    field = str(check).split(": ")[-1] if check.check == "layer-params" else ""
    pattern = REFERENCE_MESSAGE[check.check].format(pos=check.offset, field=re.escape(field))
    assert re.search(pattern, message), f"check {check.check} ({check}): reference says {message!r}"
    return check.check


def _three_layers() -> tuple[bytearray, list[list]]:
    return split(_case("three_layers")[0])


def _edit_head(offset: int, fmt: str, value: int) -> bytes:
    head, chunks = _three_layers()
    struct.pack_into("<" + fmt, head, offset, value)
    return join(head, chunks)


def _edit_layer(index: int, edits: list[tuple[int, str, int]], head_edits: list[tuple[int, str, int]] = ()) -> bytes:
    head, chunks = _three_layers()
    for offset, fmt, value in edits:
        struct.pack_into("<" + fmt, chunks[index][1], offset, value)
    for offset, fmt, value in head_edits:
        struct.pack_into("<" + fmt, head, offset, value)
    return join(head, chunks)


def _chunks(edit) -> bytes:
    head, chunks = _three_layers()
    edit(head, chunks)
    return join(head, chunks)


def _minor_too_small() -> bytes:
    """A stream (coded by the reference encoder) whose minor index is below -16 * scale_den."""
    p = LayerParams(2, 1, 1, -16, 8, 4, (4096,) * 3, (0,) * 3, (4,) * 3)
    one = np.array([1])
    symbols = LayerSymbols(np.array([1, 0, 0, 0]), one * 0, one * 0, one * 2, one * 3, one, np.zeros((1, 3), int))
    return write_stream(8, 8, (0, 0, 0), [(p, symbols)])


def _patch_bomb() -> bytes:
    """Two empty layers of one-pixel patches on an 8192 x 8192 image: 2^27 patches in all."""
    p = LayerParams(0, 0, 1, 0, 1, 1, (1,) * 3, (0,) * 3, (1,) * 3)
    head, chunks = split(write_stream(8, 8, (0, 0, 0), [(p, LayerSymbols(np.zeros(64, int), *(np.zeros(0, int),) * 5,
                                                                         np.zeros((0, 3), int)))] * 2))
    struct.pack_into("<II", head, 8, 8192, 8192)
    return join(head, chunks)


VALID = _case("three_layers")[0]
TOTAL = struct.unpack_from("<I", VALID, 20)[0]  # the header's splat_count
LAYER1 = struct.unpack_from("<I", _three_layers()[1][1][1], 10)[0]  # the second layer's
TARGETED = [  # (what the stream breaks, the check that must fail first)
    (b"GIF89a" + bytes(40), "magic"), (b"\x89GS", "magic"), (VALID[:35], "header-size"),
    (VALID[:10] + bytes([VALID[10] ^ 1]) + VALID[11:], "header-crc"),
    (_edit_head(4, "B", 3), "version"), (_edit_head(6, "H", 1), "flags"), (_edit_head(16, "B", 1), "colour-space"),
    (_edit_head(8, "I", 0), "side"), (_edit_head(12, "I", 65537), "side"),
    (_chunks(lambda h, c: struct.pack_into("<II", h, 8, 65536, 65536)), "pixels"),
    (_edit_head(17, "B", 17), "layer-count"), (_edit_head(20, "I", (1 << 22) + 1), "splat-count"),
    (VALID[:36 + 5], "chunk-head"), (VALID[: len(VALID) - 7], "chunk-head"), (VALID[: len(VALID) // 2], "chunk-size"),
    (VALID[:-20] + bytes([VALID[-20] ^ 1]) + VALID[-19:], "chunk-crc"),
    (_chunks(lambda h, c: c[-1][1].extend(b"x")), "gend-payload"),
    (_chunks(lambda h, c: c.insert(1, [b"XXXX", bytearray(3)])), "chunk-type"),
    (_chunks(lambda h, c: c.insert(0, [b"gend", bytearray()])), "chunk-type"),
    (_edit_head(17, "B", 2), "layer-excess"),
    (_chunks(lambda h, c: c[1][1].__delitem__(slice(50, None))), "layer-fixed"),
    (_edit_layer(0, [(3, "B", 1)]), "layer-reserved"),
    (_edit_layer(0, [(0, "B", 8), (46, "I", 0)]), "layer-params"),  # patch_log2 before color_levels
    (_edit_layer(1, [(1, "B", 9)]), "layer-params"), (_edit_layer(1, [(2, "B", 0)]), "layer-params"),
    (_edit_layer(1, [(2, "B", 65)]), "layer-params"), (_edit_layer(2, [(4, "h", -33)]), "layer-params"),
    (_edit_layer(2, [(6, "H", 4097)]), "layer-params"), (_edit_layer(2, [(8, "H", 0)]), "layer-params"),
    (_edit_layer(0, [(38, "I", 0), (18, "i", 1 << 24)]), "layer-params"),  # color_step[Cr] before color_min[Y]
    (_edit_layer(0, [(42, "i", -(1 << 24)), (22, "I", 4097)]), "layer-params"),  # color_min[Cr] before levels[Y]
    (_edit_layer(0, [(4, "h", 1024)]), "layer-params"),  # the 2^24 scale bound
    (_edit_layer(0, [(10, "I", 10**6)]), "layer-splats"),
    (_edit_layer(0, [(10, "I", 31)], [(20, "I", 1000)]), "layer-splats"),  # > 15 x 1 x 2 patches
    (_edit_layer(0, [(50, "I", 10**6)]), "layer-words"),
    (_patch_bomb(), "patch-sum"),
    (_chunks(lambda h, c: c.pop(1)), "layer-number"), (_edit_head(20, "I", TOTAL + 1), "splat-sum"),
    (VALID + b"\0", "trailing"), (_chunks(lambda h, c: c.append([b"GEND", bytearray()])), "trailing"),
    (_edit_layer(1, [(54, "I", 0xFFFFFFFF), (58, "I", 0xFFFFFFFF)]), "range-invalid"),
    (_edit_layer(1, [(10, "I", LAYER1 - 1)], [(20, "I", TOTAL - 1)]), "counts-sum"),
    (_minor_too_small(), "minor"),
]


@pytest.mark.parametrize("data, check", TARGETED, ids=[f"{i}-{c}" for i, (_, c) in enumerate(TARGETED)])
def test_each_check(data: bytes, check: str) -> None:
    assert assert_agree(data, check) == check


def test_every_check_targeted() -> None:
    assert {check for _, check in TARGETED} == set(REFERENCE_MESSAGE)


def test_gend_payload_rejected() -> None:
    """SPEC 4.2: a GEND chunk must be empty, even with a matching CRC."""
    data = _chunks(lambda h, c: c[-1][1].extend(b"\0\0\0\0"))
    gend = len(data) - 16
    assert data[gend : gend + 4] == b"GEND"
    with pytest.raises(GscError, match=f"^GEND chunk at byte {gend} has a 4-byte payload; it must be empty$"):
        decode_splats(data)
    with pytest.raises(GscError, match="must be empty"):
        gscodec.decode(data)


def test_error_offsets_name_the_chunk() -> None:
    """An unknown chunk is reported at its own offset, not the next chunk's."""
    head, chunks = _three_layers()
    chunks.insert(1, [b"XXXX", bytearray(7)])
    data = join(head, chunks)
    at = 36 + 12 + len(chunks[0][1])
    assert data[at : at + 4] == b"XXXX"
    with pytest.raises(GscError, match=f"unknown chunk type b'XXXX' at byte {at}$"):
        decode_splats(data)
    bad = bytearray(_case("three_layers")[0])
    layr2 = 36 + 12 + len(chunks[0][1])
    bad[layr2 + 8 + 60] ^= 1
    with pytest.raises(GscError, match=f"CRC mismatch in chunk b'LAYR' at byte {layr2}\\)"):
        decode_splats(bytes(bad))


def _mutate(data: bytes, rng: random.Random) -> bytes:
    head, chunks = split(data)
    kind = rng.randrange(6)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    if kind == 1:  # header fields, CRC repaired
        for _ in range(rng.randint(1, 2)):
            head[rng.randrange(4, 32)] = rng.choice([0, 1, 255, rng.randrange(256)])
    elif kind == 2:  # chunk order and types
        i, j = rng.randrange(len(chunks)), rng.randrange(len(chunks))
        op = rng.randrange(4)
        if op == 0:
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif op == 1:
            chunks.insert(j, [chunks[i][0], bytearray(chunks[i][1])])
        elif op == 2:
            del chunks[i]
        else:
            chunks[i][0] = rng.choice([b"GEND", b"LAYR", b"layr", b"\0\0\0\0"])
    else:  # LAYR bytes (fixed fields or words), CRC repaired
        layers = [c for c in chunks if c[0] == b"LAYR"] or chunks
        payload = rng.choice(layers)[1]
        for _ in range(rng.randint(1, 3)):
            if payload:
                limit = len(payload) if kind == 5 else min(len(payload), 54)
                payload[rng.randrange(limit)] = rng.choice([0, 255, rng.randrange(256)])
    return join(head, chunks)


def test_random_corruptions_agree() -> None:
    """Random corruptions of the conformance inputs: both decoders accept or both fail at the same check."""
    rng = random.Random(2024)
    sources = [_case(name)[0] for name in ("typical", "typical_2", "contexts", "three_layers", "extremes", "one_pixel",
                                           "empty_layer")]
    seen: dict[str | None, int] = {}
    for i in range(400):
        check = assert_agree(_mutate(sources[i % len(sources)], rng))
        seen[check] = seen.get(check, 0) + 1
    print(f"\n400 corruptions, outcome per check: {dict(sorted(seen.items(), key=lambda kv: str(kv[0])))}")
    assert len(seen) >= 10
