"""The Pillow plugin, tested the way Pillow tests its own formats."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, UnidentifiedImageError

import gscodec
from gscodec import GscImagePlugin
from gscodec.format.constants import MAGIC
from gscodec.format.container import HEADER_SIZE

pytestmark = pytest.mark.usefixtures("single_thread")


class CountingBytesIO(io.BytesIO):
    """A BytesIO that remembers the furthest byte read."""

    furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return data


def open_and_load(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_registered() -> None:
    assert Image.registered_extensions()[".gsc"] == "GSC"
    assert Image.MIME["GSC"] == "image/x-gsc"
    assert "GSC" in Image.SAVE and "GSC" in Image.OPEN
    assert GscImagePlugin._accept(MAGIC + b"\0" * 12)
    assert not GscImagePlugin._accept(b"\x89PNG\r\n\x1a\n")
    assert not GscImagePlugin._accept(b"")


def test_open_matches_decode(gsc_file: Path, rgb_image: np.ndarray) -> None:
    with Image.open(gsc_file) as im:
        assert isinstance(im, GscImagePlugin.GscImageFile)
        assert (im.format, im.mode, im.size) == ("GSC", "RGB", (33, 17))
        assert im.get_format_mimetype() == "image/x-gsc"
        assert im.info["gsc_layers"] >= 1 and im.info["gsc_splats"] >= 1
        im.load()
        np.testing.assert_array_equal(np.asarray(im), gscodec.read(gsc_file))


def test_sanity_vs_png(tmp_path: Path, gsc_file: Path, rgb_image: np.ndarray) -> None:
    gsc, png = gsc_file, tmp_path / "a.png"
    Image.fromarray(gscodec.read(gsc)).save(png)
    with Image.open(gsc) as a, Image.open(png) as b:
        assert a.size == b.size and a.mode == b.mode
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and the codec is lossy, not broken: the decode resembles the source
    error = np.abs(np.asarray(Image.open(gsc), np.float64) - rgb_image).mean()
    assert error < 40


def test_open_reads_only_the_header(gsc_file: Path) -> None:
    fp = CountingBytesIO(gsc_file.read_bytes())
    im = Image.open(fp)
    assert fp.furthest <= HEADER_SIZE
    assert (im.mode, im.size) == ("RGB", (33, 17))
    im.load()
    assert fp.furthest == len(fp.getvalue())


def test_truncated_after_header_opens_but_fails_on_load(gsc_file: Path) -> None:
    im = Image.open(io.BytesIO(gsc_file.read_bytes()[:HEADER_SIZE]))
    assert (im.format, im.mode, im.size) == ("GSC", "RGB", (33, 17))
    with pytest.raises(OSError, match="truncated") as info:
        im.load()
    assert isinstance(info.value.__cause__, gscodec.GscError)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x89GS", b"not an image at all", MAGIC + bytes(64), b"\x89PNG\r\n\x1a\n" + bytes(32)],
    ids=["empty", "short-magic", "text", "magic-then-zeros", "png-signature"],
)
def test_invalid_file(data: bytes) -> None:
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data))


def test_invalid_file_direct() -> None:
    # Pillow's habit: the plugin class itself raises SyntaxError on a foreign file
    with pytest.raises(SyntaxError):
        GscImagePlugin.GscImageFile(io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(40)))


@pytest.mark.parametrize("cut", [1, 4, 12, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 3, HEADER_SIZE + 8, -9, -4, -1])
def test_truncated(gsc_file: Path, cut: int) -> None:
    data = gsc_file.read_bytes()
    with pytest.raises(OSError):
        open_and_load(data[:cut])


@pytest.mark.parametrize("position", [5, 20, HEADER_SIZE + 2, HEADER_SIZE + 20, -20, -6])
def test_corrupt_byte(gsc_file: Path, position: int) -> None:
    data = bytearray(gsc_file.read_bytes())
    data[position] ^= 0x41
    with pytest.raises(OSError):
        open_and_load(bytes(data))


def test_verify(gsc_file: Path) -> None:
    with Image.open(gsc_file) as im:
        im.verify()
    with Image.open(io.BytesIO(gsc_file.read_bytes()[:-1])) as im:
        with pytest.raises(SyntaxError, match="truncated"):
            im.verify()


def test_truncated_ignores_load_truncated_images(gsc_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(OSError):
        open_and_load(gsc_file.read_bytes()[:-4])


def test_save_to_tmp_path(tmp_path: Path, gsc_file: Path, rgb_image: np.ndarray) -> None:
    out = tmp_path / "out.gsc"
    Image.fromarray(rgb_image).save(out, quality=gscodec.DEFAULT_QUALITY, effort=0)
    assert out.read_bytes() == gsc_file.read_bytes()  # as gscodec.write made it
    with Image.open(out) as im:
        assert (im.format, im.size) == ("GSC", (33, 17))
        im.load()


def test_save_quality_changes_the_file(tmp_path: Path, gsc_file: Path, rgb_image: np.ndarray) -> None:
    out = tmp_path / "q5.gsc"
    Image.fromarray(rgb_image).save(out, quality=5, effort=0)
    assert out.stat().st_size < gsc_file.stat().st_size  # gsc_file: quality 50


def test_save_to_bytesio_with_format(gsc_file: Path, rgb_image: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(rgb_image).save(buffer, format="GSC", effort=0)
    assert buffer.getvalue() == gsc_file.read_bytes()
    buffer.seek(0)
    with Image.open(buffer) as im:
        assert im.format == "GSC"
        np.testing.assert_array_equal(np.asarray(im), gscodec.decode(buffer.getvalue()))


def test_save_other_modes(rgb_image: np.ndarray) -> None:
    for mode in ("L", "P"):
        buffer = io.BytesIO()
        Image.fromarray(rgb_image).convert(mode).save(buffer, format="GSC", effort=0)
        assert Image.open(buffer).size == (33, 17)


def test_save_rgba_raises_unless_drop_alpha(tmp_path: Path, gsc_file: Path, rgb_image: np.ndarray) -> None:
    rgba = Image.fromarray(rgb_image).convert("RGBA")
    with pytest.raises(gscodec.GscError, match="drop_alpha"):
        rgba.save(tmp_path / "a.gsc", effort=0)
    assert not (tmp_path / "a.gsc").exists()
    with pytest.raises(gscodec.GscError, match="alpha"):
        Image.fromarray(rgb_image).convert("LA").save(io.BytesIO(), format="GSC", effort=0)
    rgba.save(tmp_path / "b.gsc", effort=0, drop_alpha=True)
    assert (tmp_path / "b.gsc").read_bytes() == gsc_file.read_bytes()


def test_save_bad_option_raises(rgb_image: np.ndarray) -> None:
    with pytest.raises(gscodec.GscError, match="quality"):
        Image.fromarray(rgb_image).save(io.BytesIO(), format="GSC", quality=150)


def test_draft_and_thumbnail(gsc_file: Path) -> None:
    with Image.open(gsc_file) as im:
        assert im.draft(None, (100, 100)) is None  # no upscaling
        mode, box = im.draft("L", (16, 8))  # mode stays RGB; scale: the least that covers (16, 8)
        scale = max(16 / 33, 8 / 17)
        assert mode == "RGB" and box == pytest.approx((0, 0, 33 * scale, 8))  # clamped to the rounded size
        assert im.size == (16, 8)
        im.load()
        np.testing.assert_array_equal(np.asarray(im), gscodec.read(gsc_file, scale=scale))
    for size, expected in [((8, 8), (8, 4)), ((30, 30), (30, 15)), ((5, 3), (5, 3))]:
        with Image.open(gsc_file) as im:
            im.thumbnail(size)
            assert im.size == expected


def test_register_pillow(gsc_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i != "GSC"])
    monkeypatch.delitem(Image.OPEN, "GSC")
    monkeypatch.delitem(Image.SAVE, "GSC")
    monkeypatch.delitem(Image.EXTENSION, ".gsc")
    with pytest.raises(UnidentifiedImageError):
        Image.open(gsc_file)
    gscodec.register_pillow()
    with Image.open(gsc_file) as im:
        assert im.format == "GSC"
    assert Image.registered_extensions()[".gsc"] == "GSC"


def feed_in_chunks(data: bytes, size: int) -> Image.Image:
    """What an upload handler does: Pillow's incremental parser, ``size`` bytes at a time."""
    parser = ImageFile.Parser()
    for start in range(0, len(data), size):
        parser.feed(data[start : start + size])
    return parser.close()


@pytest.mark.parametrize("size", [7, 1, 4096])
def test_incremental_parser(gsc_file: Path, size: int) -> None:
    data = gsc_file.read_bytes()
    im = feed_in_chunks(data, size)
    assert (im.format, im.mode, im.size) == ("GSC", "RGB", (33, 17))
    np.testing.assert_array_equal(np.asarray(im), gscodec.decode(data))


def test_incremental_parser_truncated_or_corrupt(gsc_file: Path) -> None:
    data = gsc_file.read_bytes()
    with pytest.raises(OSError, match="incomplete"):
        feed_in_chunks(data[:-5], 7)
    corrupt = bytearray(data)
    corrupt[HEADER_SIZE + 20] ^= 0x41
    with pytest.raises(OSError) as info:
        feed_in_chunks(bytes(corrupt), 7)
    assert isinstance(info.value.__cause__, gscodec.GscError)


def test_failed_save_writes_nothing(tmp_path: Path, rgb_image: np.ndarray) -> None:
    """A failed encode writes no byte; see the module docstring for what Pillow itself does."""
    rgba = Image.fromarray(rgb_image).convert("RGBA")
    buffer = io.BytesIO(b"earlier content")
    buffer.seek(0, io.SEEK_END)
    with pytest.raises(gscodec.GscError, match="alpha"):
        rgba.save(buffer, format="GSC", effort=0)
    assert buffer.getvalue() == b"earlier content" and buffer.tell() == len(b"earlier content")

    new = tmp_path / "new.gsc"
    with pytest.raises(gscodec.GscError, match="alpha"):
        rgba.save(new, effort=0)
    assert not new.exists()  # Pillow removes a file it created

    existing = tmp_path / "existing.gsc"
    existing.write_bytes(b"earlier content")
    with pytest.raises(gscodec.GscError, match="alpha"):
        rgba.save(existing, effort=0)
    # Pillow opened (truncated) the file before the plugin ran; the plugin added nothing.
    # If this starts failing, a Pillow release changed that: update the module docstring.
    assert existing.read_bytes() == b""


def test_save_applies_exif_orientation(tmp_path: Path, rgb_image: np.ndarray) -> None:
    from test_api import oriented_png

    with Image.open(io.BytesIO(oriented_png(rgb_image))) as im:
        assert im.size == (17, 33)  # stored on its side
        buffer = io.BytesIO()
        im.save(buffer, format="GSC", effort=0)
    assert buffer.getvalue() == gscodec.encode(rgb_image, effort=0)
