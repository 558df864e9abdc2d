"""Decoding that never crashes and never runs away; writers that respect the user's files;
encoding in forked children (issue: bounded work, degenerate splats, fork safety)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gscodec
from gscodec import GscError
from gscodec.format.codec import write_stream
from gscodec.format.params import LayerParams, LayerSymbols
from gscodec.format.work import WORK_PER_PIXEL, render_work
from tests.conftest import smooth_image
from tests.helpers import render_reference


def one_splat_stream(width: int, height: int, major: int, gap: int, angle: int, *, scale_min: int = -16,
                     levels: int = 40, den: int = 1) -> bytes:
    """A legal stream with one splat in the first 1-pixel patch: scales 2^((major + scale_min) / den)
    and 2^((major - gap + scale_min) / den), angle * pi / 4, colour Y = 1."""
    params = LayerParams(patch_log2=0, pos_bits=0, scale_den=den, scale_min=scale_min, scale_levels=levels,
                         angle_levels=4, color_step=(1 << 16,) * 3, color_min=(0, 0, 0), color_levels=(2, 2, 2))
    counts = np.zeros(width * height, np.int64)
    counts[0] = 1
    one = np.zeros(1, np.int64)
    symbols = LayerSymbols(counts, one, one, np.array([major]), np.array([gap]),
                           np.array([angle]) if gap else np.zeros(0, np.int64), np.array([[1, 0, 0]]))
    return write_stream(width, height, (0, 0, 0), [(params, symbols)])


# the two 118-byte streams of the report: a 2^23 x 2^-16 px splat at pi/4 on a 1x1 image, and
# a big round splat that made the fast decoder's determinant overflow at scale 600
NEEDLE = one_splat_stream(1, 1, major=39, gap=39, angle=1)
BIG = one_splat_stream(1, 1, major=39, gap=0, angle=0)


@pytest.mark.parametrize("data", [NEEDLE, BIG], ids=["needle", "big"])
@pytest.mark.parametrize("scale", [2.0**-16, 0.001, 0.5, 1.0, 511.0, 600.0, 2.0**12])
def test_degenerate_splats_decode_alike_everywhere(data: bytes, scale: float) -> None:
    assert len(data) == 118
    splats = gscodec.decode_splats(data)
    got = gscodec.decode(data, scale=scale)
    if got.size <= 1 << 16:
        ref = render_reference(splats, scale=scale)
        assert np.abs(got.astype(int) - ref).max() <= 1
        assert np.abs(render_reference(splats, scale=scale, backend="numba").astype(int) - ref).max() <= 1


def test_degenerate_splats_through_pillow_and_cli(tmp_path: Path) -> None:
    from gscodec import GscImagePlugin  # noqa: F401

    path = tmp_path / "needle.gsc"
    path.write_bytes(NEEDLE)
    with Image.open(path) as im:
        im.load()
        assert im.size == (1, 1)
    out = subprocess.run([sys.executable, "-m", "gscodec", "decode", str(path), str(tmp_path / "n.png")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("scale", [1e308, 10**400, 1e-200, 0.0, -1.0, float("nan"), float("inf"), 2.0**17])
def test_scale_is_validated(scale: float) -> None:
    with pytest.raises(GscError, match="scale must be"):
        gscodec.decode(NEEDLE, scale=scale)


def test_scale_beyond_the_size_limit() -> None:
    with pytest.raises(GscError, match="outside 1..65536 per side"):
        gscodec.decode(one_splat_stream(4096, 1, 0, 0, 0), scale=2.0**5)


def work_bomb(width: int, height: int, n: int, log2_scale: int) -> bytes:
    """n splats of 2^log2_scale pixels on a width x height image, one per 4x4 patch."""
    params = LayerParams(patch_log2=2, pos_bits=0, scale_den=1, scale_min=log2_scale, scale_levels=1,
                         angle_levels=1, color_step=(1, 1, 1), color_min=(0, 0, 0), color_levels=(1, 1, 1))
    rows, cols = params.grid(width, height)
    counts = np.zeros(rows * cols, np.int64)
    counts[:n] = 1
    zeros = np.zeros(n, np.int64)
    symbols = LayerSymbols(counts, zeros, zeros, zeros, zeros, np.zeros(0, np.int64), np.zeros((n, 3), np.int64))
    return write_stream(width, height, (0, 0, 0), [(params, symbols)])


@pytest.mark.parametrize(("width", "height", "n"), [(8192, 8192, 1 << 22), (2048, 2048, 1 << 18), (300, 200, 3750)])
def test_work_bombs_fail_fast(width: int, height: int, n: int) -> None:
    data = work_bomb(width, height, n, 23)
    assert len(data) < 400
    start = time.perf_counter()
    with pytest.raises(GscError, match="decoding work limit"):
        gscodec.decode(data)
    assert time.perf_counter() - start < 5.0


def test_the_encoder_stays_far_below_the_work_bound() -> None:
    data = gscodec.encode(smooth_image(48, 64), quality=100, effort=1)
    splats = gscodec.decode_splats(data)
    assert render_work(splats, 48, 64, 1.0) < WORK_PER_PIXEL / 4 * 48 * 64


def test_thumbnails_of_dense_streams_stay_legal() -> None:
    data = gscodec.encode(smooth_image(48, 64), quality=100, effort=0)
    assert gscodec.decode(data, scale=2.0**-6).shape == (1, 1, 3)


# ---------------------------------------------------------------- fork safety


def _encode_in_child(image: np.ndarray, queue) -> None:
    data = gscodec.encode(image, effort=1)
    queue.put((len(data), gscodec.decode(data).shape))


def test_encoding_in_a_forked_child_after_the_parent_encoded() -> None:
    """The child of a process whose torch ran multi-threaded ops must not wait for a dead
    OpenMP pool (it hung forever before)."""
    code = """
import multiprocessing, numpy as np, gscodec, torch
from tests.test_reliability import _encode_in_child
torch.set_num_threads(2)
image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
gscodec.encode(image, effort=1)
torch.ones(1 << 20).mul(2).sum()  # any multi-threaded op
ctx = multiprocessing.get_context("fork")
queue = ctx.Queue()
child = ctx.Process(target=_encode_in_child, args=(image, queue))
child.start()
child.join(60)
alive = child.is_alive()
if alive:
    child.kill()
print("hung" if alive else queue.get())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert "hung" not in out.stdout and "(48, 64, 3)" in out.stdout


# ---------------------------------------------------------------- files


def test_write_respects_umask_and_keeps_an_existing_mode(tmp_path: Path) -> None:
    image = smooth_image()
    old = os.umask(0o022)
    try:
        gscodec.write(tmp_path / "new.gsc", image, effort=0)
        existing = tmp_path / "existing.gsc"
        existing.write_bytes(b"x")
        existing.chmod(0o640)
        gscodec.write(existing, image, effort=0)
        os.umask(0o077)
        gscodec.write(tmp_path / "private.gsc", image, effort=0)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.gsc").stat().st_mode) == 0o644
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "private.gsc").stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_checks_the_destination_before_encoding(tmp_path: Path) -> None:
    with pytest.raises(GscError, match="is a folder"):
        gscodec.write(tmp_path, smooth_image(), effort=0)
    with pytest.raises(GscError, match="does not exist"):
        gscodec.write(tmp_path / "missing" / "x.gsc", smooth_image(), effort=0)


@pytest.mark.parametrize("bad", [[256], 123, None, "text", object()])
def test_check_and_read_reject_what_is_not_bytes_or_a_path(bad: object) -> None:
    assert gscodec.check(bad) is False  # type: ignore[arg-type]
    if not isinstance(bad, str):
        with pytest.raises(GscError):
            gscodec.read(bad)  # type: ignore[arg-type]
    with pytest.raises(GscError):
        gscodec.decode(bad)  # type: ignore[arg-type]


def test_multiprocessing_spawn_workers_decode() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(gscodec.decode, (BIG,)).shape == (1, 1, 3)


def test_encode_splats_refuses_to_write_an_undecodable_stream() -> None:
    n = 400  # each covering the whole 512 x 512 image: 400 evaluations per pixel
    rng = np.random.default_rng(0)
    huge = gscodec.Splats(512, 512, rng.uniform(0, 512, (n, 2)), np.full((n, 2), 1000.0), np.zeros(n),
                          np.full((n, 3), 0.01))
    with pytest.raises(GscError, match="more rendering work than SPEC 4.5 allows"):
        gscodec.encode_splats(huge)
    assert gscodec.decode(gscodec.encode_splats(huge.select(np.arange(60)))).shape == (512, 512, 3)
