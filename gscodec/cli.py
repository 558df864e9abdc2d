"""The ``gscodec`` command: encode, decode and inspect .gsc files.

    gscodec encode photo.png photo.gsc --quality 60 --effort 4
    gscodec decode photo.gsc photo.png --scale 0.5
    gscodec info photo.gsc [--json]

Errors are one line on stderr (``gscodec: error: ...``); the exit status is 2
for usage errors, 1 for unusable input or files (GscError, OSError), 3 for an
internal error (a bug: ``--verbose`` shows its traceback), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, NoReturn

import numpy as np

from . import __version__
from .api import DEFAULT_QUALITY, decode, encode, write_atomic
from .encode.plan import DEFAULT_EFFORT, MAX_EFFORT
from .errors import GscError
from .format.codec import stream_bits
from .format.container import HEADER_SIZE, parse, parse_header
from .format.symbols import STREAMS

log = logging.getLogger(__name__)

PROG = "gscodec"
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_DEVICE_HELP = "cpu (default), cuda, cuda:N (needs pip install gscodec[cuda] and a GPU) or auto"


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
        return int(args.run(args) or 0)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        return _fail(f"{exc} (see '{PROG} --help')", 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except (GscError, OSError, ValueError) as exc:  # ValueError: Pillow's save and decompression-bomb checks
        return _fail(str(exc) or type(exc).__name__, 1)
    except Exception as exc:
        if type(exc).__module__.startswith("PIL"):  # DecompressionBombError and others not under OSError
            return _fail(str(exc), 1)
        if logging.getLogger().isEnabledFor(logging.INFO):  # --verbose
            log.exception("internal error")
        return _fail(f"internal error ({type(exc).__name__}: {exc}); please report it with the traceback "
                     f"that '{PROG} --verbose ...' shows", 3)


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Gaussian splat image codec (.gsc files).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the codec does")
    common = _Parser(add_help=False)  # -v after the command too; SUPPRESS keeps a -v given before it
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = sub.add_parser("encode", parents=[common], help="compress an image (any format Pillow reads) to .gsc")
    enc.add_argument("input", metavar="IN", help="image to compress")
    enc.add_argument("output", metavar="OUT", help=".gsc file to write (atomically)")
    rate = enc.add_mutually_exclusive_group()
    rate.add_argument("-q", "--quality", type=_number(0, 100), default=None,
                      help=f"0-100, higher is larger and better (default {DEFAULT_QUALITY})")
    rate.add_argument("-b", "--target-bpp", type=_number(0, None), default=None, metavar="BPP",
                      help="search the quality that gives this many bits per pixel")
    enc.add_argument("-e", "--effort", type=_integer(0, MAX_EFFORT), default=DEFAULT_EFFORT,
                     help=f"0-{MAX_EFFORT}, more refinement (slower), default {DEFAULT_EFFORT}")
    enc.add_argument("--drop-alpha", action="store_true", help="drop an alpha channel instead of failing")
    enc.add_argument("--seed", type=_integer(0, None), default=0, help="random seed of the encoder (default 0)")
    enc.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    enc.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    enc.add_argument("--quiet", action="store_true", help="print neither progress nor summary")
    enc.set_defaults(run=_cmd_encode)

    dec = sub.add_parser("decode", parents=[common], help="render a .gsc file to an image (format from the extension)")
    dec.add_argument("input", metavar="IN", help=".gsc file")
    dec.add_argument("output", metavar="OUT", help="image to write (atomically), e.g. .png")
    dec.add_argument("-s", "--scale", type=_number(0, None), default=1.0, help="output size factor (default 1)")
    dec.add_argument("-l", "--layers", type=_integer(0, None), default=None, metavar="K",
                     help="decode only the first K layers (progressive preview)")
    dec.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    dec.add_argument("--quiet", action="store_true", help="print no summary")
    dec.set_defaults(run=_cmd_decode)

    info = sub.add_parser("info", parents=[common], help="describe a .gsc file: size, layers, bits by attribute")
    info.add_argument("input", metavar="FILE", help=".gsc file")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(run=_cmd_info)
    return parser


def _number(lo: float, hi: float | None) -> Callable[[str], float]:
    """An argparse type: a finite float in lo..hi, or above lo when hi is None."""

    def parse_number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if hi is None and not (np.isfinite(value) and value > lo):
            raise argparse.ArgumentTypeError(f"{text} is not a number above {lo:g}")
        if hi is not None and not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is outside {lo:g}..{hi:g}")
        return value

    return parse_number


def _integer(lo: int, hi: int | None) -> Callable[[str], int]:
    """An argparse type: an integer in lo..hi (no upper bound when hi is None)."""

    def parse_integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text} is outside {lo}..{'' if hi is None else hi}")
        return value

    return parse_integer


# ---------------------------------------------------------------- encode


class ProgressBar:
    """A one-line text progress bar, redrawn in place with carriage returns."""

    def __init__(self, stream: IO[str], label: str = "", width: int = 30) -> None:
        self.stream, self.label, self.width = stream, label, width
        self.start = time.perf_counter()
        self.shown = -1

    def __call__(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        percent = int(fraction * 100)
        if percent == self.shown:
            return
        self.shown = percent
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r{self.label}[{bar}] {percent:3d}% {elapsed:5.1f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def _cmd_encode(args: argparse.Namespace) -> int:
    from PIL import Image, ImageOps

    from . import GscImagePlugin  # noqa: F401 - so that IN may itself be a .gsc file

    _check_writable(args.output)
    try:
        with Image.open(args.input) as im:
            im.load()
            image = ImageOps.exif_transpose(im)
    except OSError as exc:
        raise OSError(f"cannot open {args.input}: {exc.strerror}" if exc.strerror else str(exc)) from None
    alpha = image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)
    if alpha and not args.drop_alpha:
        raise GscError(f"{args.input} has an alpha channel ({image.mode}), which .gsc cannot store; "
                       "pass --drop-alpha to drop it")
    show = not args.quiet and (args.progress or sys.stderr.isatty())
    bar = ProgressBar(sys.stderr, "encoding ") if show else None
    start = time.perf_counter()
    try:
        data = encode(
            image, quality=DEFAULT_QUALITY if args.quality is None else args.quality, effort=args.effort,
            target_bpp=args.target_bpp, drop_alpha=args.drop_alpha, progress=bar, seed=args.seed,
            device=args.device,
        )
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    write_atomic(args.output, data)
    if not args.quiet:
        header = parse_header(data)
        bpp = 8 * len(data) / (header.width * header.height)
        print(f"{args.output}: {header.width}x{header.height}, {len(data)} bytes, {bpp:.3f} bpp, "
              f"{header.splat_count} splats, {seconds:.2f} s")
    return 0


# ---------------------------------------------------------------- decode


def _cmd_decode(args: argparse.Namespace) -> int:
    from PIL import Image

    fmt = _format_for(args.output)
    data = _read(args.input)
    start = time.perf_counter()
    try:
        pixels = decode(data, scale=args.scale, layers=args.layers, device=args.device)
    except GscError as exc:
        raise GscError(f"{args.input}: {exc}") from None
    seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format=fmt)
    write_atomic(args.output, buffer.getvalue())
    if not args.quiet:
        print(f"{args.output}: {pixels.shape[1]}x{pixels.shape[0]}, {fmt}, {len(buffer.getvalue())} bytes, "
              f"decoded in {seconds:.2f} s")
    return 0


def _format_for(path: str) -> str:
    """Pillow's format name for the extension of ``path``; UsageError when none can write it."""
    from PIL import Image

    ext = os.path.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if ext == ".gsc":
        raise UsageError(f"{path}: decode writes an image; use '{PROG} encode' to make a .gsc file")
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"cannot tell an image format Pillow writes from the extension of {path!r} (try .png)")
    return fmt


# ---------------------------------------------------------------- info


def describe(data: bytes) -> dict[str, object]:
    """What `gscodec info --json` prints: sizes, layers, and where the bits go."""
    header, chunks = parse(data)
    splats, bits = stream_bits(data)  # type: ignore[arg-type]
    pixels = header.width * header.height
    payload = sum(4 * len(c.words) for c in chunks)
    n = len(splats)
    coded = sum(bits.values())
    return {
        "width": header.width,
        "height": header.height,
        "layers": [
            {"patch_size": int(c.params.patch_size), "splats": int(c.splat_count)} for c in chunks
        ],
        "splats": n,
        "bytes": len(data),
        "bpp": 8 * len(data) / pixels,
        "header_bytes": HEADER_SIZE,
        "chunk_overhead_bytes": len(data) - HEADER_SIZE - payload,
        "chunks": len(chunks) + 1,
        "payload_bytes": payload,
        "coder_flush_bits": 8 * payload - coded,
        "stream_bits": {name: int(bits.get(name, 0)) for name in STREAMS},
        "bits_per_splat": {name: (bits.get(name, 0) / n if n else None) for name in STREAMS},
        "total_bits_per_splat": 8 * len(data) / n if n else None,
    }


def _cmd_info(args: argparse.Namespace) -> int:
    data = _read(args.input)
    try:
        d = describe(data)
    except GscError as exc:
        raise GscError(f"{args.input}: {exc}") from None
    if args.json:
        print(json.dumps({"file": str(args.input), **d}, indent=2))
        return 0
    layers = d["layers"]
    assert isinstance(layers, list)
    n = int(d["splats"])  # type: ignore[call-overload]
    rows = [
        ("file", str(args.input)),
        ("image", f"{d['width']} x {d['height']} pixels"),
        ("layers", f"{len(layers)}: " + ", ".join(f"{x['patch_size']} px patches ({x['splats']} splats)"
                                                  for x in layers)),
        ("splats", str(n)),
        ("size", f"{d['bytes']} bytes, {d['bpp']:.4f} bpp"),
        ("  header", f"{d['header_bytes']} bytes"),
        ("  chunk overhead", f"{d['chunk_overhead_bytes']} bytes in {d['chunks']} chunks (heads, CRCs, layer fields)"),
        ("  coded payload", f"{d['payload_bytes']} bytes ({d['coder_flush_bits']} bits of coder flush)"),
    ]
    out = [f"{k:<18}{v}" for k, v in rows]
    bits = d["stream_bits"]
    assert isinstance(bits, dict)
    total = sum(bits.values())
    out += ["", f"{'stream':<18}{'bits':>10}{'bits/splat':>12}{'share':>8}"]
    for name, b in [*bits.items(), ("total", total)]:
        per = f"{b / n:.2f}" if n else "-"
        share = f"{100 * b / total:.1f}%" if total else "-"
        out.append(f"{name:<18}{b:>10}{per:>12}{share:>8}")
    print("\n".join(out))
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_writable(path: str) -> None:
    parent = Path(path).parent
    if not parent.is_dir():
        raise OSError(f"cannot write {path}: folder {str(parent)!r} does not exist")
