"""Batch conversion: a folder tree, a glob or a list of images to .gsc files (or .gsc files
back to images), on worker processes or a Ray cluster, resumable through a manifest.

    summary = gscodec.convert("photos", "photos-gsc", quality=50, effort=1)
    summary = gscodec.convert("photos/**/*.jpg", "out", ray=True)  # Ray: RAY_ADDRESS, a local one...
    print(summary.report())

The command is ``gscodec convert SRC DST`` (`gscodec.cli`). The module is ``batch``, not
``convert``: a module named like the function would shadow it as ``gscodec.convert``.

- SRC: a folder (searched recursively; dot-files and DST skipped), a glob (``**`` for any
  depth), a text file (.txt, .lst) listing files one a line (relative to its folder; blank
  lines and ``#`` comments skipped), or, from Python, a list of paths. DST mirrors the tree
  below SRC (a glob's folder before its first wildcard; a list's common folder) with
  each file's extension replaced by the output's (``a/b.jpg`` -> ``DST/a/b.gsc``).
- A folder or glob takes the files whose extension Pillow opens (without .gsc) when
  encoding, the .gsc files when decoding; other files are counted as ignored. A list's
  files are all tried.
- The manifest ``DST/gscodec-manifest.jsonl`` gets one JSON line per file as it finishes
  (`Task` fields, settings, output bytes, bpp, seconds, error). A rerun skips the files
  whose last record is a success with the same settings (`Settings.record`: every
  encoder option and the gscodec version), the same source size and mtime, and whose
  output is still there with its recorded size; failures are retried. Outputs are written
  atomically (`gscodec.api.write_atomic`); a rerun removes the temporary files a killed
  run left beside them.
- Workers: spawned processes (never forked: a fork after torch ran can deadlock), each
  loading the library once and running torch and numba on one thread, so that N workers
  use N cores. ``workers=0`` converts in the calling process. Encoding is deterministic
  (fixed seed), so every runner writes the same bytes.
- Ray (``pip install gscodec[ray]``; imported only then): one task per file, on paths
  every node sees (a shared filesystem mounted at the same path); GPUs through
  ``num_gpus`` with ``device="cuda"`` or ``"auto"``. The driver writes the manifest.

Like every use of spawned processes, a script calling `convert` must guard its entry
point with ``if __name__ == "__main__":`` (the workers import the main module).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import io
import json
import logging
import os
import re
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .api import DEFAULT_QUALITY, _check_options, _check_targets, decode, encode, write_atomic
from .encoder.plan import DEFAULT_EFFORT, DEFAULT_INIT, INITS
from .errors import GscError, is_user_error

log = logging.getLogger(__name__)

MANIFEST = "gscodec-manifest.jsonl"
LIST_SUFFIXES = (".txt", ".lst")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_MAGIC = re.compile(r"[*?[]")

Record = dict[str, Any]


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """What a conversion does to each file. ``to``: "gsc" (encode) or an image extension such
    as "png" (decode .gsc files); ``format`` is Pillow's name for it."""

    to: str = "gsc"
    quality: float | None = DEFAULT_QUALITY
    target_bpp: float | None = None
    target_psnr: float | None = None
    effort: int = DEFAULT_EFFORT
    init: str = DEFAULT_INIT
    seed: int = 0
    drop_alpha: bool = False
    device: str = "cpu"
    format: str | None = None

    @property
    def encoding(self) -> bool:
        return self.to == "gsc"

    @property
    def suffix(self) -> str:
        return "." + self.to

    def record(self) -> dict[str, Any]:
        """The manifest's ``settings``: everything that changes the output bytes."""
        from . import __version__

        if not self.encoding:
            return {"to": self.to, "device": self.device, "version": __version__}
        return {"to": "gsc", "quality": self.quality, "target_bpp": self.target_bpp,
                "target_psnr": self.target_psnr, "effort": self.effort,
                "init": self.init, "seed": self.seed, "drop_alpha": self.drop_alpha, "device": self.device,
                "version": __version__}


def make_settings(
    to: str = "gsc", quality: float | None = None, target_bpp: float | None = None, effort: int | None = None,
    init: str | None = None, seed: int = 0, drop_alpha: bool = False, device: str = "cpu",
    target_psnr: float | None = None,
) -> Settings:
    """Checked `Settings` (GscError for a bad option); encoder options with ``to`` other than gsc are refused."""
    if not isinstance(to, str) or not to:
        raise GscError(f"to must be 'gsc' or an image extension such as 'png', got {to!r}")
    to = to.lower().lstrip(".")
    if not isinstance(device, str):
        raise GscError(f"device must be a str, got {device!r}")
    if to != "gsc":
        given = [name for name, value in (("quality", quality), ("target_bpp", target_bpp),
                                          ("target_psnr", target_psnr), ("effort", effort), ("init", init))
                 if value is not None]
        given += [name for name, value in (("seed", seed), ("drop_alpha", drop_alpha)) if value]
        if given:
            raise GscError(f"{', '.join(given)} apply to encoding (to='gsc') only, not to decoding to {to}")
        return Settings(to=to, quality=None, device=device, format=_image_format(to))
    if sum(value is not None for value in (quality, target_bpp, target_psnr)) > 1:
        raise GscError("give one of quality, target_bpp and target_psnr")
    searched = target_bpp is not None or target_psnr is not None
    quality = None if searched else float(DEFAULT_QUALITY if quality is None else quality)
    effort = DEFAULT_EFFORT if effort is None else effort
    _check_options(DEFAULT_QUALITY if quality is None else quality, effort)
    _check_targets(target_bpp, target_psnr)
    init = DEFAULT_INIT if init is None else init
    if init not in INITS:
        raise GscError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GscError(f"seed must be an integer >= 0, got {seed!r}")
    return Settings(to="gsc", quality=quality, target_bpp=None if target_bpp is None else float(target_bpp),
                    target_psnr=None if target_psnr is None else float(target_psnr), effort=int(effort), init=init,
                    seed=seed, drop_alpha=bool(drop_alpha), device=device)


def _image_format(ext: str) -> str:
    """Pillow's format name for writing the extension ``ext`` (no dot); GscError if it writes none."""
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get("." + ext)
    if fmt is None or fmt not in Image.SAVE:
        raise GscError(f"to={ext!r}: neither gsc nor an image format Pillow writes (try png, webp, tif or jpg)")
    return fmt


@functools.lru_cache(maxsize=1)
def _pillow_extensions() -> frozenset[str]:
    """Extensions of the formats Pillow opens, lower case with the dot: not .gsc, not the
    stub formats that need a handler, not MPEG (Pillow reads its size, not its pixels)."""
    from PIL import Image, ImageFile

    Image.init()
    out = set()
    for ext, fmt in Image.registered_extensions().items():
        factory = Image.OPEN.get(fmt, (None,))[0]
        stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
        if factory is not None and fmt != "MPEG" and not stub:
            out.add(ext.lower())
    return frozenset(out - {".gsc"})


# ---------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class Task:
    """One file to convert. ``key``: the source relative to the source root, with / (the
    manifest's "source"); ``output``: the output relative to DST; ``source`` and ``target``:
    absolute paths; ``size`` (bytes) and ``mtime`` (seconds) of the source when planned,
    None when it could not be read."""

    key: str
    source: str
    output: str
    target: str
    size: int | None
    mtime: float | None


@dataclass
class Plan:
    """The files of a conversion: ``tasks`` to run; ``refused``: records of files that cannot be
    converted as planned (two sources for one output); ``ignored``: files passed over (not images)."""

    root: Path
    tasks: list[Task]
    refused: list[Record]
    ignored: int


def plan(src: str | os.PathLike | Sequence[str | os.PathLike], dst: str | os.PathLike, settings: Settings) -> Plan:
    """The tasks that convert ``src`` into ``dst`` (see the module docstring for what SRC may be)."""
    dst_path = Path(os.path.abspath(dst))
    root, files, ignored = _sources(src, dst_path, settings)
    tasks: list[Task] = []
    refused: list[Record] = []
    claimed: dict[str, str] = {}
    for path in files:
        key = Path(os.path.relpath(path, root)).as_posix()
        output = Path(key).with_suffix(settings.suffix).as_posix() if Path(key).suffix \
            else key + settings.suffix
        size, mtime = _stat(path)
        task = Task(key, str(path), output, str(dst_path / output), size, mtime)
        if Path(key).suffix.lower() == settings.suffix:
            refused.append(_refusal(task, settings, f"already a {settings.suffix} file, the output format"))
        elif output in claimed:
            refused.append(_refusal(task, settings, f"its output {output} is also the output of {claimed[output]}; "
                                                    "rename one of them"))
        else:
            claimed[output] = key
            tasks.append(task)
    return Plan(root, tasks, refused, ignored)


def _sources(src: object, dst: Path, settings: Settings) -> tuple[Path, list[Path], int]:
    """(root, absolute source paths in order, count of ignored files) for any form of SRC."""
    if isinstance(src, (list, tuple)):
        return _listed([Path(os.path.abspath(p)) for p in src])
    if not isinstance(src, (str, os.PathLike)):
        raise GscError(f"src must be a path, a glob or a list of paths, got {type(src).__name__}")
    text = os.fspath(src)
    path = Path(text)
    if path.is_dir():
        root = Path(os.path.abspath(path))
        if _same_file(root, dst):
            raise GscError(f"DST {dst} is SRC itself: give another folder (it may lie inside SRC)")
        return _filtered(root, _walk(root, dst), settings)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _listed(_read_list(path))
    if path.is_file() or path.is_symlink():
        return _listed([Path(os.path.abspath(path))])
    if _MAGIC.search(text):
        root = _glob_root(text)
        matches = (Path(os.path.abspath(p)) for p in sorted(glob.glob(text, recursive=True)))
        dst_real = os.path.realpath(dst)
        files = [p for p in matches if (p.is_file() or p.is_symlink()) and not _inside(p, dst_real)]
        return _filtered(root, files, settings)
    raise GscError(f"SRC {text} does not exist (give a folder, a glob, a .txt list of files or a file)")


def _walk(root: Path, dst: Path) -> Iterator[Path]:
    """Files below ``root`` in sorted order, skipping dot-files, dot-folders and the folder ``dst``."""
    dst_real = os.path.realpath(dst)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(folder, d)) != dst_real)
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _filtered(root: Path, paths: Iterable[Path], settings: Settings) -> tuple[Path, list[Path], int]:
    """The paths a folder or glob converts (by extension), and how many it ignores."""
    wanted = _pillow_extensions() if settings.encoding else frozenset({".gsc"})
    kept, ignored = [], 0
    for p in paths:
        if p.suffix.lower() in wanted:
            kept.append(p)
        else:
            ignored += 1
            log.debug("ignored %s (not a %s)", p, "image Pillow opens" if settings.encoding else ".gsc file")
    return root, kept, ignored


def _listed(paths: list[Path]) -> tuple[Path, list[Path], int]:
    """A list's files (duplicates dropped), rooted at their common folder."""
    if not paths:
        raise GscError("the list of files is empty")
    unique = list(dict.fromkeys(paths))
    root = Path(os.path.commonpath([str(p.parent) for p in unique]))
    return root, unique, 0


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GscError(f"cannot read the list {path}: {exc}") from None
    base = path.parent
    entries = [line.strip() for line in lines]
    return [Path(os.path.abspath(base / e)) for e in entries if e and not e.startswith("#")]


def _glob_root(pattern: str) -> Path:
    """The folder of a glob before its first wildcard ("photos/**/*.jpg" -> photos)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _MAGIC.search(part):
            break
        fixed.append(part)
    return Path(os.path.abspath(Path(*fixed) if fixed else Path(".")))


def _inside(path: Path, folder_real: str) -> bool:
    real = os.path.realpath(path.parent)
    return real == folder_real or real.startswith(folder_real.rstrip(os.sep) + os.sep)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _stat(path: Path) -> tuple[int | None, float | None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime


def _refusal(task: Task, settings: Settings, error: str) -> Record:
    rec = _record(task, settings)
    rec["error"] = error
    return rec


def _record(task: Task, settings: Settings) -> Record:
    return {"source": task.key, "output": task.output, "size": task.size, "mtime": task.mtime,
            "settings": settings.record(), "bytes": None, "bpp": None, "width": None, "height": None,
            "time": None, "error": None}


# ---------------------------------------------------------------- one file (in a worker)


def convert_file(task: Task, settings: Settings) -> Record:
    """Convert one file and write its output atomically; returns its manifest record. Any
    error is recorded in it (``error``; ``traceback`` too for an internal error), never raised;
    KeyboardInterrupt and SystemExit pass."""
    rec = _record(task, settings)
    rec["host"] = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    try:
        if settings.encoding:
            data, width, height = _encode_file(task.source, settings)
            gsc_bytes = len(data)
        else:
            data, width, height, gsc_bytes = _decode_file(task.source, settings)
        write_atomic(task.target, data)
    except Exception as exc:
        rec["error"] = describe_error(exc, task)
        if not is_user_error(exc) and not isinstance(exc, MemoryError):
            rec["traceback"] = traceback.format_exc()
    else:
        rec.update(bytes=len(data), bpp=round(8 * gsc_bytes / (width * height), 6), width=width, height=height)
    rec["time"] = round(time.perf_counter() - start, 4)
    return rec


def _encode_file(path: str, settings: Settings) -> tuple[bytes, int, int]:
    from PIL import Image

    from .format.container import parse_header

    with Image.open(path) as image:
        image.load()
        if (image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)) \
                and not settings.drop_alpha:
            raise GscError(f"the image has an alpha channel ({image.mode}), which .gsc cannot store; "
                           "convert with --drop-alpha (drop_alpha=True) to drop it")
        data = encode(image, quality=DEFAULT_QUALITY if settings.quality is None else settings.quality,
                      effort=settings.effort, target_bpp=settings.target_bpp, target_psnr=settings.target_psnr,
                      drop_alpha=settings.drop_alpha,
                      seed=settings.seed, device=settings.device, init=settings.init)
    header = parse_header(data)
    return data, header.width, header.height


def _decode_file(path: str, settings: Settings) -> tuple[bytes, int, int, int]:
    from PIL import Image

    data = Path(path).read_bytes()
    pixels = decode(data, device=settings.device)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format=settings.format)
    return buffer.getvalue(), pixels.shape[1], pixels.shape[0], len(data)


def describe_error(exc: BaseException, task: Task | None = None) -> str:
    """One line saying what went wrong: gscodec's or Pillow's message, an OSError's reason
    (naming the file unless it is the source), or "internal error (...)" for a bug."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename not in (None, getattr(task, "source", None)) else None
        return f"{exc.strerror}: {name}" if name else exc.strerror
    text = " ".join(str(exc).split()) or type(exc).__name__
    if is_user_error(exc):
        return text
    return f"internal error ({type(exc).__name__}: {text})"


_READY: bool | None = None


def setup_worker(encoding: bool, own_signals: bool = True) -> None:
    """Prepare a worker process (idempotent): numba and torch on one thread each, so that N
    workers use N cores (torch is loaded only for encoding; decoding never needs it), and the
    library loaded once. ``own_signals`` (worker processes of the local pool): Ctrl-C is left
    to the parent, and SIGTERM, by which the parent stops it, ends the worker, a write in
    progress first removing its temporary file."""
    global _READY
    if own_signals:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _READY is None or (encoding and not _READY):
        _load(encoding)
        _READY = encoding
    if own_signals:
        signal.signal(signal.SIGTERM, _terminate)  # after loading: a worker stopped while starting just ends


def _load(encoding: bool) -> None:
    import numba

    numba.set_num_threads(1)
    from .render.numba import decode as _decoder  # noqa: F401 - compiled kernels, loaded once

    if encoding:
        import torch

        torch.set_num_threads(1)
        with contextlib.suppress(RuntimeError):  # only possible before torch's first parallel op
            torch.set_num_interop_threads(1)
        from .encoder import pipeline  # noqa: F401


_BUSY = False  # a pool worker is converting a file


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM in a pool worker: interrupt a conversion (its write removes its temporary file),
    or end an idle worker at once."""
    if _BUSY:
        raise KeyboardInterrupt(f"signal {signum}")
    os._exit(128 + signum)


def _pool_convert_file(task: Task, settings: Settings) -> Record:
    """`convert_file` in a pool worker; the worker ends when the parent stops it mid-file."""
    global _BUSY
    _BUSY = True
    try:
        return convert_file(task, settings)
    except KeyboardInterrupt:  # only SIGTERM raises it here: SIGINT is ignored
        os._exit(128 + signal.SIGTERM)
    finally:
        _BUSY = False


def _ray_convert_file(task: Task, settings: Settings) -> Record:
    """`convert_file` in a Ray task: the worker is prepared at its first task (Ray keeps its signals)."""
    setup_worker(settings.encoding, own_signals=False)
    return convert_file(task, settings)


# ---------------------------------------------------------------- the manifest


class Manifest:
    """``DST/gscodec-manifest.jsonl``, held with an exclusive lock while a conversion runs:
    what the last record of each source says (kept compact: a million files fit), and
    appends (one flushed line per file)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST
        self._file: IO[str] | None = None
        # source -> (succeeded, settings as JSON, output, size, mtime, output bytes, bpp)
        self.last: dict[str, tuple[bool, str, object, object, object, object, object]] = {}
        self._settings: dict[str, str] = {}  # one string per distinct settings

    def __enter__(self) -> Manifest:
        try:  # surrogateescape: undecodable bytes (a damaged file) make a bad line, not an error
            self._file = open(self.path, "a+", encoding="utf-8", errors="surrogateescape")  # closed in __exit__
        except OSError as exc:
            raise GscError(f"cannot write the manifest {self.path}: {exc.strerror or exc}") from None
        self._lock()
        self._file.seek(0)
        line = ""
        for line in self._file:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill: that file is done again
            if isinstance(rec, dict) and isinstance(rec.get("source"), str):
                self._remember(rec)
        self._file.seek(0, os.SEEK_END)
        if line and not line.endswith("\n"):
            self._file.write("\n")
        return self

    def _remember(self, rec: Record) -> None:
        settings = self.settings_key(rec.get("settings"))  # type: ignore[arg-type]
        settings = self._settings.setdefault(settings, settings)
        self.last[rec["source"]] = (rec.get("error") is None, settings, rec.get("output"), rec.get("size"),
                                    rec.get("mtime"), rec.get("bytes"), rec.get("bpp"))

    def _lock(self) -> None:
        assert self._file is not None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise GscError(f"{self.path.parent} is in use by another conversion (its manifest is locked); "
                           "wait for it to finish") from None
        except OSError as exc:  # a filesystem without locks: go on, unprotected
            log.warning("cannot lock %s (%s); do not run two conversions into one folder", self.path, exc)

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    @staticmethod
    def settings_key(settings: dict[str, Any]) -> str:
        """How `done` compares settings: as JSON with sorted keys."""
        return json.dumps(settings, sort_keys=True)

    def done(self, task: Task, settings_key: str) -> Record | None:
        """What the manifest says of ``task`` if converting it again is unnecessary: its last
        record is a success with these settings (`settings_key`), this source size and mtime,
        and its output is still there at its size. None otherwise."""
        entry = self.last.get(task.key)
        if entry is None:
            return None
        ok, used, output, size, mtime, nbytes, bpp = entry
        if not ok or used != settings_key or output != task.output \
                or task.size is None or size != task.size or mtime != task.mtime:
            return None
        try:
            if os.stat(task.target).st_size != nbytes:
                return None
        except OSError:
            return None
        return {"source": task.key, "size": size, "bytes": nbytes, "bpp": bpp, "error": None}

    def write(self, rec: Record) -> None:
        assert self._file is not None
        self._file.write(json.dumps(rec) + "\n")  # ASCII: names that are not UTF-8 are escaped, not fatal
        self._file.flush()
        self._remember(rec)


# ---------------------------------------------------------------- summary


@dataclass
class ConvertSummary:
    """What a conversion did. ``done``: files converted now; ``skipped``: converted before with
    the same settings (found in the manifest); ``failed``: (source, reason) of the files that
    failed now; ``ignored``: files of a folder or glob that are not inputs (not images, or not
    .gsc files when decoding). ``bytes_in``, ``bytes_out`` and ``mean_bpp`` cover every file
    converted (done and skipped); bpp is the .gsc file's (the output when encoding, the input
    when decoding), its mean taken over files. ``seconds``: wall time of this run."""

    manifest: Path
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    runner: str = ""
    _bpp_sum: float = 0.0

    @property
    def ok(self) -> bool:
        """No file failed and the run was not interrupted."""
        return not self.failed and not self.interrupted

    @property
    def converted(self) -> int:
        return self.done + self.skipped

    @property
    def mean_bpp(self) -> float | None:
        return self._bpp_sum / self.converted if self.converted else None

    @property
    def images_per_second(self) -> float | None:
        return self.done / self.seconds if self.seconds > 0 else None

    def add(self, rec: Record, skipped: bool = False) -> None:
        if rec.get("error") is not None:
            self.failed.append((rec["source"], rec["error"]))
            return
        if skipped:
            self.skipped += 1
        else:
            self.done += 1
        self.bytes_in += rec.get("size") or 0
        self.bytes_out += rec.get("bytes") or 0
        self._bpp_sum += rec.get("bpp") or 0.0

    def report(self, max_failures: int = 20) -> str:
        """The summary as lines of text (the failures after it, at most ``max_failures``)."""
        lines = [f"done {self.done}, skipped {self.skipped} (done before with these settings), "
                 f"failed {len(self.failed)}, ignored {self.ignored} (not inputs)"
                 + (" - interrupted" if self.interrupted else "")]
        if self.converted:
            lines.append(f"{self.converted} files: {self.bytes_in:,} bytes in, {self.bytes_out:,} bytes out, "
                         f"mean {self.mean_bpp:.4f} bpp")
        rate = self.images_per_second
        lines.append(f"{self.seconds:.1f} s" + (f", {rate:.3g} images/s" if rate and self.done else "")
                     + (f" ({self.runner})" if self.runner else ""))
        if self.failed:
            lines.append(f"failed ({len(self.failed)}):")
            lines += [f"  {source}: {reason}" for source, reason in self.failed[:max_failures]]
            if len(self.failed) > max_failures:
                lines.append(f"  ... and {len(self.failed) - max_failures} more: the records with an error in "
                             f"{self.manifest}")
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


class ConvertInterrupted(KeyboardInterrupt):
    """Raised by `convert` on Ctrl-C once its workers are stopped and the manifest is closed;
    ``summary`` says what was done. A rerun continues where it stopped."""

    def __init__(self, summary: ConvertSummary) -> None:
        super().__init__("conversion interrupted")
        self.summary = summary


# ---------------------------------------------------------------- the conversion


def convert(
    src: str | os.PathLike | Sequence[str | os.PathLike],
    dst: str | os.PathLike,
    /,
    *,
    to: str = "gsc",
    quality: float | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    effort: int | None = None,
    init: str | None = None,
    seed: int = 0,
    drop_alpha: bool = False,
    device: str = "cpu",
    workers: int | None = None,
    ray: bool | str = False,
    gpus_per_task: float = 1.0,
    progress: bool = False,
    on_file: Callable[[Record], None] | None = None,
) -> ConvertSummary:
    """Convert ``src`` (a folder, glob, list file or list of paths) into the folder ``dst``,
    mirroring its tree; resumable (see the module docstring). Returns a `ConvertSummary`;
    files that fail are in its ``failed`` and in the manifest, never raised. Raises GscError
    for bad options or an unusable SRC/DST, `ConvertInterrupted` on Ctrl-C.

    to: "gsc" (encode) or an image extension ("png"...: decode .gsc files). quality,
    target_bpp, target_psnr, effort, init, seed, drop_alpha, device: as for `gscodec.encode` (device also
    for decoding). workers: processes (default: one per core; 0: in this process); with Ray,
    the most tasks at a time (default: twice the cluster's CPUs, or GPUs). ray: False (local
    processes), True (Ray as ``ray.init()`` finds it: an initialized one, RAY_ADDRESS, a
    local cluster, else a new local instance) or an address ("auto", "ray://host:10001").
    gpus_per_task: Ray's ``num_gpus`` per task when on GPUs. progress: a tqdm bar on stderr
    (images/s, ETA). on_file: called in this process with each file's record as it finishes.
    """
    start = time.perf_counter()
    settings = make_settings(to, quality, target_bpp, effort, init, seed, drop_alpha, device, target_psnr)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise GscError(f"workers must be an integer >= 0, got {workers!r}")
    if not isinstance(ray, (bool, str)):
        raise GscError(f"ray must be True, False or an address, got {ray!r}")
    dst_path = Path(dst)
    if dst_path.exists() and not dst_path.is_dir():
        raise GscError(f"DST {dst} is not a folder")
    work = plan(src, dst_path, settings)
    if not work.tasks and not work.refused:
        raise GscError(f"no files to convert in {os.fspath(src) if not isinstance(src, (list, tuple)) else 'the list'}"
                       f" ({work.ignored} ignored: not {'images Pillow opens' if settings.encoding else '.gsc files'})")
    if not ray and settings.device != "cpu":
        from .api import resolve_device

        resolve_device(settings.device)  # fails here, once, rather than in every worker
    try:
        dst_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GscError(f"cannot make DST {dst}: {exc.strerror or exc}") from None

    with Manifest(dst_path) as manifest:
        summary = ConvertSummary(manifest.path, ignored=work.ignored)
        settings_key = manifest.settings_key(settings.record())
        todo = []
        for task in work.tasks:
            rec = manifest.done(task, settings_key)
            if rec is None:
                todo.append(task)
            else:
                summary.add(rec, skipped=True)

        def finished(rec: Record) -> None:
            rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            manifest.write(rec)
            summary.add(rec)
            if rec["error"] is not None:
                log.info("%s failed: %s", rec["source"], rec["error"])
            if on_file is not None:
                on_file(rec)

        for rec in work.refused:
            finished(rec)
        todo = _make_folders(todo, settings, finished)
        _remove_temporary_files(work.tasks)
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="convert", unit="img", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)

        def result(rec: Record) -> None:
            finished(rec)
            bar.update(1)

        try:
            if todo and ray:
                summary.runner = "Ray"
                summary.runner = _run_ray(todo, settings, ray if isinstance(ray, str) else None, workers,
                                          gpus_per_task, result)
            elif todo and workers == 0:
                summary.runner = "in this process"
                for task in todo:
                    result(convert_file(task, settings))
            elif todo:
                n = min(workers or _cpu_count(), len(todo))
                summary.runner = f"{n} worker process{'es' if n > 1 else ''}"
                _run_local(todo, settings, n, result)
        except KeyboardInterrupt:
            _remove_temporary_files(todo)
            summary.interrupted = True
            summary.seconds = time.perf_counter() - start
            raise ConvertInterrupted(summary) from None
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _make_folders(tasks: list[Task], settings: Settings, failed: Callable[[Record], None]) -> list[Task]:
    """Make every output folder (in this process, before the workers start); the tasks whose
    folder could be made. The others are recorded as failed."""
    made: dict[str, str | None] = {}
    ok = []
    for task in tasks:
        folder = os.path.dirname(task.target)
        if folder not in made:
            try:
                os.makedirs(folder, exist_ok=True)
                made[folder] = None
            except OSError as exc:
                made[folder] = f"cannot make the output folder: {exc.strerror or exc}"
        if made[folder] is None:
            ok.append(task)
        else:
            failed(_refusal(task, settings, str(made[folder])))
    return ok


def _remove_temporary_files(tasks: list[Task]) -> None:
    """Remove what `write_atomic` leaves beside an output when its process is killed mid-write
    (``.<name>.<random>.tmp``), for the outputs of ``tasks`` only."""
    names: dict[str, set[str]] = {}
    for task in tasks:
        folder, name = os.path.split(task.target)
        names.setdefault(folder, set()).add(name)
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp") \
                    and entry.name[1:-4].rpartition(".")[0] in wanted:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    log.info("removed %s, left by an interrupted write", entry.path)


# ---------------------------------------------------------------- runners


_WORKER_DIED = ("a worker process died while converting this file or another one at the same time (killed, "
                "out of memory, or a crash); a rerun retries it")


def _run_local(tasks: list[Task], settings: Settings, workers: int, result: Callable[[Record], None]) -> None:
    """Run the tasks on ``workers`` spawned processes, at most two per worker queued at a time.
    A worker that dies (killed, out of memory) fails the files it and the others had in hand
    (no telling which one killed it) and the pool is started again; GscError when the pool
    breaks twice with no file converted in between (workers that cannot start)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    queue = iter(tasks)
    pending: dict[Future[Record], Task] = {}

    def start() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=context, initializer=setup_worker,
                                   initargs=(settings.encoding,))

    pool = start()
    converted_since_break = True
    try:
        while True:
            while len(pending) < 2 * workers and (task := next(queue, None)) is not None:
                pending[pool.submit(_pool_convert_file, task, settings)] = task
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                task = pending.pop(future)
                try:
                    rec = future.result()
                except BrokenProcessPool:
                    broken = True
                    rec = _refusal(task, settings, _WORKER_DIED)
                converted_since_break |= rec["error"] is None
                result(rec)
            if broken:
                if not converted_since_break:
                    raise GscError("the worker processes keep dying before converting any file; run with "
                                   "--workers 0 (workers=0) to see why")
                converted_since_break = False
                for future, task in list(pending.items()):  # all of them fail the same way
                    del pending[future]
                    result(_refusal(task, settings, _WORKER_DIED))
                pool.shutdown(wait=True, cancel_futures=True)
                pool = start()
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool: Any) -> None:
    """Stop a ProcessPoolExecutor now: queued files dropped, the workers ended by SIGTERM (a
    write in progress removes its temporary file first, see `setup_worker`), then killed if
    they linger."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


def _run_ray(tasks: list[Task], settings: Settings, address: str | None, limit: int | None, gpus_per_task: float,
             result: Callable[[Record], None]) -> str:
    """Run the tasks as Ray tasks (one per file), at most ``limit`` at a time (default twice
    the cluster's CPUs, or GPUs / gpus_per_task); Ray started here is shut down here."""
    try:
        import ray
    except ImportError:
        raise GscError("--ray needs Ray: pip install 'gscodec[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    pending: dict[Any, Task] = {}
    try:
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        device = settings.device
        if device.startswith("cuda:"):
            raise GscError(f"device {device!r} with Ray: use device='cuda' (Ray gives each task its GPU)")
        if device == "cuda" and not gpus:
            raise GscError("device 'cuda' but the Ray cluster has no GPUs; use device='cpu' or 'auto'")
        on_gpu = bool(gpus) and device in ("cuda", "auto")
        if not 0 < gpus_per_task <= max(gpus, 1):
            raise GscError(f"gpus_per_task must lie in (0, {max(gpus, 1):g}], got {gpus_per_task!r}")
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 1}
        if on_gpu:
            options["num_gpus"] = gpus_per_task
            settings_run = dataclasses.replace(settings, device="cuda")  # the record keeps the user's
        else:
            settings_run = settings
        remote = ray.remote(_ray_convert_file).options(**options)
        slots = gpus / gpus_per_task if on_gpu else resources.get("CPU", 1)
        window = limit or max(2, int(2 * slots))
        queue = iter(tasks)
        while True:
            while len(pending) < window and (task := next(queue, None)) is not None:
                pending[remote.remote(task, settings_run)] = task
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    rec = ray.get(ref)
                    rec["settings"] = settings.record()
                except ray.exceptions.RayError as exc:
                    rec = _refusal(task, settings, f"Ray: {' '.join(str(exc).split())[:500]}")
                result(rec)
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise
    finally:
        if started:
            ray.shutdown()
    where = f"{gpus:g} GPUs, {gpus_per_task:g} a task" if on_gpu else f"{resources.get('CPU', 0):g} CPUs"
    return f"Ray ({where})"
