"""The codecs under test, behind one small :class:`Codec` interface.

Every codec maps an 8-bit RGB image (``np.ndarray``, shape ``[H, W, 3]``,
``uint8``) and one integer quality setting to ``bytes`` and back. Optional
back-ends (AVIF in Pillow, ``imagecodecs``, ``gscodec``) are probed lazily:
``Codec.unavailable()`` returns why a codec cannot run here, or ``None``.

Library thread settings are left at their defaults (Pillow's AVIF encoder uses
all cores); note that libaom's output bytes depend on its thread count.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, features


class Codec:
    """A lossy image codec with one integer quality knob.

    Subclasses set ``name``, ``description`` and ``qualities`` (the default
    ladder, low to high rate) and implement :meth:`encode` and :meth:`decode`.
    """

    name: str = ""
    description: str = ""
    qualities: tuple[int, ...] = ()
    #: setting used by ``bench.speed`` (about 0.5–1 bpp on Kodak)
    speed_quality: int = 50

    def unavailable(self) -> str | None:
        """Why this codec cannot run here (a message), or ``None`` if it can."""
        return None

    def version(self) -> str:
        """Library versions; stored with each cached result."""
        return ""

    def extra(self, data: bytes) -> dict[str, Any]:
        """Codec-specific figures for one encoded image, stored in its result record."""
        return {}

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        """Compress ``img`` (``[H, W, 3]`` uint8) at ``quality``."""
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        """Decompress to a ``[H, W, 3]`` uint8 array."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _as_rgb_array(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


class PillowCodec(Codec):
    """A codec reached through ``PIL.Image.save`` / ``PIL.Image.open``."""

    format: str = ""
    save_options: ClassVar[dict[str, Any]] = {}
    feature: str = ""

    def unavailable(self) -> str | None:
        if self.feature and not features.check(self.feature):
            return (
                f"{self.name}: this Pillow build has no {self.feature!r} support; install a Pillow wheel built with it"
            )
        return None

    def version(self) -> str:
        import PIL

        lib = features.version(self.feature) if self.feature else None
        return f"Pillow {PIL.__version__}, {self.feature} {lib}"

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, format=self.format, quality=int(quality), **self.save_options)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return _as_rgb_array(im)


class JpegCodec(PillowCodec):
    name = "jpeg"
    description = "JPEG (Pillow, libjpeg-turbo), Pillow defaults (4:2:0, standard tables)"
    format = "JPEG"
    feature = "jpg"
    qualities = (5, 10, 20, 30, 40, 50, 60, 70, 80)

    def version(self) -> str:
        import PIL

        return f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}"


class WebpCodec(PillowCodec):
    name = "webp"
    description = "WebP (Pillow, libwebp), method=6, lossy"
    format = "WEBP"
    feature = "webp"
    save_options: ClassVar[dict[str, Any]] = {"method": 6}
    qualities = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80)


class AvifCodec(PillowCodec):
    name = "avif"
    description = "AVIF (Pillow's built-in AVIF plugin, libavif + libaom), speed=4, 4:2:0"
    format = "AVIF"
    feature = "avif"
    save_options: ClassVar[dict[str, Any]] = {"speed": 4}
    qualities = (10, 20, 30, 40, 50, 60, 70, 75)

    def version(self) -> str:
        import PIL
        from PIL import AvifImagePlugin

        return f"Pillow {PIL.__version__}, libavif {features.version('avif')}, " + (
            AvifImagePlugin._avif.codec_versions()
        )


class ImagecodecsCodec(Codec):
    """A codec from the optional ``imagecodecs`` package."""

    module_attr: str = ""  # e.g. "JPEG2K"

    def unavailable(self) -> str | None:
        try:
            ic = importlib.import_module("imagecodecs")
        except ImportError:
            return f"{self.name}: needs the optional package imagecodecs (pip install imagecodecs)"
        if not getattr(getattr(ic, self.module_attr, None), "available", False):
            return f"{self.name}: this imagecodecs build lacks {self.module_attr}"
        return None

    def version(self) -> str:
        ic = importlib.import_module("imagecodecs")
        lib = getattr(ic, f"{self.module_attr.lower()}_version")()
        return f"imagecodecs {ic.__version__}, {lib}"


class Jpeg2000Codec(ImagecodecsCodec):
    name = "jpeg2000"
    description = (
        "JPEG 2000 (imagecodecs, OpenJPEG), J2K codestream, RGB->YCC transform, "
        "9/7 wavelet, quality = target PSNR in dB (fixed-quality mode)"
    )
    module_attr = "JPEG2K"
    qualities = (24, 26, 28, 30, 32, 34, 36, 38, 40)
    speed_quality = 34

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpeg2k_encode(img, level=int(quality), codecformat="j2k"))

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        return np.asarray(imagecodecs.jpeg2k_decode(data), dtype=np.uint8)


class JpegXlCodec(ImagecodecsCodec):
    name = "jpegxl"
    description = "JPEG XL (imagecodecs, libjxl), default effort 7, quality 0..100 mapped to distance by libjxl"
    module_attr = "JPEGXL"
    qualities = (5, 15, 30, 45, 60, 70, 80, 85)

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(img, level=int(quality)))

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(data), dtype=np.uint8)


def _tree_digest(root: Path) -> str:
    """Short SHA-256 over a package's files, so cached results follow code changes."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


class GsCodec(Codec):
    """This project's codec, imported lazily (``gscodec.encode`` / ``gscodec.decode``).

    ``effort=None`` uses gscodec's default effort and ``init=None`` its default initializer
    ("detail" or "predictor"). ``device`` (e.g. ``"cuda"``) is passed to ``gscodec.encode``
    and ``gscodec.decode`` only when given.
    """

    qualities = (10, 25, 40, 55, 70, 85)

    def __init__(self, effort: int | None = None, device: str | None = None, init: str | None = None) -> None:
        self.effort, self.device, self.init = effort, device, init
        self.name = "gscodec" + (f"-{init}" if init else "") + ("" if effort is None else f"-e{effort}")
        effort_text = "default effort" if effort is None else f"effort={effort}"
        init_text = "" if init is None else f", init={init}"
        self.description = f"gscodec (this repository), {effort_text}{init_text}"

    def _module(self) -> Any:
        return importlib.import_module("gscodec")

    def unavailable(self) -> str | None:
        try:
            gs = self._module()
        except ImportError as exc:
            return f"{self.name}: cannot import gscodec ({exc}); install the package (pip install -e .)"
        if not (callable(getattr(gs, "encode", None)) and callable(getattr(gs, "decode", None))):
            return f"{self.name}: gscodec has no encode/decode functions yet"
        return None

    def version(self) -> str:
        gs = self._module()
        root = Path(gs.__file__).parent
        return f"gscodec {getattr(gs, '__version__', '?')} tree {_tree_digest(root)}"

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        kwargs: dict[str, Any] = {"quality": int(quality)}
        if self.effort is not None:
            kwargs["effort"] = self.effort
        if self.device is not None:
            kwargs["device"] = self.device
        if self.init is not None:
            kwargs["init"] = self.init
        return bytes(self._module().encode(img, **kwargs))

    def decode(self, data: bytes) -> np.ndarray:
        kwargs = {} if self.device is None else {"device": self.device}
        return np.asarray(self._module().decode(data, **kwargs), dtype=np.uint8)

    def extra(self, data: bytes) -> dict[str, Any]:
        """The stream's decoding work per pixel (SPEC 4.5), the largest over output scales
        1/8 .. 2, next to the bound's WORK_PER_PIXEL (`bench.work` summarizes it)."""
        from gscodec.format.work import render_work

        splats = self._module().decode_splats(data)
        ratios = []
        for scale in (0.125, 0.25, 0.5, 1.0, 2.0):
            h, w = max(1, round(splats.height * scale)), max(1, round(splats.width * scale))
            ratios.append(render_work(splats, h, w, scale) / max(h * w, splats.height * splats.width))
        return {"work_ratio": max(ratios), "splats": len(splats)}


CLASSICAL: tuple[type[Codec], ...] = (JpegCodec, WebpCodec, AvifCodec, Jpeg2000Codec, JpegXlCodec)


def codec_names() -> list[str]:
    """Names accepted by :func:`make_codec` (``gscodec-e<N>`` for any effort N)."""
    return [c.name for c in CLASSICAL] + ["gscodec", "gscodec-e<N>", "gscodec-<init>[-e<N>]"]


def make_codec(name: str, device: str | None = None) -> Codec:
    """Build a codec by name: ``jpeg``, ``webp``, ``avif``, ``jpeg2000``, ``jpegxl``, or gscodec
    as ``gscodec[-<init>][-e<effort>]`` (init: detail or predictor)."""
    for cls in CLASSICAL:
        if cls.name == name:
            return cls()
    match = re.fullmatch(r"gscodec(?:-(detail|predictor))?(?:-e(\d+))?", name)
    if match:
        init, effort = match.groups()
        return GsCodec(effort=None if effort is None else int(effort), device=device, init=init)
    raise ValueError(f"unknown codec {name!r}; choose from {', '.join(codec_names())}")
