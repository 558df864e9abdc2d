"""The conformance cases of bitstream/conformance (see bitstream/SPEC.md, section Conformance).

Symbols are checked exactly, pixels within the tolerance of each case's test.json,
for the torch and numba render backends and for the public `gscodec.decode` (the
shipped fast decoder); every invalid case raises GscError through the reference
parser and through `gscodec.decode`. Set GSC_REGEN_CONFORMANCE=1 to regenerate the
expected files first (the typical case's input.gsc is kept: it is golden).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gscodec
from gscodec import GscError
from gscodec.format.codec import decode_splats
from gscodec.format.container import Header, LayerChunk, pack, parse
from gscodec.format.symbols import decode_symbols, encode_symbols
from gscodec.metrics import psnr

ROOT = Path(__file__).resolve().parents[1] / "bitstream" / "conformance"


def _load_make():
    spec = importlib.util.spec_from_file_location("conformance_make", ROOT / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


make = _load_make()
if os.environ.get("GSC_REGEN_CONFORMANCE") == "1":  # as CompressAI regenerates its golden hashes
    make.main([])

CASES = sorted(p.name for p in ROOT.iterdir() if (p / "test.json").exists())
VALID = [c for c in CASES if json.loads((ROOT / c / "test.json").read_text())["expect"] == "decode"]
INVALID = [c for c in CASES if c not in VALID]


def _case(name: str) -> tuple[bytes, dict]:
    folder = ROOT / name
    return (folder / "input.gsc").read_bytes(), json.loads((folder / "test.json").read_text())


def test_cases_present() -> None:
    for name in ("typical", "typical_2", "contexts", "one_pixel", "zero_splats", "three_layers", "huge_splat",
                 "borders", "extremes"):
        assert name in VALID
    assert INVALID
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    assert total < 300_000


@pytest.mark.parametrize("name", VALID)
def test_symbols_exact(name: str) -> None:
    data, test = _case(name)
    expected = json.loads((ROOT / name / "expected_symbols.json").read_text())
    header, chunks = parse(data)
    assert [list(header.version), header.width, header.height, header.layer_count, header.splat_count] == [
        expected["version"], expected["width"], expected["height"], expected["layer_count"], expected["splat_count"]]
    assert list(header.background) == expected["background"]
    assert len(chunks) == len(expected["layers"])
    splats = decode_splats(data)
    first = 0
    for chunk, want in zip(chunks, expected["layers"], strict=True):
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(chunk.params).items()}
        assert params == want["params"]
        assert chunk.splat_count == want["splat_count"] and len(chunk.words) == want["n_words"]
        assert chunk.contexts == want["contexts"]
        s = decode_symbols(chunk.params, chunk.splat_count, chunk.words, header.width, header.height, chunk.contexts)
        got = {"counts": s.counts, "off_x": s.off_x, "off_y": s.off_y, "major": s.major, "minor_gap": s.minor_gap,
               "angle": s.angle, "Y": s.color[:, 0], "Cb": s.color[:, 1], "Cr": s.color[:, 2]}
        for key, values in want["symbols"].items():
            assert np.asarray(got[key]).tolist() == values, f"{name}: stream {key}"
        part = slice(first, first + chunk.splat_count)
        first += chunk.splat_count
        for key in ("means", "colors", "scales", "angles"):
            actual = getattr(splats, key)[part]
            expect = np.asarray(want["splats"][key], np.float32).reshape(actual.shape)
            if test["splats"].get(key) == "exact":
                np.testing.assert_array_equal(actual, expect)
            else:
                np.testing.assert_allclose(actual, expect, rtol=test["splats"][f"{key}_rtol"], atol=0)
        if test.get("rebuild_exact"):  # the entropy coder reproduces the words exactly
            words, flags = encode_symbols(chunk.params, s, header.width, header.height, header.version,
                                          flags=chunk.contexts)
            np.testing.assert_array_equal(words, chunk.words)
    if test.get("rebuild_exact"):
        same = Header(header.width, header.height, header.layer_count, header.splat_count, header.background,
                      header.version)
        rebuilt = pack(same, [LayerChunk(c.params, c.splat_count, c.words, c.contexts) for c in chunks])
        assert rebuilt == data


@pytest.mark.parametrize("backend", ["torch", "numba", "public"])
@pytest.mark.parametrize("name", VALID)
def test_pixels_within_tolerance(name: str, backend: str) -> None:
    """Every reference*.png of a case, re-rendered by a backend ("public": `gscodec.decode`)."""
    data, test = _case(name)
    tol = test["pixels"]
    for render in test["renders"]:
        want = np.asarray(Image.open(ROOT / name / render["file"]).convert("RGB"))
        if backend == "public":
            got = gscodec.decode(data, scale=render["scale"], layers=render["layers"])
        else:
            got = make.reference(data, render["scale"], render["layers"], backend=backend)
        assert got.shape == want.shape, render
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        assert diff.max() <= tol["max_abs_diff"], f"{name} {render['file']} ({backend}): max diff {diff.max()}"
        assert psnr(got, want) >= tol["min_psnr_db"]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_cases_raise(name: str) -> None:
    data, test = _case(name)
    assert test["expect"] == "GscError"
    with pytest.raises(GscError):
        decode_splats(data)
    with pytest.raises(GscError):
        gscodec.decode(data)


def test_hand_built_inputs_are_stable() -> None:
    """The generator rebuilds every hand-built input.gsc byte for byte (format, not encoder)."""
    for name, data in make.hand_built().items():
        assert (ROOT / name / "input.gsc").read_bytes() == data, name
