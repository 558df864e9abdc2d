"""Generate the .gsc conformance cases (bitstream/SPEC.md, section Conformance).

Each case is a folder holding

- ``input.gsc``: the bitstream;
- ``expected_symbols.json``: the header, and per layer its parameters and every
  symbol stream (exact), plus the dequantized splats (float32 values);
- ``reference*.png``: reference decodes (8-bit RGB) by the torch renderer;
- ``test.json``: what a decoder must reproduce and with which tolerance.

Hand-built cases are made from explicit integer symbols through the entropy coder
and the container only, so they pin the format, not the encoder: in format 1.0, and
``contexts`` in 2.0. The ``typical`` (format 1.0) and ``typical_2`` (2.0) cases come
from ``gscodec.encode``; their ``input.gsc`` files are golden: written once and then
kept (the encoder may change, the golden files must not). ``--reencode`` makes
``typical_2`` again; ``typical`` was made before format 2 and cannot be.
Invalid cases carry ``"expect": "GscError"``.

Run ``python -m bitstream.conformance.make`` (or ``python bitstream/conformance/make.py``);
tests/test_conformance.py runs it when ``GSC_REGEN_CONFORMANCE=1``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gscodec.format.codec import decode_splats
from gscodec.format.constants import MAX_PER_PATCH
from gscodec.format.container import Header, LayerChunk, pack, parse
from gscodec.format.params import LayerParams, LayerSymbols
from gscodec.format.symbols import decode_symbols, encode_symbols
from gscodec.render.backends import render_splats, to_uint8_rgb

HERE = Path(__file__).resolve().parent
PIXEL_TOLERANCE = {"max_abs_diff": 1, "min_psnr_db": 50.0}

# one splat of a hand-built layer: (patch index, off_x, off_y, major, gap, angle, Y, Cb, Cr);
# angle is ignored (not coded) when gap == 0
Splat = tuple[int, int, int, int, int, int, int, int, int]


def params(
    patch_log2: int = 3, pos_bits: int = 2, scale_den: int = 4, scale_min: int = -8, scale_levels: int = 32,
    angle_levels: int = 16, color_step: Sequence[int] = (1024, 2048, 2048), color_min: Sequence[int] = (-64, -32, -32),
    color_levels: Sequence[int] = (128, 64, 64),
) -> LayerParams:
    """LayerParams with defaults for hand-built layers."""
    p = LayerParams(
        patch_log2, pos_bits, scale_den, scale_min, scale_levels, angle_levels,
        tuple(color_step), tuple(color_min), tuple(color_levels),  # type: ignore[arg-type]
    )
    p.validate()
    return p


def layer_symbols(p: LayerParams, splats: Sequence[Splat], width: int, height: int) -> LayerSymbols:
    """Symbols of one layer from per-splat integers, in coding order (patch, then offset)."""
    rows, cols = p.grid(width, height)
    cells = 1 << p.pos_bits
    order = sorted(splats, key=lambda s: (s[0], s[2] * cells + s[1]))
    counts = np.bincount([s[0] for s in order], minlength=rows * cols).astype(np.int64)
    assert len(counts) == rows * cols and counts.max(initial=0) <= MAX_PER_PATCH
    col = lambda i: np.array([s[i] for s in order], np.int64)  # noqa: E731
    gap = col(4)
    return LayerSymbols(
        counts, col(1), col(2), col(3), gap, col(5)[gap > 0],
        np.array([s[6:9] for s in order], np.int64).reshape(-1, 3),
    )


def build(
    width: int, height: int, background: Sequence[int], layers: Sequence[tuple[LayerParams, Sequence[Splat]]],
    version: tuple[int, int] = (1, 0), flags: Sequence[int] | None = None,
) -> bytes:
    """A complete .gsc stream from explicit symbols, in format ``version`` (1.0 unless told), each
    layer with the given context flags (format 2; the encoder's choice unless told)."""
    chunks = []
    for i, (p, splats) in enumerate(layers):
        symbols = layer_symbols(p, splats, width, height)
        words, used = encode_symbols(p, symbols, width, height, version, flags=None if flags is None else flags[i])
        chunks.append(LayerChunk(p, len(symbols), words, used))
    header = Header(width, height, len(chunks), sum(c.splat_count for c in chunks), tuple(background),  # type: ignore[arg-type]
                    version)
    return pack(header, chunks)


def _random_layer(rng: np.random.Generator, p: LayerParams, n: int, width: int, height: int) -> list[Splat]:
    rows, cols = p.grid(width, height)
    cells = 1 << p.pos_bits
    out: list[Splat] = []
    patches = rng.choice(rows * cols, size=n, replace=n > rows * cols)
    for patch in patches:
        if sum(1 for s in out if s[0] == patch) >= MAX_PER_PATCH:
            continue
        major = int(rng.integers(0, p.scale_levels))
        out.append((
            int(patch), int(rng.integers(cells)), int(rng.integers(cells)), major,
            int(rng.integers(0, major + 1)), int(rng.integers(p.angle_levels)),
            *(int(rng.integers(p.color_levels[c])) for c in range(3)),
        ))
    return out


def hand_built() -> dict[str, bytes]:
    """The hand-built valid cases, name -> bytes (deterministic)."""
    rng = np.random.default_rng(20240601)
    cases: dict[str, bytes] = {}
    # a 1x1 image: one 1-pixel patch holding one splat, centred on the pixel
    p1 = params(patch_log2=0, pos_bits=0, scale_den=2, scale_min=-4, scale_levels=8)
    cases["one_pixel"] = build(1, 1, (2048, 0, 0), [(p1, [(0, 0, 0, 4, 1, 5, 100, 40, 20)])])
    # no layers at all: the background alone, on an odd size
    cases["zero_splats"] = build(37, 23, (1500, -300, 400), [])
    # a layer that holds no splat (its counts stream alone)
    cases["empty_layer"] = build(19, 11, (-32768, 32767, -32768), [(params(), [])])  # extreme background
    # three layers, coarse to fine, each with its own parameters
    w, h = 40, 30
    la = params(patch_log2=5, pos_bits=3, scale_den=4, scale_min=4, scale_levels=16, angle_levels=8)
    lb = params(patch_log2=3, pos_bits=2, scale_den=6, scale_min=-6, scale_levels=24, angle_levels=24)
    lc = params(patch_log2=1, pos_bits=1, scale_den=2, scale_min=-4, scale_levels=6, angle_levels=4,
                color_step=(4096, 4096, 4096), color_min=(-8, -8, -8), color_levels=(16, 16, 16))
    cases["three_layers"] = build(w, h, (1800, -50, 80), [
        (la, _random_layer(rng, la, 6, w, h)), (lb, _random_layer(rng, lb, 25, w, h)),
        (lc, _random_layer(rng, lc, 60, w, h)),
    ])
    # one splat far larger than the image (sigma 2^10 px) plus a small one
    lh = params(patch_log2=4, pos_bits=4, scale_den=1, scale_min=0, scale_levels=11, angle_levels=2)
    huge: list[Splat] = [(0, 3, 7, 10, 0, 0, 120, 30, 40), (3, 3, 1, 1, 1, 1, 0, 63, 0)]
    cases["huge_splat"] = build(24, 20, (0, 0, 0), [(lh, huge)])
    # splats on every border of an odd-size image, some centred in grid cells outside it
    lb2 = params(patch_log2=3, pos_bits=3, scale_den=4, scale_min=-4, scale_levels=16, angle_levels=16)
    border: list[Splat] = [
        (0, 0, 0, 8, 0, 0, 127, 0, 0), (1, 7, 0, 9, 3, 4, 0, 63, 0), (1, 4, 7, 6, 2, 15, 30, 0, 63),
        (2, 0, 7, 10, 4, 8, 100, 10, 50), (3, 7, 7, 12, 6, 12, 5, 5, 5), (3, 0, 0, 4, 0, 0, 127, 63, 63),
    ]
    cases["borders"] = build(13, 9, (2048, 0, 0), [(lb2, border)])
    # parameter extremes: scale_den 1 and 64, angle_levels 1 and 4096, pos_bits 0 and 8,
    # patch_log2 7, 4096-symbol alphabets, the smallest scale (2^-16 px) as a minor axis
    w, h = 33, 17
    e1 = params(patch_log2=0, pos_bits=0, scale_den=1, scale_min=-16, scale_levels=21, angle_levels=1,
                color_step=(1, (1 << 24) - 1, 65536), color_min=(16384, -1, -2), color_levels=(4096, 3, 5))
    line = [(16 * w + 5, 0, 0, 18, 18, 0, 4095, 1, 2),  # 2^2 x 2^-16 px: a line along the last pixel row
            (3 * w + 30, 0, 0, 16, 0, 0, 0, 1, 3)]  # a round splat of sigma 1 px
    e2 = params(patch_log2=7, pos_bits=8, scale_den=64, scale_min=-1024, scale_levels=2560, angle_levels=4096,
                color_step=(30, 50, 70), color_min=(-2048, -1024, -512), color_levels=(4096, 2048, 1024))
    fine = [(0, int(rng.integers(0, 80)), int(rng.integers(0, 40)), int(rng.integers(1024, 1200)),
             int(rng.integers(0, 200)), int(rng.integers(0, 4096)), *(int(rng.integers(0, n)) for n in e2.color_levels))
            for _ in range(12)]
    cases["extremes"] = build(w, h, (1024, 0, 0), [(e1, line), (e2, fine)])
    # a patch holding the most splats a patch may hold
    lm = params(patch_log2=2, pos_bits=2, scale_den=4, scale_min=-4, scale_levels=12, angle_levels=16)
    full: list[Splat] = [(5, i % 4, i // 4, 4 + i % 8, i % 3, i, 10 * i % 128, 4 * i % 64, 63 - 4 * i % 64)
                         for i in range(MAX_PER_PATCH)]
    cases["full_patch"] = build(16, 12, (1024, 0, 0), [(lm, full)])
    # degenerate but legal shapes (SPEC 7): a 2^23 x 2^-16 px needle at pi/4 through pixel centres,
    # the same at pi/2 off the grid, and a round splat of 2^23 px; renderers must neither fail nor differ
    ln = params(patch_log2=0, pos_bits=1, scale_den=1, scale_min=-16, scale_levels=40, angle_levels=4,
                color_step=(4096, 4096, 4096), color_min=(-8, -8, -8), color_levels=(16, 16, 16))
    needles: list[Splat] = [(5 * 16 + 5, 0, 0, 39, 39, 1, 12, 8, 8), (2 * 16 + 11, 1, 0, 39, 39, 2, 4, 12, 8),
                            (9 * 16 + 2, 1, 1, 39, 0, 0, 9, 8, 7)]
    cases["needle"] = build(16, 12, (0, 0, 0), [(ln, needles)])
    # format 2: every context of SPEC 5.6, with more than 16 symbols in most contexts (so their
    # models are rebuilt at their own block boundaries) and colours of every sign; a second
    # layer takes some contexts only
    w, h = 48, 40
    lx = params(patch_log2=2, pos_bits=2, scale_den=4, scale_min=-8, scale_levels=24, angle_levels=16,
                color_step=(2048, 2048, 2048), color_min=(-6, -5, -4), color_levels=(13, 11, 9))
    ly = params(patch_log2=3, pos_bits=3, scale_den=4, scale_min=-4, scale_levels=20, angle_levels=8)
    cases["contexts"] = build(w, h, (2048, 0, 0), [(lx, _random_layer(rng, lx, 260, w, h)),
                                                   (ly, _random_layer(rng, ly, 40, w, h))],
                              version=(2, 0), flags=[0b11111, 0b10101])
    return cases


def invalid(valid: bytes) -> dict[str, bytes]:
    """Cases a decoder must reject with GscError, derived from a valid stream."""
    corrupt_crc = bytearray(valid)
    corrupt_crc[-20] ^= 0x10  # inside the last LAYR payload: its CRC no longer matches
    return {"invalid_truncated": valid[: len(valid) // 2], "invalid_crc": bytes(corrupt_crc)}


def typical_input(path: Path, crop: tuple[slice, slice] = (slice(100, 148), slice(180, 244))) -> bytes:
    """A crop of skimage's astronaut (64x48 unless told) encoded by gscodec.encode at effort 1."""
    import skimage.data

    import gscodec

    data = gscodec.encode(skimage.data.astronaut()[crop], effort=1)
    path.write_bytes(data)
    return data


def expected_symbols(data: bytes) -> dict:
    """Header fields, and per layer its parameters, symbol streams and dequantized splats."""
    header, chunks = parse(data)
    splats = decode_splats(data)
    layers, first = [], 0
    for chunk in chunks:
        s = decode_symbols(chunk.params, chunk.splat_count, chunk.words, header.width, header.height, chunk.contexts)
        n = chunk.splat_count
        part = slice(first, first + n)
        first += n
        layers.append({
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(chunk.params).items()},
            "splat_count": n,
            "n_words": len(chunk.words),
            "contexts": chunk.contexts,
            "symbols": {
                "counts": s.counts.tolist(), "off_x": s.off_x.tolist(), "off_y": s.off_y.tolist(),
                "major": s.major.tolist(), "minor_gap": s.minor_gap.tolist(), "angle": s.angle.tolist(),
                "Y": s.color[:, 0].tolist(), "Cb": s.color[:, 1].tolist(), "Cr": s.color[:, 2].tolist(),
            },
            "splats": {
                k: getattr(splats, k)[part].astype(np.float64).tolist() for k in ("means", "scales", "angles", "colors")
            },
        })
    return {
        "version": list(header.version), "width": header.width, "height": header.height,
        "layer_count": header.layer_count,
        "splat_count": header.splat_count, "background": list(header.background), "layers": layers,
    }


def reference(data: bytes, scale: float = 1.0, layers: int | None = None, backend: str = "torch") -> np.ndarray:
    """The reference decode: [H, W, 3] uint8 RGB (output size round(side * scale), at least 1)."""
    s = decode_splats(data, layers=layers)
    h, w = max(1, round(s.height * scale)), max(1, round(s.width * scale))
    t = s.tensors()
    with torch.no_grad():
        ycc = render_splats(
            t.means, t.scales, t.angles, t.colors, h, w, scale=scale,
            background=torch.from_numpy(s.background), backend=backend,
        )
    return to_uint8_rgb(ycc).numpy()


def renders_for(name: str, layer_count: int) -> list[dict]:
    """Which reference decodes a case carries: always scale 1; more for some cases."""
    out: list[dict] = [{"file": "reference.png", "scale": 1.0, "layers": None}]
    if name in ("typical", "typical_2", "three_layers", "huge_splat", "needle"):
        out += [{"file": "reference_x0.5.png", "scale": 0.5, "layers": None},
                {"file": "reference_x1.75.png", "scale": 1.75, "layers": None}]
    if name == "three_layers":
        out += [{"file": f"reference_layers{k}.png", "scale": 1.0, "layers": k} for k in range(layer_count)]
    return out


def write_case(folder: Path, name: str, data: bytes, *, description: str) -> None:
    """Write one valid case folder from its bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.gsc").write_bytes(data)
    symbols = expected_symbols(data)
    (folder / "expected_symbols.json").write_text(json.dumps(symbols, separators=(",", ":")) + "\n")
    renders = renders_for(name, symbols["layer_count"])
    for r in renders:
        Image.fromarray(reference(data, r["scale"], r["layers"])).save(folder / r["file"], optimize=True)
    test = {
        "description": description, "expect": "decode", "symbols": "exact",
        "splats": {"means": "exact", "colors": "exact", "scales_rtol": 1e-6, "angles_rtol": 1e-6},
        "pixels": PIXEL_TOLERANCE, "renders": renders, "rebuild_exact": True,
    }
    (folder / "test.json").write_text(json.dumps(test, indent=1) + "\n")


DESCRIPTIONS = {
    "typical": "64x48 crop of skimage.data.astronaut() encoded by gscodec.encode(effort=1) in format 1.0: "
               "a natural image",
    "typical_2": "96x64 crop of skimage.data.astronaut() encoded by gscodec.encode(effort=1) in format 2.0",
    "contexts": "format 2.0: every context of SPEC 5.6 (layer flags 31 and 21), colours of every sign",
    "one_pixel": "1x1 image, one splat centred on the pixel",
    "zero_splats": "no layers: the background alone (37x23)",
    "empty_layer": "one layer with no splat (only its counts stream), extreme background",
    "three_layers": "three layers (patches 32, 8, 2) with different parameters; progressive decodes",
    "huge_splat": "a splat of sigma 1024 px covering the image, and a small one",
    "borders": "splats on the borders of a 13x9 image, some centred outside it (grid 16x16)",
    "extremes": "scale_den 1 and 64, angle_levels 1 and 4096, pos_bits 0 and 8, patch 128, 4096-symbol "
                "alphabets, the largest colour step, a 2^-16 px minor axis",
    "full_patch": "a patch holding MAX_PER_PATCH (15) splats",
    "needle": "degenerate but legal shapes: 2^23 x 2^-16 px needles at pi/4 and pi/2, a round 2^23 px splat",
}


def main(argv: Sequence[str] | None = None) -> None:
    """Regenerate every case folder (the typical_2 input.gsc only if missing or --reencode)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    ap.add_argument("--reencode", action="store_true", help="re-encode the typical_2 case with the current encoder")
    args = ap.parse_args(argv)
    out: Path = args.out
    typical = out / "typical" / "input.gsc"  # format 1.0, kept: the encoder now writes 2.0
    if not typical.exists():
        raise SystemExit(f"{typical} is missing: it is golden (format 1.0) and cannot be made again")
    typical_2 = out / "typical_2" / "input.gsc"
    if args.reencode or not typical_2.exists():
        typical_2.parent.mkdir(parents=True, exist_ok=True)
        typical_input(typical_2, (slice(80, 144), slice(160, 256)))
    cases = {"typical": typical.read_bytes(), "typical_2": typical_2.read_bytes(), **hand_built()}
    for name, case in cases.items():
        write_case(out / name, name, case, description=DESCRIPTIONS[name])
    for name, case in invalid(cases["three_layers"]).items():
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder / "input.gsc").write_bytes(case)
        test = {"description": f"{name[8:]} copy of three_layers/input.gsc", "expect": "GscError"}
        (folder / "test.json").write_text(json.dumps(test, indent=1) + "\n")


if __name__ == "__main__":
    main()
