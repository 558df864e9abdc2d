"""The public functions: encode / decode like an image format (after imagecodecs)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .codec import decode_splats, encode_splats
from .container import check_size, parse_header
from .encoder import DEFAULT_EFFORT, EFFORT_ITERATIONS, fit_image
from .errors import GscError
from .image import to_rgb_float
from .render import render_splats, to_uint8_rgb
from .render_cuda import has_cuda
from .splats import Splats

DEFAULT_QUALITY = 50
MAX_EFFORT = len(EFFORT_ITERATIONS) - 1


def encode(
    image: object,
    /,
    *,
    quality: float = DEFAULT_QUALITY,
    effort: int = DEFAULT_EFFORT,
    target_bpp: float | None = None,
    drop_alpha: bool = False,
    progress: Callable[[float], None] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> bytes:
    """Compress an image to .gsc bytes.

    image: numpy array, PIL image or torch tensor (see `gscodec.image.to_rgb_float`).
    quality: 0-100, higher is larger and better. effort: 0-9, more refinement steps
    (encode time grows about linearly). target_bpp: search quality for this rate
    instead (bits per pixel, from the file size). progress: called with 0..1.
    device: where the splats are fitted: "cpu", "cuda" / "cuda:N" (needs CuPy and a
    GPU: ``pip install gscodec[cuda]``) or "auto" (CUDA when `gscodec.has_cuda`, else
    the CPU). Devices round differently, so their files differ slightly; any decoder
    reads either.
    """
    rgb = to_rgb_float(image, drop_alpha=drop_alpha)
    _check_options(quality, effort)
    check_size(rgb.shape[1], rgb.shape[0])
    dev = _render_device(device)
    if target_bpp is not None:
        return _encode_to_rate(rgb, float(target_bpp), effort, progress, seed, dev)
    splats = fit_image(rgb, quality, effort, progress, seed, dev)
    return encode_splats(splats, quality=quality)


def _check_options(quality: object, effort: object) -> None:
    if not isinstance(quality, (int, float)) or not 0 <= quality <= 100:
        raise GscError(f"quality must be a number in 0..100, got {quality!r}")
    if not isinstance(effort, (int, np.integer)) or not 0 <= effort <= MAX_EFFORT:
        raise GscError(f"effort must be an integer in 0..{MAX_EFFORT}, got {effort!r}")


def _encode_to_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress, seed: int,
                    dev: torch.device) -> bytes:
    """Bisect quality with quick encodes (the first half of the progress), then encode
    once at the requested effort (the second half)."""
    if not target_bpp > 0:
        raise GscError(f"target_bpp must be positive, got {target_bpp}")
    report = progress or (lambda _: None)
    h, w = rgb.shape[:2]
    lo, hi = 0.0, 100.0
    rounds = 6
    for i in range(rounds):
        mid = (lo + hi) / 2
        bpp = 8 * len(encode_splats(fit_image(rgb, mid, 0, None, seed, dev), quality=mid)) / (h * w)
        lo, hi = (mid, hi) if bpp < target_bpp else (lo, mid)
        report(0.5 * (i + 1) / rounds)
    return encode(rgb, quality=lo, effort=effort, progress=lambda f: report(0.5 + 0.5 * f), seed=seed,
                  device=str(dev))


def decode(
    data: bytes, /, *, scale: float = 1.0, layers: int | None = None, device: str = "cpu"
) -> np.ndarray:
    """Decode .gsc bytes to an [H, W, 3] uint8 RGB array.

    scale: output size factor (thumbnails below 1, upscaling above; the output is
    round(H * scale) x round(W * scale)). layers: decode only the first layers
    (progressive decoding). device: "cpu", "cuda" / "cuda:N" (needs CuPy and a GPU:
    ``pip install gscodec[cuda]``; see `gscodec.has_cuda`) or "auto" (CUDA when
    available, else the CPU). Every device gives the same image within +-1 per channel.
    """
    return render(decode_splats(data, layers=layers), scale=scale, device=device)


def render(splats: Splats, /, *, scale: float = 1.0, device: str = "cpu") -> np.ndarray:
    """Render splats to an [H, W, 3] uint8 RGB array at ``scale``.

    On the CPU this is the decoder's fused kernel (`gscodec.decode_numba`); on CUDA,
    `render_splats` then `to_uint8_rgb`, on the GPU. Both equal the reference within
    +-1 LSB. ``device`` as for `decode`.
    """
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise GscError(f"scale must be a positive number, got {scale!r}")
    dev = _render_device(device)
    h, w = max(1, round(splats.height * scale)), max(1, round(splats.width * scale))
    check_size(w, h)
    if dev.type == "cpu":
        from .decode_numba import render_rgb

        return render_rgb(splats, h, w, scale=scale)
    return _render_tensors(splats, h, w, scale, dev, "auto")


def _render_tensors(splats: Splats, h: int, w: int, scale: float, dev: torch.device, backend: str) -> np.ndarray:
    """[h, w, 3] uint8 through `render_splats` (``backend``: "torch" is the reference) and
    `to_uint8_rgb`: the CUDA path, and the oracle the fast CPU path is tested against."""
    t = splats.tensors(device=dev)
    with torch.no_grad():
        ycc = render_splats(
            t.means, t.scales, t.angles, t.colors, h, w, scale=scale,
            background=torch.from_numpy(splats.background).to(dev), backend=backend,
        )
        return to_uint8_rgb(ycc).cpu().numpy()


def render_reference(splats: Splats, /, *, scale: float = 1.0, backend: str = "torch") -> np.ndarray:
    """`render` on the CPU through `render_splats(backend=...)` and `to_uint8_rgb` ("torch":
    the spec's reference decode; "numba": the encoder's kernels). For tests and conformance."""
    h, w = max(1, round(splats.height * scale)), max(1, round(splats.width * scale))
    check_size(w, h)
    return _render_tensors(splats, h, w, scale, torch.device("cpu"), backend)


def _render_device(device: object) -> torch.device:
    """torch.device for "cpu", "cuda", "cuda:N" or "auto"; GscError for anything else or a missing GPU."""
    if device == "auto":
        return torch.device("cuda" if has_cuda() else "cpu")
    try:
        dev = torch.device(device)  # type: ignore[arg-type]
    except (TypeError, RuntimeError):
        raise GscError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda":
        if not has_cuda():
            raise GscError(f"device {device!r} is not available: CUDA rendering needs CuPy and a CUDA GPU "
                           "(pip install gscodec[cuda]); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GscError(f"device {device!r} is not available ({torch.cuda.device_count()} CUDA devices)")
    elif dev.type != "cpu":
        raise GscError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return dev


def check(data: bytes, /) -> bool:
    """Whether ``data`` starts with a valid .gsc header (does not decode the rest)."""
    try:
        parse_header(bytes(data[:64]))
    except (GscError, TypeError):
        return False
    return True


def read(path: str | os.PathLike, /, **kwargs: object) -> np.ndarray:
    """Decode the .gsc file at ``path`` (keyword arguments as for `decode`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GscError(f"cannot read {path}: {exc.strerror}") from None
    return decode(data, **kwargs)  # type: ignore[arg-type]


def write(path: str | os.PathLike, image: object, /, **kwargs: object) -> int:
    """Encode ``image`` to ``path`` atomically (keyword arguments as for `encode`).

    Returns the number of bytes written. The file appears whole or not at all.
    """
    data = encode(image, **kwargs)  # type: ignore[arg-type]
    write_atomic(path, data)
    return len(data)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to a temporary file beside ``path`` and rename it into place."""
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
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
