"""An independent .gsc decoder (formats 1 and 2), written from bitstream/SPEC.md alone (sections 3 to 6).

Pure Python: struct, zlib and json only (and math for pi). It imports neither gscodec,
numpy nor constriction, and follows the spec's wording rather than the reference
implementation, so that tests/test_spec_decoder.py can show the text is enough to
decode every conformance case. It is slow and plain on purpose: a reading aid for
implementers. Errors are `SpecError`s carrying the name of the failed check of SPEC 4.4.

    python tests/spec_decoder.py FILE.gsc      # prints the header, layers and splats as JSON
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib

MAGIC = b"\x89GSC"
HEADER_SIZE = 36
LAYR_FIXED = 54
MAX_SIDE, MAX_PIXELS, MAX_LAYERS, MAX_SPLATS, MAX_LEVELS, MAX_PER_PATCH = 65536, 1 << 26, 16, 1 << 22, 4096, 15
MAX_PATCHES = 1 << 26
PRECISION = 24  # SPEC 5.3: probabilities in units of 2^-24
MASK64 = (1 << 64) - 1


class SpecError(ValueError):
    """A stream rejected by one of the checks of SPEC 4.4: ``check`` is its name there,
    ``offset`` the byte offset of the chunk it is about (None for the header and entropy)."""

    def __init__(self, check: str, message: str, offset: int | None = None) -> None:
        super().__init__(f"{check}: {message}")
        self.check, self.offset = check, offset


def require(ok: bool, check: str, message: str, offset: int | None = None) -> None:
    if not ok:
        raise SpecError(check, message, offset)


# --- container (SPEC 3, 4) ---------------------------------------------------------------

def parse_header(data: bytes) -> dict:
    require(len(data) >= 4 and data[:4] == MAGIC, "magic", "not a .gsc stream")
    require(len(data) >= HEADER_SIZE, "header-size", f"{len(data)} bytes, the header has {HEADER_SIZE}")
    require(struct.unpack_from("<I", data, 32)[0] == zlib.crc32(data[:32]), "header-crc", "header CRC mismatch")
    major, _minor, flags, width, height, space, layers, _reserved, splats = struct.unpack_from("<BBHIIBBHI", data, 4)
    require(major in (1, 2), "version", f"major version {major}")
    require(flags == 0, "flags", f"flags {flags:#x}")
    require(space == 0, "colour-space", f"colour space {space}")
    require(1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE, "side", f"size {width}x{height}")
    require(width * height <= MAX_PIXELS, "pixels", f"{width * height} pixels")
    require(layers <= MAX_LAYERS, "layer-count", f"{layers} layers")
    require(splats <= MAX_SPLATS, "splat-count", f"{splats} splats")
    background = struct.unpack_from("<hhh", data, 24)
    return {"width": width, "height": height, "layer_count": layers, "splat_count": splats,
            "background": list(background), "major": major}


def parse_layer(payload: bytes, header: dict, pos: int) -> dict:
    """The fields of one LAYR payload (SPEC 4.1), every range checked in the order of SPEC 4.4."""
    require(len(payload) >= LAYR_FIXED, "layer-fixed", f"LAYR at byte {pos}: {len(payload)}-byte payload", pos)
    patch_log2, pos_bits, scale_den, reserved, scale_min, scale_levels, angle_levels, count = \
        struct.unpack_from("<BBBBhHHI", payload, 0)
    colour = [struct.unpack_from("<IiI", payload, 14 + 12 * c) for c in range(3)]  # (step, min, levels) for Y, Cb, Cr
    (n_words,) = struct.unpack_from("<I", payload, 50)
    # byte 3: reserved in format 1, the context flags (bits 0-4) in format 2 (SPEC 4.1, 5.6)
    allowed = 0 if header["major"] == 1 else 0b11111
    require(reserved & ~allowed == 0, "layer-reserved", f"LAYR at byte {pos}: byte 3 is {reserved}", pos)
    ranges = [
        (0 <= patch_log2 <= 7, "patch_log2"), (0 <= pos_bits <= 8, "pos_bits"), (1 <= scale_den <= 64, "scale_den"),
        (-16 * scale_den <= scale_min <= 1024, "scale_min"), (1 <= scale_levels <= MAX_LEVELS, "scale_levels"),
        (1 <= angle_levels <= MAX_LEVELS, "angle_levels"),
        *((1 <= colour[c][0] < 1 << 24, "color_step") for c in range(3)),
        *((abs(colour[c][1]) < 1 << 24, "color_min") for c in range(3)),
        *((1 <= colour[c][2] <= MAX_LEVELS, "color_levels") for c in range(3)),
        (scale_min + scale_levels <= 24 * scale_den, "scales above 2^24"),
    ]
    for ok, field in ranges:
        require(ok, "layer-params", f"LAYR at byte {pos}: {field}", pos)
    p = 1 << patch_log2
    rows, cols = -(-header["height"] // p), -(-header["width"] // p)
    require(count <= header["splat_count"] and count <= MAX_PER_PATCH * rows * cols, "layer-splats",
            f"LAYR at byte {pos}: {count} splats", pos)
    require(len(payload) == LAYR_FIXED + 4 * n_words, "layer-words", f"LAYR at byte {pos}: {n_words} words", pos)
    return {
        "params": {"patch_log2": patch_log2, "pos_bits": pos_bits, "scale_den": scale_den, "scale_min": scale_min,
                   "scale_levels": scale_levels, "angle_levels": angle_levels,
                   "color_step": [c[0] for c in colour], "color_min": [c[1] for c in colour],
                   "color_levels": [c[2] for c in colour]},
        "splat_count": count, "rows": rows, "cols": cols, "flags": reserved,
        "words": list(struct.unpack_from(f"<{n_words}I", payload, LAYR_FIXED)),
    }


def parse(data: bytes) -> tuple[dict, list[dict]]:
    """Header and LAYR chunks of a complete stream: the whole container checked (SPEC 4.4)."""
    header = parse_header(data)
    pos, layers = HEADER_SIZE, []
    while True:
        require(len(data) - pos >= 8, "chunk-head", f"chunk at byte {pos}: truncated head", pos)
        kind, length = struct.unpack_from("<4sI", data, pos)
        require(len(data) - pos - 8 >= length + 4, "chunk-size", f"chunk at byte {pos}: truncated", pos)
        payload = data[pos + 8: pos + 8 + length]
        crc = struct.unpack_from("<I", data, pos + 8 + length)[0]
        require(crc == zlib.crc32(kind + payload), "chunk-crc", f"chunk at byte {pos}: CRC mismatch", pos)
        start, pos = pos, pos + 8 + length + 4
        if kind == b"GEND":
            require(length == 0, "gend-payload", f"GEND at byte {start} holds {length} bytes", start)
            break
        require(kind == b"LAYR", "chunk-type", f"chunk type {kind!r} at byte {start}", start)
        require(len(layers) < header["layer_count"], "layer-excess", f"LAYR at byte {start}: one too many", start)
        layers.append(parse_layer(payload, header, start))
        patches = sum(layer["rows"] * layer["cols"] for layer in layers)
        require(patches <= MAX_PATCHES, "patch-sum", f"LAYR at byte {start}: {patches} patches so far", start)
    require(len(layers) == header["layer_count"], "layer-number", f"{len(layers)} LAYR chunks")
    require(sum(layer["splat_count"] for layer in layers) == header["splat_count"], "splat-sum", "splat counts")
    require(pos == len(data), "trailing", f"{len(data) - pos} bytes after GEND", pos)
    return header, layers


# --- entropy decoding (SPEC 5) -----------------------------------------------------------

def model_cdf(hist: list[int]) -> list[int]:
    """cdf[0..n] of the fixed-point model of an alphabet of n >= 2 symbols (SPEC 5.3)."""
    n = len(hist)
    weights = [2 * h + 1 for h in hist]
    scale = float((1 << PRECISION) - n) / float(sum(weights))  # one binary64 division
    cdf, below = [], 0  # below = C_k, the exact sum of the weights of symbols < k
    for k in range(n):
        cdf.append(int(float(below) * scale) + k)  # one binary64 product, truncated
        below += weights[k]
    cdf.append(1 << PRECISION)
    return cdf


class RangeDecoder:
    """SPEC 5.4: 32-bit words, 64-bit state, all arithmetic modulo 2^64."""

    def __init__(self, words: list[int]) -> None:
        self.words, self.next = words, 2
        first = words[0] if words else 0
        second = words[1] if len(words) > 1 else 0
        self.point = (first << 32) | second
        self.lower, self.range = 0, MASK64

    def decode(self, cdf: list[int]) -> int:
        s = self.range >> PRECISION
        quantile = ((self.point - self.lower) & MASK64) // s
        require(quantile < 1 << PRECISION, "range-invalid", f"quantile {quantile}")
        lo, hi = 0, len(cdf) - 1  # binary search: cdf[lo] <= quantile < cdf[hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cdf[mid] <= quantile:
                lo = mid
            else:
                hi = mid
        self.lower = (self.lower + s * cdf[lo]) & MASK64
        self.range = s * (cdf[lo + 1] - cdf[lo])
        if self.range < 1 << 32:
            word = self.words[self.next] if self.next < len(self.words) else 0  # past the end: 0, no error
            self.next += 1
            self.lower = (self.lower << 32) & MASK64
            self.range <<= 32
            self.point = ((self.point << 32) & MASK64) | word
        return lo


def decode_stream(decoder: RangeDecoder, n: int, alphabet: int) -> list[int]:
    """n symbols with the adaptive block model (SPEC 5.2)."""
    if alphabet == 1:
        return [0] * n  # not coded
    hist, out = [0] * alphabet, []
    while len(out) < n:
        block = min(n - len(out), min(4096, max(16, len(out))))
        cdf = model_cdf(hist)
        symbols = [decoder.decode(cdf) for _ in range(block)]
        for symbol in symbols:
            hist[symbol] += 1
        out += symbols
    return out


def decode_with_contexts(decoder: RangeDecoder, n: int, alphabet: int, context_of) -> list[int]:
    """n symbols, each with the model of its context (SPEC 5.6): ``context_of(i, out)`` gives
    symbol i's context from the symbols before it; each context keeps 5.2's model over its own
    symbols."""
    if alphabet == 1:
        return [0] * n
    hist, seen, block_end, cdf, out = {}, {}, {}, {}, []
    for i in range(n):
        k = context_of(i, out)
        if k not in hist:
            hist[k], seen[k], block_end[k] = [0] * alphabet, 0, 0
        if seen[k] == block_end[k]:  # context k starts a block (5.2's lengths, in its own symbols)
            block_end[k] += min(4096, max(16, seen[k]))
            cdf[k] = model_cdf(hist[k])
        symbol = decoder.decode(cdf[k])
        hist[k][symbol] += 1
        seen[k] += 1
        out.append(symbol)
    return out


def sign(v: int) -> int:
    return 0 if v < 0 else 1 if v == 0 else 2


def decode_layer(layer: dict) -> dict[str, list[int]]:
    """The nine symbol streams of one layer, with the checks of SPEC 4.4 (entropy part)."""
    p, n = layer["params"], layer["splat_count"]
    dec = RangeDecoder(layer["words"])
    flags, cols = layer["flags"], layer["cols"]

    def count_context(i: int, out: list[int]) -> int:  # the table of SPEC 5.6
        r, c = divmod(i, cols)
        t = (out[i - 1] if c > 0 else 0) + (out[i - cols - 1] if r > 0 and c > 0 else 0) \
            + (out[i - cols] if r > 0 else 0) + (out[i - cols + 1] if r > 0 and c + 1 < cols else 0)
        return [0, 1, 2, 2, 3, 3, 3][t] if t < 7 else 4

    if flags & 1:
        s = {"counts": decode_with_contexts(dec, layer["rows"] * cols, MAX_PER_PATCH + 1, count_context)}
    else:
        s = {"counts": decode_stream(dec, layer["rows"] * cols, MAX_PER_PATCH + 1)}
    require(sum(s["counts"]) == n, "counts-sum", f"patch counts add up to {sum(s['counts'])}, not {n}")
    cells = 1 << p["pos_bits"]
    s["off_x"], s["off_y"] = decode_stream(dec, n, cells), decode_stream(dec, n, cells)
    s["major"] = decode_stream(dec, n, p["scale_levels"])
    if flags & 2:
        s["minor_gap"] = decode_with_contexts(dec, n, p["scale_levels"],
                                              lambda i, out: min(3, 4 * s["major"][i] // p["scale_levels"]))
    else:
        s["minor_gap"] = decode_stream(dec, n, p["scale_levels"])
    for major, gap in zip(s["major"], s["minor_gap"], strict=True):
        require(gap <= major + p["scale_min"] + 16 * p["scale_den"], "minor", "minor axis below 2^-16 px")
    s["angle"] = decode_stream(dec, sum(1 for g in s["minor_gap"] if g > 0), p["angle_levels"])
    for c, name in enumerate(("Y", "Cb", "Cr")):
        if not flags & (4 << c):
            s[name] = decode_stream(dec, n, p["color_levels"][c])
        elif name == "Cr":  # the sign of the same splat's Cb value
            s[name] = decode_with_contexts(dec, n, p["color_levels"][c],
                                           lambda i, out: sign(s["Cb"][i] + p["color_min"][1]))
        else:  # the sign of the previous splat's value in this channel; the first: 1
            s[name] = decode_with_contexts(
                dec, n, p["color_levels"][c],
                lambda i, out, c=c: sign(out[i - 1] + p["color_min"][c]) if i else 1)
    return s


# --- dequantization (SPEC 6) -------------------------------------------------------------

def dequantize(layer: dict, s: dict[str, list[int]]) -> list[dict]:
    """The splats of one layer as float64 values (the reference rounds them to float32)."""
    p, cols = layer["params"], layer["cols"]
    side = 1 << p["patch_log2"]
    step = side / (1 << p["pos_bits"])
    patches = [patch for patch, count in enumerate(s["counts"]) for _ in range(count)]
    angles = iter(s["angle"])
    splats = []
    for k, patch in enumerate(patches):
        major = s["major"][k] + p["scale_min"]
        minor = major - s["minor_gap"][k]
        angle = next(angles) * (math.pi / p["angle_levels"]) if s["minor_gap"][k] > 0 else 0.0
        colour = [(s[name][k] + p["color_min"][c]) * (p["color_step"][c] / 65536)
                  for c, name in enumerate(("Y", "Cb", "Cr"))]
        splats.append({
            "mean": [(patch % cols) * side + (s["off_x"][k] + 0.5) * step,
                     (patch // cols) * side + (s["off_y"][k] + 0.5) * step],
            "scale": [2.0 ** (major / p["scale_den"]), 2.0 ** (minor / p["scale_den"])],
            "angle": angle, "color": colour,
        })
    return splats


def decode(data: bytes) -> dict:
    """Header, and per layer its parameters, symbol streams and splats; SpecError if invalid."""
    header, layers = parse(bytes(data))
    out = dict(header, background_ycbcr=[v / 4096 for v in header["background"]], layers=[])
    for layer in layers:
        symbols = decode_layer(layer)
        out["layers"].append({"params": layer["params"], "splat_count": layer["splat_count"],
                              "n_words": len(layer["words"]), "symbols": symbols,
                              "splats": dequantize(layer, symbols)})
    return out


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print(json.dumps(decode(f.read()), indent=1))
