"""The ``gscodec`` command: encode, decode and inspect .gsc files.

    gscodec encode photo.png photo.gsc --quality 60 --effort 4
    gscodec encode *.png -o out/            # several inputs: out/<stem>.gsc each
    gscodec decode photo.gsc photo.png --scale 0.5
    gscodec decode *.gsc -o out/ --format webp
    gscodec info photo.gsc [--json]
    gscodec convert photos/ photos-gsc/ --quality 50 --workers 2   # a tree, resumable (gscodec.batch)
    gscodec convert photos/ out/ --ray                              # the same on Ray
    gscodec inpaint photo.gsc mask.png filled.gsc                   # repaint the mask's white region

It never overwrites one of its inputs, refuses an output name that says another
format (encode writes .gsc; decode writes the image format of the extension), and
replaces an existing file only with ``-y``/``--force``. Every output is checked
(folder exists and is writable, not itself a folder) before the slow work starts.
With several inputs, a file that fails is reported and the others go on.

Errors are one line on stderr (``gscodec: error: ...``); the exit status is 2
for usage errors, 1 for unusable input or files (GscError, OSError, Pillow's
errors on reading or writing an image; with several inputs: any file failed), 3
for an internal error (a bug: ``--verbose`` shows its traceback), 130 when
interrupted. ``convert`` records a file that fails in its manifest, goes on, and exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from . import __version__
from .api import DEFAULT_QUALITY, check_destination, decode, encode, write_atomic
from .encoder.plan import DEFAULT_EFFORT, DEFAULT_INIT, INITS, MAX_EFFORT
from .errors import GscError
from .errors import is_user_error as _is_user_error
from .format.codec import stream_bits
from .format.constants import CONTEXT_BITS
from .format.container import HEADER_SIZE, parse, parse_header
from .format.symbols import STREAMS

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from tqdm import tqdm

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
    except Exception as exc:
        if _is_user_error(exc):
            return _fail(str(exc) or type(exc).__name__, 1)
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

    enc = sub.add_parser(
        "encode", parents=[common], help="compress images (any format Pillow reads) to .gsc",
        usage=f"{PROG} encode [options] IN OUT.gsc\n       {PROG} encode [options] IN... -o DIR",
        description="Compress IN to OUT.gsc, or each IN to DIR/<stem>.gsc with -o DIR.",
    )
    enc.add_argument("paths", nargs="+", metavar="IN...", help="image(s) to compress; without -o, IN then OUT.gsc")
    _add_output_options(enc, "OUT.gsc, or a folder: DIR/<stem>.gsc for each IN (needed for several inputs)")
    _add_rate_options(enc)
    enc.add_argument("-e", "--effort", type=_integer(0, MAX_EFFORT), default=DEFAULT_EFFORT,
                     help=f"0-{MAX_EFFORT}, more refinement (slower), default {DEFAULT_EFFORT}")
    enc.add_argument("--init", choices=INITS, default=DEFAULT_INIT,
                     help=f"where splats start: the trained predictor or detail placement (default {DEFAULT_INIT})")
    enc.add_argument("--drop-alpha", action="store_true", help="drop an alpha channel instead of failing")
    enc.add_argument("--seed", type=_integer(0, None), default=0, help="random seed of the encoder (default 0)")
    enc.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    enc.add_argument("--progress", action="store_true",
                     help="show the progress bar (elapsed time, ETA) even when stderr is not a terminal")
    enc.add_argument("--quiet", action="store_true", help="print neither progress nor summary")
    enc.set_defaults(run=_cmd_encode)

    dec = sub.add_parser(
        "decode", parents=[common], help="render .gsc files to images (format from the extension)",
        usage=f"{PROG} decode [options] IN.gsc OUT\n       {PROG} decode [options] IN... -o DIR [--format png]",
        description="Render IN to OUT (format from its extension), or each IN to DIR/<stem>.<format> with -o DIR.",
    )
    dec.add_argument("paths", nargs="+", metavar="IN...", help=".gsc file(s); without -o, IN then OUT (e.g. .png)")
    _add_output_options(dec, "OUT image, or a folder: DIR/<stem>.<format> for each IN (needed for several inputs)")
    dec.add_argument("--format", metavar="EXT", default=None,
                     help="image format to write under -o DIR, as an extension Pillow writes: png (default), "
                          "jpg, webp, tif, bmp...")
    dec.add_argument("-s", "--scale", type=_number(0, None), default=1.0, help="output size factor (default 1)")
    dec.add_argument("-l", "--layers", type=_integer(0, None), default=None, metavar="K",
                     help="decode only the first K layers (progressive preview)")
    dec.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    dec.add_argument("--quiet", action="store_true", help="print no summary")
    dec.set_defaults(run=_cmd_decode)

    conv = sub.add_parser(
        "convert", parents=[common], help="convert a folder tree, glob or list of images to .gsc (or back), "
                                          "resumably, on worker processes or Ray",
        usage=f"{PROG} convert [options] SRC DST",
        description="Convert every image of SRC to DST/<same path>.gsc (or, with --to png, every .gsc file to "
                    "an image), on worker processes or a Ray cluster. DST/gscodec-manifest.jsonl records each "
                    "file as it finishes: a rerun skips the files done with the same settings and retries "
                    "failures; Ctrl-C stops cleanly. A file that fails is reported and the others go on "
                    "(exit status 1).",
    )
    conv.add_argument("paths", nargs="+", metavar="SRC DST",
                      help="SRC: a folder (searched recursively), a quoted glob ('photos/**/*.jpg') or a .txt file "
                           "listing files one a line; DST: the output folder, mirroring SRC's tree")
    conv.add_argument("--to", default="gsc", metavar="FORMAT",
                      help="gsc (default: encode images), or an image format Pillow writes such as png: "
                           "decode .gsc files")
    _add_rate_options(conv)
    conv.add_argument("-e", "--effort", type=_integer(0, MAX_EFFORT), default=None,
                      help=f"0-{MAX_EFFORT}, more refinement (slower), default {DEFAULT_EFFORT}")
    conv.add_argument("--init", choices=INITS, default=None, help=f"where splats start (default {DEFAULT_INIT})")
    conv.add_argument("--drop-alpha", action="store_true", help="drop an alpha channel instead of failing the file")
    conv.add_argument("--seed", type=_integer(0, None), default=None, help="random seed of the encoder (default 0)")
    conv.add_argument("--device", default="cpu", help=_DEVICE_HELP + "; with --ray, cuda or auto run on the "
                                                      "cluster's GPUs")
    conv.add_argument("-j", "--workers", type=_integer(0, None), default=None, metavar="N",
                      help="worker processes (default: one per core; 0: none, convert in this process); with "
                           "--ray, the most files in flight (default: twice the cluster's CPUs or GPUs)")
    conv.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                      help="run on Ray (pip install 'gscodec[ray]'): the cluster at ADDRESS ('auto', "
                           "'ray://host:10001'), else RAY_ADDRESS, a cluster started on this machine, or a new "
                           "local one. SRC and DST must be paths every node sees. Put --ray after SRC DST, or "
                           "write --ray=ADDRESS")
    conv.add_argument("--gpus-per-task", type=_number(0, None), default=1.0, metavar="G",
                      help="with --ray on GPUs: Ray's num_gpus per file (default 1; 0.25 runs 4 files a GPU)")
    conv.add_argument("--progress", action="store_true",
                      help="show the progress bar (images/s, ETA) even when stderr is not a terminal")
    conv.add_argument("--quiet", action="store_true", help="print neither progress nor summary (failures still)")
    conv.set_defaults(run=_cmd_convert)

    inp = sub.add_parser(
        "inpaint", parents=[common], help="fill a region of a .gsc file with new splats (no pixel round trip)",
        usage=f"{PROG} inpaint [options] IN.gsc MASK OUT.gsc",
        description="Replace the splats of IN.gsc that reach MASK's white pixels (beyond a faint edge) with new "
                    "splats predicted from the rest of the image, and write OUT.gsc; every other splat is kept "
                    "as it was.",
    )
    inp.add_argument("input", metavar="IN.gsc")
    inp.add_argument("mask", metavar="MASK", help="an image of IN's size, white (nonzero) where to fill")
    inp.add_argument("output", metavar="OUT.gsc")
    inp.add_argument("-y", "--force", action="store_true", help="overwrite OUT.gsc if it exists")
    inp.add_argument("--weights", metavar="DIR", default=None, help="the inpainting model's folder "
                                                                    "(default: the weights installed with gscodec)")
    inp.add_argument("--extractor-checkpoint", metavar="PATH", default=None,
                     help="a local DINOv2 checkpoint, for models trained with one (loaded with timm)")
    inp.set_defaults(run=_cmd_inpaint)

    info = sub.add_parser("info", parents=[common], help="describe a .gsc file: size, layers, bits by attribute")
    info.add_argument("input", metavar="FILE", help=".gsc file")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(run=_cmd_info)
    return parser


def _add_output_options(parser: argparse.ArgumentParser, output_help: str) -> None:
    parser.add_argument("-o", "--output", metavar="OUT|DIR", default=None,
                        help=output_help + "; -o DIR: an existing folder (a trailing / says it is one)")
    parser.add_argument("-y", "--force", action="store_true",
                        help="replace existing output files (never an input); without it they are refused")


def _add_rate_options(parser: argparse.ArgumentParser) -> None:
    """-q, -b and --target-psnr: one of them (None where not given: the default quality)."""
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("-q", "--quality", type=_number(0, 100), default=None,
                      help=f"0-100, higher is larger and better (default {DEFAULT_QUALITY})")
    rate.add_argument("-b", "--target-bpp", type=_number(0, None), default=None, metavar="BPP",
                      help="search the quality that gives this many bits per pixel")
    rate.add_argument("--target-psnr", type=_number(0, None), default=None, metavar="DB",
                      help="search the quality whose decode has this PSNR-RGB (dB)")


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


# ---------------------------------------------------------------- planning outputs


@dataclass(frozen=True)
class Job:
    """One input file and the file the command writes for it."""

    source: Path
    target: Path


def plan_jobs(
    paths: Sequence[str], output: str | None, verb: str, check_name: Callable[[str], None], dir_suffix: str
) -> list[Job]:
    """The (input, output) pairs of ``IN OUT`` or ``IN... -o OUT|DIR``; UsageError for other forms.

    ``check_name(OUT)`` raises UsageError when an output name does not suit the command;
    under -o DIR each output is DIR/<input stem><dir_suffix>."""
    several = f"to {verb} several files use '{PROG} {verb} IN... -o DIR'"
    if output is None:
        if len(paths) == 1:
            raise UsageError(f"an output is required: '{PROG} {verb} IN OUT', or -o OUT|DIR")
        if len(paths) > 2:
            raise UsageError(f"{len(paths)} paths and no -o: {several}")
        check_name(paths[1])
        return [Job(Path(paths[0]), Path(paths[1]))]
    folder = Path(output)
    if not (folder.is_dir() or output.endswith(("/", os.sep))):
        if len(paths) > 1:
            raise UsageError(f"-o {output} is not a folder: {several} (an existing folder)")
        check_name(output)
        return [Job(Path(paths[0]), folder)]
    if not folder.is_dir():
        raise GscError(f"cannot write to {output}: folder does not exist")
    return [Job(Path(p), folder / (Path(p).stem + dir_suffix)) for p in paths]


def _check_gsc_name(name: str) -> None:
    """Encode writes .gsc: an OUT naming another format (or none) is refused, never overwritten."""
    from PIL import Image

    ext = os.path.splitext(name)[1].lower()
    if ext != ".gsc":
        formats = Image.registered_extensions()
        said = f"names a {formats[ext]} image" if ext in formats else "does not end in .gsc"
        raise UsageError(f"{name} {said}, but encode writes .gsc: give OUT.gsc, or -o DIR to encode several images")


def _file_keys(path: Path) -> list[object]:
    """What identifies the file at ``path``: its real path, and its device and inode when it
    exists (as os.path.samefile compares them: hard links too)."""
    keys: list[object] = [os.path.realpath(path)]
    with contextlib.suppress(OSError):
        st = os.stat(path)
        keys.append((st.st_dev, st.st_ino))
    return keys


def check_targets(jobs: list[Job], force: bool) -> list[Job]:
    """The jobs whose output may be written: not an input, not another job's output, a writable
    path, new unless ``force``. Each refusal is reported (or raised, for a single job)."""
    inputs = {key: job.source for job in jobs for key in _file_keys(job.source)}
    claimed: dict[str, Path] = {}

    def check(_: int, job: Job) -> None:
        source = next((inputs[k] for k in _file_keys(job.target) if k in inputs), None)
        if source is not None:
            raise GscError(f"{job.target} is an input of this command ({source}); refusing to overwrite it")
        key = os.path.realpath(job.target)
        if key in claimed:
            raise GscError(f"{job.target} is also the output for {claimed[key]}: rename one of the inputs")
        check_destination(job.target)
        if os.path.lexists(job.target) and not force:
            raise GscError(f"{job.target} exists; pass -y (--force) to replace it")
        claimed[key] = job.source

    return each(jobs, check, total=len(jobs))


def each(jobs: list[Job], step: Callable[[int, Job], None], total: int) -> list[Job]:
    """Run ``step(index, job)`` on every job; the jobs it succeeded on. With ``total`` 1 an
    error propagates (main reports it); with several files a user error is reported and the
    others go on, while a bug (internal error) stops the command."""
    done = []
    for index, job in enumerate(jobs):
        try:
            step(index, job)
        except Exception as exc:
            if total == 1 or not _is_user_error(exc):
                raise
            _report_error(str(exc) or type(exc).__name__)
        else:
            done.append(job)
    return done


def _report_error(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)  # keeps a bar intact


def _say(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)


def _finish(done: int, total: int) -> int:
    """Exit status of a command over ``total`` files of which ``done`` succeeded."""
    if done == total:
        return 0
    if total > 1:
        _report_error(f"{total - done} of {total} files failed")
    return 1


# ---------------------------------------------------------------- encode


def _cmd_encode(args: argparse.Namespace) -> int:
    from . import GscImagePlugin  # noqa: F401 - so that IN may itself be a .gsc file

    jobs = plan_jobs(args.paths, args.output, "encode", _check_gsc_name, ".gsc")
    ready = check_targets(jobs, args.force)
    show = bool(ready) and not args.quiet and (args.progress or sys.stderr.isatty())
    with _progress_bar(len(ready), show) as bar:
        step = lambda i, job: _encode_one(job, args, _file_progress(bar, i, len(ready), job.source.name))
        done = each(ready, step, total=len(jobs))
    return _finish(len(done), len(jobs))


@contextlib.contextmanager
def _progress_bar(files: int, show: bool) -> Iterator[tqdm]:
    """One tqdm bar on stderr over all files (each file's encode moves it by one), with
    elapsed time and ETA; log records go through tqdm so they do not break its line."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar_format = "{desc}{percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
    with tqdm(total=files, file=sys.stderr, disable=not show, bar_format=bar_format, dynamic_ncols=True) as bar:
        with logging_redirect_tqdm() if show else contextlib.nullcontext():
            yield bar


def _file_progress(bar: tqdm, index: int, files: int, name: str) -> Callable[[float], None]:
    """The encoder's progress callback (0..1) for file ``index`` of ``files``: moves ``bar``
    from index to index + 1, never backwards."""
    bar.set_description_str(f"{name} " if files == 1 else f"{index + 1}/{files} {name} ")

    def progress(fraction: float) -> None:
        position = index + min(max(float(fraction), 0.0), 1.0)
        if position > bar.n:
            bar.update(position - bar.n)

    return progress


def _encode_one(job: Job, args: argparse.Namespace, progress: Callable[[float], None]) -> None:
    with _open_image(job.source) as image:
        alpha = image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)
        if alpha and not args.drop_alpha:
            raise GscError(f"{job.source} has an alpha channel ({image.mode}), which .gsc cannot store; "
                           "pass --drop-alpha to drop it")
        start = time.perf_counter()
        try:
            data = encode(
                image, quality=DEFAULT_QUALITY if args.quality is None else args.quality, effort=args.effort,
                target_bpp=args.target_bpp, target_psnr=args.target_psnr, drop_alpha=args.drop_alpha,
                progress=progress, seed=args.seed, device=args.device, init=args.init,
            )
        except GscError as exc:
            raise GscError(f"{job.source}: {exc}") from None
    seconds = time.perf_counter() - start
    progress(1.0)
    write_atomic(job.target, data)
    if not args.quiet:
        header = parse_header(data)
        bpp = 8 * len(data) / (header.width * header.height)
        _say(f"{job.target}: {header.width}x{header.height}, {len(data)} bytes, {bpp:.3f} bpp, "
             f"{header.splat_count} splats, {seconds:.2f} s")


def _open_image(path: Path) -> PILImage.Image:
    """The image at ``path``, loaded (EXIF orientation is applied by encode)."""
    from PIL import Image

    try:
        image = Image.open(path)
    except OSError as exc:
        raise OSError(f"cannot open {path}: {exc.strerror}" if exc.strerror else str(exc)) from None
    try:
        image.load()
    except BaseException:
        image.close()
        raise
    return image


# ---------------------------------------------------------------- decode


def _cmd_decode(args: argparse.Namespace) -> int:
    suffix = ".png" if args.format is None else "." + args.format.lower().lstrip(".")
    wanted = None if args.format is None else _format_for(suffix, f"--format {args.format}")

    def check_name(name: str) -> None:
        fmt = _format_for(os.path.splitext(name)[1].lower(), f"the extension of {name!r}")
        if wanted is not None and fmt != wanted:
            raise UsageError(f"--format {args.format} disagrees with the extension of {name}")

    jobs = plan_jobs(args.paths, args.output, "decode", check_name, suffix)
    ready = check_targets(jobs, args.force)
    done = each(ready, lambda _, job: _decode_one(job, args), total=len(jobs))
    return _finish(len(done), len(jobs))


def _decode_one(job: Job, args: argparse.Namespace) -> None:
    from PIL import Image

    fmt = _format_for(job.target.suffix.lower(), f"the extension of {str(job.target)!r}")
    data = _read(str(job.source))
    start = time.perf_counter()
    try:
        pixels = decode(data, scale=args.scale, layers=args.layers, device=args.device)
    except GscError as exc:
        raise GscError(f"{job.source}: {exc}") from None
    seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format=fmt)
    write_atomic(job.target, buffer.getvalue())
    if not args.quiet:
        _say(f"{job.target}: {pixels.shape[1]}x{pixels.shape[0]}, {fmt}, {len(buffer.getvalue())} bytes, "
             f"decoded in {seconds:.2f} s")


def _format_for(ext: str, said_by: str) -> str:
    """Pillow's format name for the extension ``ext``; UsageError naming ``said_by`` (where the
    extension came from) when it is .gsc or Pillow cannot write it."""
    from PIL import Image

    if ext == ".gsc":
        raise UsageError(f"{said_by} names .gsc, but decode writes an image; use '{PROG} encode' to make a .gsc file")
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"{said_by} names no image format Pillow writes (try png, jpg, webp or tif)")
    return fmt


# ---------------------------------------------------------------- convert


def _cmd_convert(args: argparse.Namespace) -> int:
    from .batch import ConvertInterrupted, ConvertSummary, convert

    if len(args.paths) != 2:
        hint = (f" (--ray took {args.ray!r} as its ADDRESS: put --ray after SRC DST)"
                if isinstance(args.ray, str) and len(args.paths) == 1 else
                " (quote a glob, 'photos/*.jpg', so that the shell does not expand it)")
        raise UsageError(f"convert takes SRC and DST, got {len(args.paths)} path{'s' if len(args.paths) > 1 else ''}"
                         + hint)
    if args.to.lower().lstrip(".") != "gsc":
        given = [flag for flag, value in (("--quality", args.quality), ("--target-bpp", args.target_bpp),
                                          ("--target-psnr", args.target_psnr), ("--effort", args.effort),
                                          ("--init", args.init), ("--seed", args.seed),
                                          ("--drop-alpha", args.drop_alpha or None)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} apply to encoding (--to gsc) only")
    show = not args.quiet and (args.progress or sys.stderr.isatty())

    def report(rec: dict[str, object]) -> None:
        if rec["error"] is not None:
            _report_error(f"{rec['source']}: {rec['error']}")

    def finish(summary: ConvertSummary) -> None:
        if not args.quiet:
            _say(summary.report())

    with contextlib.ExitStack() as stack:
        if show:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
        try:
            summary = convert(
                args.paths[0], args.paths[1], to=args.to, quality=args.quality, target_bpp=args.target_bpp,
                target_psnr=args.target_psnr,
                effort=args.effort, init=args.init, seed=args.seed or 0, drop_alpha=args.drop_alpha,
                device=args.device, workers=args.workers, ray=args.ray, gpus_per_task=args.gpus_per_task,
                progress=show, on_file=report,
            )
        except ConvertInterrupted as exc:
            finish(exc.summary)
            return _fail("interrupted; run the same command again to continue", 130)
    finish(summary)
    if summary.failed:
        _report_error(f"{len(summary.failed)} of {summary.converted + len(summary.failed)} files failed "
                      f"(listed above and in {summary.manifest})")
        return 1
    return 0


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
        "format": "{}.{}".format(*header.version),
        "width": header.width,
        "height": header.height,
        "layers": [
            {"patch_size": int(c.params.patch_size), "splats": int(c.splat_count),
             "contexts": [name for name, bit in CONTEXT_BITS.items() if c.contexts & bit]} for c in chunks
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


# ---------------------------------------------------------------- inpaint


def _cmd_inpaint(args: argparse.Namespace) -> int:
    from .inpainting import inpaint_stream

    if not args.output.lower().endswith(".gsc"):
        raise UsageError(f"{args.output} does not end in .gsc: inpaint writes a .gsc file")
    out = Path(args.output)
    if out.exists() and not args.force:
        raise GscError(f"{out} exists (use -y to overwrite)")
    check_destination(out)
    data = _read(args.input)
    with _open_image(Path(args.mask)) as mask:
        result = inpaint_stream(data, mask, weights=args.weights, extractor_checkpoint=args.extractor_checkpoint)
    write_atomic(out, result)
    return 0


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
        ("format", str(d["format"])),
        ("image", f"{d['width']} x {d['height']} pixels"),
        ("layers", f"{len(layers)}: " + ", ".join(f"{x['patch_size']} px patches ({x['splats']} splats)"
                                                  for x in layers)),
        ("  contexts", "; ".join(", ".join(x["contexts"]) or "none" for x in layers)),
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

