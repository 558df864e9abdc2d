"""Pillow plugin for .gsc files (after Pillow's QoiImagePlugin and pillow-heif).

    >>> import gscodec.GscImagePlugin           # or: gscodec.register_pillow()
    >>> from PIL import Image
    >>> im = Image.open("photo.gsc")             # reads the 36-byte header only
    >>> im.load()                                # decodes the splats (gscodec.decode)
    >>> im.save("copy.gsc", quality=60, effort=2)

Reading: `Image.open` reads only the header and gives mode "RGB" and the size;
`load()` reads the whole file and renders it; `verify()` checks it without
rendering (SyntaxError when broken, as for PNG). `draft()` (used by `thumbnail()`)
renders directly at a smaller size. Extra `info` keys: ``gsc_layers``, ``gsc_splats``.

Errors follow Pillow's conventions, so ``except OSError`` catches those of open and load:
a file that is not .gsc, or whose header is broken (bad magic, CRC, limits,
truncated), fails in `Image.open` with `PIL.UnidentifiedImageError`; a file
whose header is fine but whose body is broken or truncated fails in `load()`
with `OSError`, whose ``__cause__`` is the `gscodec.GscError` saying what was
wrong. A truncated .gsc cannot be partially decoded, so
``ImageFile.LOAD_TRUNCATED_IMAGES`` does not apply. Pillow's incremental
`ImageFile.Parser` (``feed`` chunks, then ``close``) works too: the image is rendered
once the fed bytes hold the whole stream; ``close`` before that raises OSError
("image was incomplete").

Writing: ``im.save(fp, format="GSC", quality=50, effort=1, target_bpp=None,
target_psnr=None, drop_alpha=False, seed=0, progress=None, init=...)``, the options of `gscodec.encode`.
Images with alpha (RGBA, LA, PA, P with transparency) raise `gscodec.GscError`
unless ``drop_alpha=True``; every other mode is converted to RGB as `gscodec.encode`
does (EXIF orientation applied, range by mode).

A failed save writes nothing: the image is encoded completely before the first byte
is written, so a file object is left as it was. But `Image.save` given a *path*
opens it for writing ("w+b", which truncates it) before it calls any plugin code,
and no plugin hook runs earlier. So when the encode fails, a file that Pillow
created is removed again by Pillow, while a file that already existed is left
empty (0 bytes). `gscodec.write(path, image)` keeps an existing file intact: it
checks the destination, encodes, then replaces the file atomically.
"""

from __future__ import annotations

import logging
import struct
from typing import IO

from PIL import Image, ImageFile

from .api import decode, encode
from .errors import GscError
from .format.codec import decode_splats
from .format.constants import MAGIC
from .format.container import HEADER_SIZE, parse_header

log = logging.getLogger(__name__)

FORMAT = "GSC"
EXTENSION = ".gsc"
MIME = "image/x-gsc"
_SAVE_OPTIONS = ("quality", "effort", "target_bpp", "target_psnr", "drop_alpha", "seed", "progress", "init")
_CHUNK_HEAD = struct.Struct("<4sI")  # chunk type and payload length (SPEC.md, section 3)


def _accept(prefix: bytes) -> bool:
    """Whether ``prefix`` (the first bytes of a file) starts with the .gsc magic."""
    return prefix[:4] == MAGIC


class GscImageFile(ImageFile.ImageFile):
    """A .gsc image: the header gives size and mode, `load()` renders the splats."""

    format = FORMAT
    format_description = "Gaussian splat image"

    def _open(self) -> None:
        assert self.fp is not None
        head = self.fp.read(HEADER_SIZE)
        if not _accept(head):
            raise SyntaxError("not a .gsc file")
        try:
            header = parse_header(head)
        except GscError as exc:
            raise SyntaxError(str(exc)) from exc
        self._mode = "RGB"
        self._size = (header.width, header.height)
        self.info["gsc_layers"] = header.layer_count
        self.info["gsc_splats"] = header.splat_count
        self.tile = [ImageFile._Tile("gsc", (0, 0, *self._size), 0, (1.0,))]

    def verify(self) -> None:
        """Check the whole stream (chunks, CRCs, symbols) without rendering; SyntaxError if broken."""
        assert self.fp is not None
        self.fp.seek(0)
        data = self.fp.read()
        try:
            decode_splats(data)
        except GscError as exc:
            raise SyntaxError(f"broken .gsc file: {exc}") from exc
        finally:
            super().verify()

    def draft(
        self, mode: str | None, size: tuple[int, int] | None
    ) -> tuple[str, tuple[int, int, float, float]] | None:
        """Render at the smallest scale <= 1 that still covers ``size`` (mode stays RGB)."""
        if len(self.tile) != 1 or self.decoderconfig or not size:
            return None
        width, height = self.size
        scale = max(size[0] / width, size[1] / height)
        if scale >= 1:
            return None
        self._size = (max(1, round(width * scale)), max(1, round(height * scale)))
        self.tile = [ImageFile._Tile("gsc", (0, 0, *self._size), 0, (scale,))]
        self.decoderconfig = (scale,)
        # the source spans [0, width * scale) of the render; rounding may leave it up to half a pixel out
        return self.mode, (0, 0, min(width * scale, self._size[0]), min(height * scale, self._size[1]))


class GscDecoder(ImageFile.PyDecoder):
    """Renders the whole stream with `gscodec.decode`.

    `ImageFile.load` hands it the file (``fd``: it reads to the end); Pillow's incremental
    `ImageFile.Parser` feeds bytes instead, which it collects until the stream is complete.
    """

    _pulls_fd = True

    def init(self, args: tuple[object, ...]) -> None:
        super().init(args)
        self._fed = bytearray()

    def decode(self, buffer: bytes | memoryview) -> tuple[int, int]:
        if self.fd is not None:
            self._render(self.fd.read())
            return -1, 0
        self._fed += buffer
        if _stream_end(self._fed) is None:
            return len(buffer), 0  # consumed; Parser.close() says "incomplete" if no more comes
        self._render(bytes(self._fed))
        return -1, 0

    def _render(self, data: bytes) -> None:
        scale = float(self.args[0]) if self.args else 1.0
        try:
            pixels = decode(data, scale=scale)
        except GscError as exc:
            raise OSError(f"broken .gsc data: {exc}") from exc
        if pixels.shape[:2] != (self.state.ysize, self.state.xsize):
            raise OSError(
                f"decoded {pixels.shape[1]}x{pixels.shape[0]} pixels, expected {self.state.xsize}x{self.state.ysize}"
            )
        self.set_as_raw(pixels.tobytes(), "RGB")


def _stream_end(data: bytes | bytearray) -> int | None:
    """The stream's length if ``data`` holds all of it, else None (SPEC.md: header, then chunks
    ``type | u32 length | payload | CRC32`` ending with GEND). Anything that breaks that walk
    also counts as complete, so that `decode` names the fault instead of waiting for more."""
    if len(data) < HEADER_SIZE:
        return None
    pos = HEADER_SIZE
    for _ in range(parse_header(data).layer_count + 1):  # LAYR chunks, then GEND
        if pos + _CHUNK_HEAD.size > len(data):
            return None
        kind, length = _CHUNK_HEAD.unpack_from(data, pos)
        pos += _CHUNK_HEAD.size + length + 4
        if pos > len(data):
            return None
        if kind == b"GEND":
            return pos
    return pos  # too many chunks: malformed, let decode say so


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode ``im`` with the options in ``im.encoderinfo`` and write the .gsc bytes."""
    options = {k: im.encoderinfo[k] for k in _SAVE_OPTIONS if im.encoderinfo.get(k) is not None}
    data = encode(im, **options)  # type: ignore[arg-type]
    log.debug("saving %dx%d image as %d .gsc bytes", im.width, im.height, len(data))
    fp.write(data)


def register() -> None:
    """Register the GSC format with Pillow: open, save, ``.gsc`` and ``image/x-gsc``."""
    Image.register_open(FORMAT, GscImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_decoder("gsc", GscDecoder)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)


register()
