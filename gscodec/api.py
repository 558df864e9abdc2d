"""The public functions: encode / decode like an image format (after imagecodecs).

Decoding on the CPU needs numpy, constriction and numba only; torch is imported when
encoding, or when rendering on CUDA.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .encoder.plan import DEFAULT_EFFORT, DEFAULT_INIT, INITS, MAX_EFFORT
from .errors import GscError
from .format.codec import decode_splats
from .format.constants import MAX_SIDE
from .format.container import check_size, parse_header
from .format.work import MAX_SCALE, MIN_SCALE, check_work
from .image import to_rgb_float
from .splats import Splats

log = logging.getLogger(__name__)

DEFAULT_QUALITY = 50


def encode(
    image: object,
    /,
    *,
    quality: float = DEFAULT_QUALITY,
    effort: int = DEFAULT_EFFORT,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    drop_alpha: bool = False,
    progress: Callable[[float], None] | None = None,
    seed: int = 0,
    device: str = "cpu",
    init: str = DEFAULT_INIT,
) -> bytes:
    """Compress an image to .gsc bytes.

    image: numpy array, PIL image or torch tensor (see `gscodec.image.to_rgb_float`).
    quality: 0-100, higher is larger and better. effort: 0-9, more refinement steps
    (encode time grows about linearly); above quality 50 every refining effort takes at least
    the default's steps, which grow with quality (4x at 100), so high qualities take longer.
    target_bpp: search quality for this rate
    instead (bits per pixel, from the file size); target_psnr: search quality for this
    PSNR-RGB of the 8-bit decode (dB). Either search runs quick encodes (effort 0, unpruned
    above effort 0), then one to three refinements at ``effort``, each finished with a few quantizer
    step sizes (for a PSNR, with the pruning's strength; `gscodec.encoder.rate`), and logs the
    quality chosen at INFO level. progress: called with 0..1.
    device: where the splats are fitted: "cpu", "cuda" / "cuda:N" (needs CuPy and a
    GPU: ``pip install gscodec[cuda]``) or "auto" (CUDA when `gscodec.has_cuda`, else
    the CPU). Devices round differently, so their files differ slightly; any decoder
    reads either. init: where the splats start: "predictor" (the default: the trained staged
    predictor, one pass per stage; effort 0 is the predictor alone) or "detail" (splats placed
    by image detail, the optimisation encoder's start, which needs refinement).
    """
    _check_options(quality, effort)
    if init not in INITS:
        raise GscError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if target_bpp is not None and target_psnr is not None:
        raise GscError("give target_bpp or target_psnr, not both")
    _check_targets(target_bpp, target_psnr)
    rgb = to_rgb_float(image, drop_alpha=drop_alpha)
    check_size(rgb.shape[1], rgb.shape[0])
    dev = resolve_device(device)
    from .encoder import pipeline, rate

    if target_bpp is not None:
        return rate.encode_to_rate(rgb, float(target_bpp), effort, progress, seed, dev, init)
    if target_psnr is not None:
        return rate.encode_to_psnr(rgb, float(target_psnr), effort, progress, seed, dev, init)
    return pipeline.encode_image(rgb, quality, effort, progress, seed, dev, init)


def _check_options(quality: object, effort: object) -> None:
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)) \
            or not 0 <= quality <= 100:
        raise GscError(f"quality must be a number in 0..100, got {quality!r}")
    if isinstance(effort, bool) or not isinstance(effort, (int, np.integer)) or not 0 <= effort <= MAX_EFFORT:
        raise GscError(f"effort must be an integer in 0..{MAX_EFFORT}, got {effort!r}")


def _check_targets(target_bpp: object, target_psnr: object) -> None:
    """GscError unless each target given is a positive, finite number."""
    for name, value in (("target_bpp", target_bpp), ("target_psnr", target_psnr)):
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if value is not None and not (number and 0 < value < math.inf):
            raise GscError(f"{name} must be a positive number, got {value!r}")


def decode(
    data: bytes, /, *, scale: float = 1.0, layers: int | None = None, device: str = "cpu"
) -> np.ndarray:
    """Decode .gsc bytes to an [H, W, 3] uint8 RGB array.

    scale: output size factor (thumbnails below 1, upscaling above; the output is
    round(H * scale) x round(W * scale)). layers: decode only the first layers
    (progressive decoding; 0 to the stream's layer count). scale lies in 2^-16..2^16 and
    the output within the format's size limits; a stream asking for more rendering work than
    SPEC 4.5 allows raises GscError before rendering. device: "cpu", "cuda" /
    "cuda:N" (needs CuPy and a GPU: ``pip install gscodec[cuda]``; see
    `gscodec.has_cuda`) or "auto" (CUDA when available, else the CPU). Every device
    gives the same image within +-1 per channel.
    """
    _check_scale(scale)
    dev = resolve_device(device)
    return render_image(decode_splats(data, layers=layers), scale=scale, device=dev)


def _check_scale(scale: object) -> None:
    ok = not isinstance(scale, bool) and isinstance(scale, (int, float, np.integer, np.floating))
    if ok and isinstance(scale, (int, np.integer)):
        ok = MIN_SCALE <= scale <= MAX_SCALE  # compared as integers: 10**400 is not a float
    elif ok:
        ok = math.isfinite(scale) and MIN_SCALE <= scale <= MAX_SCALE
    if not ok:
        text = repr(scale) if len(repr(scale)) < 40 else repr(scale)[:37] + "..."
        raise GscError(f"scale must be a number in {MIN_SCALE:g}..{MAX_SCALE:g}, got {text}")


def output_size(splats: Splats, scale: float) -> tuple[int, int]:
    """(height, width) of a render at ``scale``: round(H * scale) x round(W * scale), at least 1;
    GscError when it exceeds the format's limits."""
    _check_scale(scale)
    h, w = splats.height * scale, splats.width * scale
    if max(h, w) > 2 * MAX_SIDE:  # round() of a huge float is fine, but say it plainly
        raise GscError(f"scale {scale:g} gives {w:.0f} x {h:.0f} pixels, beyond the limit of {MAX_SIDE} per side")
    h, w = max(1, round(h)), max(1, round(w))
    check_size(w, h)
    return h, w


def render_image(splats: Splats, /, *, scale: float = 1.0, device: str = "cpu") -> np.ndarray:
    """Render splats to an [H, W, 3] uint8 RGB array at ``scale``.

    On the CPU this is the decoder's fused kernel (`gscodec.render.numba.decode`); on
    CUDA, `render_splats` then `to_uint8_rgb`, on the GPU. Both equal the reference
    within +-1 LSB. ``device`` as for `decode`.
    """
    if not isinstance(splats, Splats):
        raise GscError(f"render_image expects a gscodec.Splats, got {type(splats).__name__}")
    h, w = output_size(splats, scale)
    dev = resolve_device(device)
    check_work(splats, h, w, scale)
    if dev == "cpu":
        from .render.numba.decode import render_rgb

        return render_rgb(splats, h, w, scale=scale)
    from .render.backends import render_rgb8

    return render_rgb8(splats, h, w, scale=scale, device=dev)


def has_cuda() -> bool:
    """Whether ``device="cuda"`` can run: CuPy installed and a CUDA GPU visible (imports torch).
    `gscodec.render.cuda.cuda_status` says why not."""
    from .render.cuda import has_cuda as probe

    return probe()


def resolve_device(device: object) -> str:
    """"cpu", "cuda:N" for "cpu", "cuda", "cuda:N" or "auto"; GscError for anything else or a missing GPU.
    "auto" logs which device it chose and why."""
    if device == "cpu":
        return "cpu"
    if device == "auto":
        from .render.cuda import cuda_status

        ok, reason = cuda_status()
        chosen = "cuda:0" if ok else "cpu"
        log.info("device 'auto' chose %s (%s)", chosen, reason)
        return chosen
    if not isinstance(device, str) or not (device == "cuda" or (device.startswith("cuda:")
                                                                and device[5:].isdigit())):
        raise GscError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    from .render.cuda import cuda_status

    ok, reason = cuda_status()
    if not ok:
        raise GscError(f"device {device!r} is not available: {reason}. CUDA rendering needs CuPy and a CUDA GPU "
                       "(pip install gscodec[cuda]); use device='cpu'")
    import torch

    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise GscError(f"device {device!r} is not available ({torch.cuda.device_count()} CUDA devices)")
    return f"cuda:{index}"


def check(data: bytes, /) -> bool:
    """Whether ``data`` starts with a valid .gsc header (does not decode the rest)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    try:
        parse_header(bytes(data[:64]))
    except GscError:
        return False
    return True


def read(path: str | os.PathLike, /, **kwargs: object) -> np.ndarray:
    """Decode the .gsc file at ``path`` (keyword arguments as for `decode`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise GscError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GscError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode(data, **kwargs)  # type: ignore[arg-type]


def write(path: str | os.PathLike, image: object, /, **kwargs: object) -> int:
    """Encode ``image`` to ``path`` atomically (keyword arguments as for `encode`).

    Returns the number of bytes written. The destination is checked before encoding;
    the file appears whole or not at all.
    """
    check_destination(path)
    data = encode(image, **kwargs)  # type: ignore[arg-type]
    write_atomic(path, data)
    return len(data)


def check_destination(path: str | os.PathLike) -> None:
    """GscError unless ``path`` can be written as a file: a path, not a folder, in an existing folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise GscError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    target = Path(path)
    if target.is_dir():
        raise GscError(f"cannot write {path}: it is a folder")
    parent = target.parent
    if not parent.is_dir():
        raise GscError(f"cannot write {path}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GscError(f"cannot write {path}: folder {str(parent)!r} is not writable")


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to a temporary file beside ``path`` and rename it into place.

    The file gets the mode of the file it replaces, or 0666 less the umask for a new one
    (as ``open`` would give it); the temporary file never shows under the final name.
    """
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except OSError as exc:
        raise GscError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(target: Path) -> int:
    """The permission bits a write to ``target`` should leave: the existing file's, else 0o666 & ~umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask: from /proc on Linux (no change, so thread-safe), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask
