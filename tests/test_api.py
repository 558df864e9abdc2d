"""The public API: inputs, options, errors, atomic writes, and end-to-end quality."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import gscodec
from gscodec.metrics import psnr

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 64 x 48 crop of scikit-image's astronaut (bundled with scikit-image)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:148, 180:244])


def test_end_to_end_quality(photo: np.ndarray) -> None:
    """Refinement must beat placement alone, and both must reach a measured floor.

    Measured when written (this crop, quality 50): effort 0 -> 19.2 dB at 0.76 bpp,
    effort 2 -> 28.0 dB at 0.95 bpp.
    """
    low = gscodec.decode(gscodec.encode(photo, quality=50, effort=0))
    high_bytes = gscodec.encode(photo, quality=50, effort=2)
    high = gscodec.decode(high_bytes)
    assert high.shape == photo.shape and high.dtype == np.uint8
    assert psnr(high, photo) > psnr(low, photo) + 1.0
    assert psnr(high, photo) > 26.0
    assert 8 * len(high_bytes) / (64 * 48) < 4.0


def test_quality_orders_rate(photo: np.ndarray) -> None:
    sizes = [len(gscodec.encode(photo, quality=q, effort=0)) for q in (0, 50, 100)]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a,
        lambda a: a.astype(np.float32) / 255.0,
        lambda a: a.astype(np.uint16) * 257,
        lambda a: Image.fromarray(a),
        lambda a: torch.from_numpy(a).permute(2, 0, 1).contiguous(),
        lambda a: torch.from_numpy(a),
    ],
    ids=["uint8", "float", "uint16", "pil", "torch-chw", "torch-hwc"],
)
def test_input_types_give_the_same_stream(photo: np.ndarray, convert) -> None:
    small = photo[:12, :20]
    assert gscodec.encode(convert(small), effort=0) == gscodec.encode(small, effort=0)


@pytest.mark.parametrize("gray", [lambda a: a[:, :, 0], lambda a: a[:, :, :1], lambda a: Image.fromarray(a[:, :, 0])])
def test_grayscale_is_accepted(photo: np.ndarray, gray) -> None:
    out = gscodec.decode(gscodec.encode(gray(photo[:10, :14]), effort=0))
    assert out.shape == (10, 14, 3)
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() <= 2  # stays (nearly) gray


def test_alpha_needs_consent(photo: np.ndarray) -> None:
    rgba = np.dstack([photo[:8, :8], np.full((8, 8), 255, np.uint8)])
    with pytest.raises(gscodec.GscError, match="alpha"):
        gscodec.encode(rgba)
    with pytest.raises(gscodec.GscError, match="alpha"):
        gscodec.encode(Image.fromarray(rgba))
    assert gscodec.encode(rgba, drop_alpha=True, effort=0) == gscodec.encode(photo[:8, :8], effort=0)


@pytest.mark.parametrize(
    "image, kwargs",
    [
        (np.zeros((0, 4, 3), np.uint8), {}),
        (np.zeros((4, 4, 2), np.uint8), {}),
        (np.zeros((4, 4, 3), np.int32), {}),
        (np.full((4, 4, 3), 2.0, np.float32), {}),
        (np.full((4, 4, 3), np.nan, np.float32), {}),
        ("not an image", {}),
        (np.zeros((4, 4, 3), np.uint8), {"quality": 101}),
        (np.zeros((4, 4, 3), np.uint8), {"quality": "high"}),
        (np.zeros((4, 4, 3), np.uint8), {"effort": 10}),
        (np.zeros((4, 4, 3), np.uint8), {"effort": 1.5}),
        (np.zeros((4, 4, 3), np.uint8), {"target_bpp": -1.0}),
        (np.zeros((4, 4, 3), np.uint8), {"target_psnr": float("nan")}),
        (np.zeros((4, 4, 3), np.uint8), {"target_psnr": True}),
        (np.zeros((1, 70000, 3), np.uint8), {}),
    ],
)
def test_bad_input_raises_gscerror(image, kwargs) -> None:
    with pytest.raises(gscodec.GscError):
        gscodec.encode(image, **kwargs)


def test_flat_and_tiny_images_encode() -> None:
    for shape in [(1, 1, 3), (1, 7, 3), (5, 1, 3), (9, 9, 3)]:
        flat = np.full(shape, 93, np.uint8)
        out = gscodec.decode(gscodec.encode(flat, effort=1))
        assert out.shape == shape
        assert np.abs(out.astype(int) - 93).max() <= 1


def test_decode_options(gsc_file) -> None:
    data = gsc_file.read_bytes()
    assert gscodec.decode(data, scale=0.5).shape == (round(17 * 0.5), round(33 * 0.5), 3)
    assert gscodec.decode(data, scale=2).shape == (34, 66, 3)
    assert gscodec.decode(data, layers=0).shape == (17, 33, 3)
    for bad in [{"scale": 0}, {"scale": float("nan")}, {"layers": -1}, {"device": "tpu"}]:
        with pytest.raises(gscodec.GscError):
            gscodec.decode(data, **bad)


def test_device_option(rgb_image: np.ndarray, gsc_file) -> None:
    data = gsc_file.read_bytes()
    assert gscodec.encode(rgb_image, effort=0, device="cpu") == data
    for bad in ("tpu", "cuda:x", None, 2.5):
        with pytest.raises(gscodec.GscError, match="device must be"):
            gscodec.encode(rgb_image, effort=0, device=bad)
    if not gscodec.has_cuda():  # "auto" is the CPU, and CUDA is refused with the way to get it
        assert gscodec.encode(rgb_image, effort=0, device="auto") == data
        assert np.array_equal(gscodec.decode(data, device="auto"), gscodec.decode(data))
        for dev in ("cuda", "cuda:0"):
            with pytest.raises(gscodec.GscError, match=r"pip install gscodec\[cuda\]"):
                gscodec.encode(rgb_image, effort=0, device=dev)
            with pytest.raises(gscodec.GscError, match=r"pip install gscodec\[cuda\]"):
                gscodec.decode(data, device=dev)


def test_check_read_write(tmp_path, rgb_image, gsc_file) -> None:
    data = gsc_file.read_bytes()
    assert gscodec.check(data) and not gscodec.check(b"\x89PNG\r\n\x1a\n" + bytes(40)) and not gscodec.check(b"")
    assert np.array_equal(gscodec.read(gsc_file), gscodec.decode(data))
    out = tmp_path / "x.gsc"
    assert gscodec.write(out, rgb_image, effort=0) == len(data)
    assert out.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["x.gsc"]  # no temporary file left
    with pytest.raises(gscodec.GscError):
        gscodec.read(tmp_path / "missing.gsc")


def test_failed_write_leaves_nothing(tmp_path) -> None:
    target = tmp_path / "bad.gsc"
    with pytest.raises(gscodec.GscError):
        gscodec.write(target, np.zeros((4, 4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(gscodec.GscError):
        gscodec.write(tmp_path / "no-such-dir" / "x.gsc", np.zeros((4, 4, 3), np.uint8), effort=0)


def test_target_bpp_lands_near_the_target(photo: np.ndarray) -> None:
    # detail placement: on this 64 x 48 crop the predictor's rate jumps from 0.40 bpp (stage 0
    # alone) to 1.04 bpp at quality 12.5, where three more layers carry four splats (about 80
    # bytes of layer overhead each), so 1.0 bpp is no target for it
    data = gscodec.encode(photo, target_bpp=1.0, effort=0, init="detail")
    bpp = 8 * len(data) / (64 * 48)
    assert 0.5 < bpp <= 1.1


def test_target_psnr_lands_near_the_target(photo: np.ndarray) -> None:
    """Predictor alone (effort 0): on this crop quality 0 gives 20.5 dB and 100 gives 28.7 dB;
    targets between land within 0.3 dB, one above gives quality 100's encode."""
    from gscodec.metrics import psnr

    def decoded(**options: object) -> float:
        return psnr(photo, gscodec.decode(gscodec.encode(photo, effort=0, **options)))

    lowest, highest = decoded(quality=0), decoded(quality=100)
    for target in (lowest + 0.3 * (highest - lowest), lowest + 0.7 * (highest - lowest)):
        assert abs(decoded(target_psnr=target) - target) <= 0.3
    assert decoded(target_psnr=highest + 5) == pytest.approx(highest, abs=0.05)
    with pytest.raises(gscodec.GscError, match="not both"):
        gscodec.encode(photo, target_bpp=1.0, target_psnr=30.0)


def test_target_psnr_on_an_exact_decode_takes_the_smallest_file() -> None:
    """A flat image decodes exactly (infinite PSNR) at every quality: the search neither
    fails nor spends bits, at effort 0 and with refinement."""
    flat = np.full((24, 32, 3), 128, np.uint8)
    for effort in (0, 1):
        data = gscodec.encode(flat, target_psnr=30, effort=effort)
        assert np.array_equal(gscodec.decode(data), flat)
        assert len(data) <= len(gscodec.encode(flat, quality=5, effort=effort))


# --- input ranges follow the mode, never the data ------------------------------------------


def _png_roundtrip(image: Image.Image, **save: object) -> Image.Image:
    """``image`` written as PNG and read back, as a file on disk would reach encode."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    buffer.seek(0)
    return Image.open(buffer)


def test_16bit_png_is_scaled_by_its_mode_not_its_values(photo: np.ndarray) -> None:
    dark = photo[:12, :20, 0].astype(np.uint16)  # a 16-bit image whose values all lie in 0..255
    im = _png_roundtrip(Image.fromarray(dark))
    assert im.mode == "I;16"
    assert gscodec.encode(im, effort=0) == gscodec.encode(dark, effort=0)  # /65535, not brightened 257x
    big_endian = Image.frombytes("I;16B", (20, 12), dark.astype(">u2").tobytes())
    assert gscodec.encode(big_endian, effort=0) == gscodec.encode(dark, effort=0)


def test_mode_i_is_16_bit_and_checked(photo: np.ndarray) -> None:
    values = photo[:12, :20, 0].astype(np.int32) * 257
    assert gscodec.encode(Image.fromarray(values), effort=0) == gscodec.encode(values.astype(np.uint16), effort=0)
    for bad_value in (65536, -1):
        bad = values.copy()
        bad[3, 4] = bad_value
        with pytest.raises(gscodec.GscError, match="0..65535"):
            gscodec.encode(Image.fromarray(bad))


def test_mode_f_is_a_float_image_in_0_1(photo: np.ndarray) -> None:
    unit = photo[:12, :20, 0].astype(np.float32) / 255
    assert gscodec.encode(Image.fromarray(unit), effort=0) == gscodec.encode(unit, effort=0)  # not black
    with pytest.raises(gscodec.GscError, match=r"\[0, 1\]"):
        gscodec.encode(Image.fromarray(unit * 255))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors(photo: np.ndarray, dtype: torch.dtype) -> None:
    small = torch.from_numpy(photo[:12, :20]).float() / 255
    half = small.to(dtype)
    exact = half.float().numpy()  # the values the half tensor holds, exactly, in float32
    assert gscodec.encode(half, effort=0) == gscodec.encode(exact, effort=0)
    assert gscodec.encode(half.permute(2, 0, 1), effort=0) == gscodec.encode(exact, effort=0)


def oriented_png(pixels: np.ndarray, orientation: int = 6) -> bytes:
    """A PNG whose EXIF Orientation tag is ``orientation`` and whose stored pixels, shown
    as a viewer shows them (tag 6: rotated 90 degrees clockwise), are ``pixels``."""
    stored = np.ascontiguousarray(np.rot90(pixels))  # counter-clockwise: the viewer's turn undoes it
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", exif=exif)
    return buffer.getvalue()


def test_exif_orientation_is_applied(photo: np.ndarray) -> None:
    upright = photo[:12, :20]
    with Image.open(io.BytesIO(oriented_png(upright))) as im:
        assert im.size == (12, 20)  # stored on its side
        assert gscodec.encode(im, effort=0) == gscodec.encode(upright, effort=0)
