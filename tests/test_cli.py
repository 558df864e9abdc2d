"""The gscodec command: in-process through `main`, and once as `python -m gscodec`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gscodec
import gscodec.cli
from gscodec.cli import main
from gscodec.format.symbols import STREAMS

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def png_file(tmp_path: Path, rgb_image: np.ndarray) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(rgb_image).save(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """main(argv) -> (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err: str) -> None:
    assert err.startswith("gscodec: error: ") and err.endswith("\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def test_encode_decode_info_round_trip(
    tmp_path: Path, png_file: Path, gsc_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gsc, out_png = tmp_path / "a.gsc", tmp_path / "a.png"
    status, out, err = run(capsys, "encode", png_file, gsc, "--quality", 50, "--effort", 0)
    assert (status, err) == (0, "")  # no progress bar: stderr is not a terminal here
    assert out.count("\n") == 1 and "33x17" in out and "bpp" in out and "splats" in out
    data = gsc.read_bytes()
    assert data == gsc_file.read_bytes()  # what gscodec.write(rgb_image, effort=0) made
    assert f"{len(data)} bytes" in out

    status, out, err = run(capsys, "decode", gsc, out_png)
    assert (status, err) == (0, "") and "33x17" in out
    np.testing.assert_array_equal(np.asarray(Image.open(out_png)), gscodec.decode(data))

    status, out, err = run(capsys, "info", gsc)
    assert (status, err) == (0, "")
    assert "33 x 17" in out and f"{len(data)} bytes" in out and "header" in out
    assert all(name in out for name in STREAMS)


def test_info_json(gsc_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "info", gsc_file, "--json")
    assert (status, err) == (0, "")
    info = json.loads(out)
    data = gsc_file.read_bytes()
    splats, bits = gscodec.format.codec.stream_bits(data)
    assert (info["width"], info["height"]) == (33, 17)
    assert info["bytes"] == len(data) and info["bpp"] == pytest.approx(8 * len(data) / (33 * 17))
    assert info["splats"] == len(splats) == sum(layer["splats"] for layer in info["layers"])
    assert [layer["patch_size"] for layer in info["layers"]] == list(splats.patch_sizes)
    assert info["stream_bits"] == {name: bits.get(name, 0) for name in STREAMS}
    assert info["bits_per_splat"]["Y"] == pytest.approx(bits["Y"] / len(splats))
    assert info["header_bytes"] == gscodec.format.container.HEADER_SIZE
    assert info["header_bytes"] + info["chunk_overhead_bytes"] + info["payload_bytes"] == len(data)
    assert 8 * info["payload_bytes"] - sum(bits.values()) == info["coder_flush_bits"] >= 0


def test_encode_progress(tmp_path: Path, png_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gsc = tmp_path / "a.gsc"
    status, out, err = run(capsys, "encode", png_file, gsc, "-e", 0, "--progress")
    assert status == 0 and "\r" in err and "100%" in err and err.endswith("\n")
    status, out, err = run(capsys, "encode", png_file, gsc, "-e", 0, "--progress", "--quiet")
    assert (status, out, err) == (0, "", "")


def test_encode_options_reach_the_encoder(
    tmp_path: Path, png_file: Path, gsc_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []

    def fake_encode(image: Image.Image, /, **kwargs: object) -> bytes:
        calls.append(kwargs)
        assert image.size == (33, 17)
        return gsc_file.read_bytes()

    monkeypatch.setattr(gscodec.cli, "encode", fake_encode)
    gsc = tmp_path / "a.gsc"
    assert run(capsys, "encode", png_file, gsc, "--target-bpp", 1.5, "-e", 7, "--seed", 3)[0] == 0
    assert run(capsys, "encode", png_file, gsc, "-q", 12.5, "--quiet", "--device", "auto")[0] == 0
    assert calls[0] | {"progress": None} == {
        "quality": gscodec.DEFAULT_QUALITY, "effort": 7, "target_bpp": 1.5, "drop_alpha": False,
        "progress": None, "seed": 3, "device": "cpu",
    }
    assert calls[1]["device"] == "auto"
    assert calls[1]["quality"] == 12.5 and calls[1]["target_bpp"] is None
    assert calls[1]["effort"] == gscodec.DEFAULT_EFFORT
    assert gsc.read_bytes() == gsc_file.read_bytes()


def test_encode_alpha(
    tmp_path: Path, rgb_image: np.ndarray, gsc_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgba, gsc = tmp_path / "rgba.png", tmp_path / "a.gsc"
    Image.fromarray(rgb_image).convert("RGBA").save(rgba)
    status, _, err = run(capsys, "encode", rgba, gsc, "-e", 0)
    assert status == 1 and "--drop-alpha" in err and not gsc.exists()
    assert_one_line_error(err)
    status, _, err = run(capsys, "encode", rgba, gsc, "-e", 0, "--drop-alpha", "--quiet")
    assert (status, err) == (0, "")
    assert gsc.read_bytes() == gsc_file.read_bytes()


def test_decode_scale_layers_formats(tmp_path: Path, gsc_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = gsc_file.read_bytes()
    status, _, _ = run(capsys, "decode", gsc_file, tmp_path / "half.png", "--scale", 0.5)
    assert status == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "half.png")), gscodec.decode(data, scale=0.5))
    status, _, _ = run(capsys, "decode", gsc_file, tmp_path / "bg.png", "--layers", 0, "--quiet")
    assert status == 0
    background = np.asarray(Image.open(tmp_path / "bg.png"))
    assert (background == background[0, 0]).all()  # no layers: the background colour alone
    for ext, fmt in [(".jpg", "JPEG"), (".bmp", "BMP"), (".webp", "WEBP"), (".TIFF", "TIFF")]:
        status, _, err = run(capsys, "decode", gsc_file, tmp_path / f"out{ext}", "--quiet")
        assert (status, err) == (0, "")
        assert Image.open(tmp_path / f"out{ext}").format == fmt


@pytest.mark.skipif(gscodec.has_cuda(), reason="checks the message on a machine without CUDA")
def test_device_without_cuda(
    tmp_path: Path, gsc_file: Path, png_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "decode", gsc_file, tmp_path / "x.png", "--device", "cuda")
    assert status == 1 and "pip install gscodec[cuda]" in err and not (tmp_path / "x.png").exists()
    status, _, err = run(capsys, "encode", png_file, tmp_path / "x.gsc", "--device", "cuda:1", "-e", 0)
    assert status == 1 and "not available" in err and not (tmp_path / "x.gsc").exists()
    status, _, err = run(capsys, "decode", gsc_file, tmp_path / "x.png", "--device", "auto", "--quiet")
    assert (status, err) == (0, "")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png")), gscodec.decode(gsc_file.read_bytes()))


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "encode" in out and "decode" in out and "info" in out
    status, out, _ = run(capsys, "--version")
    assert status == 0 and gscodec.__version__ in out


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["encode", "{missing}", "{out}.gsc"], 1, "cannot open"),
        (["encode", "{text}", "{out}.gsc"], 1, "cannot identify"),
        (["encode", "{png}", "{tmp}/no/such/dir/a.gsc"], 1, "does not exist"),
        (["decode", "{missing}", "{out}.png"], 1, "cannot read"),
        (["decode", "{corrupt}", "{out}.png"], 1, "truncated"),
        (["decode", "{png}", "{out}.png"], 1, "not a .gsc"),
        (["decode", "{gsc}", "{tmp}/no/such/dir/a.png"], 1, "cannot write"),
        (["info", "{missing}"], 1, "cannot read"),
        (["info", "{tmp}"], 1, "cannot read"),
        (["info", "{corrupt}", "--json"], 1, "truncated"),
        (["encode", "{png}", "{out}.gsc", "--quality", "abc"], 2, "not a number"),
        (["encode", "{png}", "{out}.gsc", "--quality", "101"], 2, "outside"),
        (["encode", "{png}", "{out}.gsc", "-q", "10", "--target-bpp", "1"], 2, "not allowed"),
        (["encode", "{png}", "{out}.gsc", "--effort", "99"], 2, "effort"),
        (["encode", "{png}"], 2, "required"),
        (["decode", "{gsc}", "{out}.xyz"], 2, "extension"),
        (["decode", "{gsc}", "{out}.gsc"], 2, "gscodec encode"),
        (["decode", "{gsc}", "{out}.png", "--scale", "0"], 2, "scale"),
        (["decode", "{gsc}", "{out}.png", "--layers", "-1"], 2, "layers"),
        (["info", "{gsc}", "--frobnicate"], 2, "unrecognized"),
        (["frobnicate"], 2, "invalid choice"),
        ([], 2, "required"),
    ],
)
def test_errors(
    argv: list[str], status: int, message: str, tmp_path: Path, png_file: Path, gsc_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "text.txt").write_text("not an image\n")
    (tmp_path / "corrupt.gsc").write_bytes(gsc_file.read_bytes()[:-7])
    names = {
        "tmp": tmp_path, "out": tmp_path / "out", "missing": tmp_path / "missing.gsc", "text": tmp_path / "text.txt",
        "png": png_file, "gsc": gsc_file, "corrupt": tmp_path / "corrupt.gsc",
    }
    before = set(tmp_path.iterdir())
    got, out, err = run(capsys, *(a.format(**names) for a in argv))
    assert got == status and out == ""
    assert_one_line_error(err)
    assert message in err
    assert set(tmp_path.iterdir()) == before  # nothing written, no temporary files left


def test_internal_error_is_one_line(
    tmp_path: Path, png_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_encode(image: object, /, **kwargs: object) -> bytes:
        raise RuntimeError("something broke")

    monkeypatch.setattr(gscodec.cli, "encode", broken_encode)
    status, out, err = run(capsys, "encode", png_file, tmp_path / "a.gsc", "--quiet")
    assert status == 3 and out == "" and "RuntimeError: something broke" in err and "--verbose" in err
    assert_one_line_error(err)
    assert not (tmp_path / "a.gsc").exists()


def test_python_m_gscodec(tmp_path: Path, png_file: Path, gsc_file: Path) -> None:
    # one numba thread: tiny parallel kernels crawl when other processes hold the cores
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}

    def gscodec_cmd(*argv: object) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "gscodec", *map(str, argv)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)

    gsc, out_png = tmp_path / "a.gsc", tmp_path / "a.png"
    done = gscodec_cmd("encode", png_file, gsc, "--effort", "0")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "33x17" in done.stdout
    assert gsc.read_bytes() == gsc_file.read_bytes()
    done = gscodec_cmd("decode", gsc, out_png)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(out_png)), gscodec.read(gsc_file))
    done = gscodec_cmd("info", png_file, "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert_one_line_error(done.stderr)
