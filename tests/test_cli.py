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
    assert "<" in err and "00:" in err  # elapsed<remaining (tqdm)
    status, out, err = run(capsys, "encode", png_file, gsc, "-e", 0, "--progress", "--quiet", "-y")
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
    assert run(capsys, "encode", png_file, gsc, "-q", 12.5, "--quiet", "--device", "auto", "-y",
               "--init", "detail")[0] == 0
    assert run(capsys, "encode", png_file, gsc, "--target-psnr", 31.5, "-y")[0] == 0
    assert calls[0] | {"progress": None} == {
        "quality": gscodec.DEFAULT_QUALITY, "effort": 7, "target_bpp": 1.5, "target_psnr": None, "drop_alpha": False,
        "progress": None, "seed": 3, "device": "cpu", "init": gscodec.DEFAULT_INIT,
    }
    assert calls[1]["device"] == "auto" and calls[1]["init"] == "detail"
    assert calls[1]["quality"] == 12.5 and calls[1]["target_bpp"] is None
    assert calls[1]["effort"] == gscodec.DEFAULT_EFFORT
    assert calls[2]["target_psnr"] == 31.5 and calls[2]["target_bpp"] is None
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
        (["encode", "{png}", "{out}.gsc", "--target-psnr", "30", "--target-bpp", "1"], 2, "not allowed"),
        (["encode", "{png}", "{out}.gsc", "--target-psnr", "-3"], 2, "above 0"),
        (["encode", "{png}", "{out}.gsc", "--effort", "99"], 2, "effort"),
        (["encode", "{png}"], 2, "required"),
        (["decode", "{gsc}", "{out}.xyz"], 2, "extension"),
        (["decode", "{gsc}", "{out}.gsc"], 2, "gscodec encode"),
        (["encode", "{png}", "{out}.png"], 2, ".gsc"),
        (["encode", "{png}", "{out}"], 2, ".gsc"),
        (["encode", "{png}", "{tmp}"], 2, ".gsc"),
        (["encode", "{png}", "{png}", "{out}.gsc"], 2, "-o DIR"),
        (["encode", "{png}", "-o", "{tmp}/no/such/dir/"], 1, "does not exist"),
        (["decode", "{gsc}", "{gsc}"], 2, "gscodec encode"),
        (["decode", "{gsc}", "{out}.png", "--format", "xyz"], 2, "format"),
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


# --- never lose data: inputs, other formats, existing files --------------------------------


@pytest.fixture
def no_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the CLI reaches the (slow) encoder."""

    def refuse(image: object, /, **kwargs: object) -> bytes:
        raise AssertionError("encode was called although the output was unusable")

    monkeypatch.setattr(gscodec.cli, "encode", refuse)


def test_encode_glob_of_images_replaces_nothing(
    tmp_path: Path, rgb_image: np.ndarray, capsys: pytest.CaptureFixture[str], no_encode: None
) -> None:
    """`gscodec encode *.png` in a folder of a.png and b.png must not turn b.png into a .gsc stream."""
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rgb_image).save(tmp_path / name)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for argv in (["a.png", "b.png"], ["a.png", "a.png"], ["a.png", "b.png", "c.png"], ["c.png", "c.jpg"],
                 ["a.png", "a"], ["a.png", "b.png", "-y"]):
        status, out, err = run(capsys, "encode", *(tmp_path / a if a != "-y" else a for a in argv))
        assert status == 2 and out == "", argv
        assert_one_line_error(err)
        assert "-o DIR" in err and (".gsc" in err or "3 paths" in err), err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_encode_never_overwrites_its_input(
    tmp_path: Path, gsc_file: Path, capsys: pytest.CaptureFixture[str], no_encode: None
) -> None:
    """A .gsc input (re-encoding is allowed) is refused as the output, even with -y."""
    src = tmp_path / "x.gsc"
    src.write_bytes(gsc_file.read_bytes())
    (tmp_path / "hard.gsc").hardlink_to(src)
    (tmp_path / "sym.gsc").symlink_to(src)
    for out in (src, tmp_path / "." / "x.gsc", tmp_path / "hard.gsc", tmp_path / "sym.gsc"):
        status, _, err = run(capsys, "encode", src, out, "-y")
        assert status == 1 and "input" in err, (out, err)
        assert_one_line_error(err)
    status, _, err = run(capsys, "encode", src, "-o", tmp_path, "-y")  # -o DIR: DIR/x.gsc is the input
    assert status == 1 and "input" in err
    assert src.read_bytes() == gsc_file.read_bytes()


def test_existing_output_needs_force(
    tmp_path: Path, png_file: Path, gsc_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gsc, png = tmp_path / "a.gsc", tmp_path / "a.png"
    gsc.write_bytes(b"keep me")
    png.write_bytes(b"keep me too")
    status, _, err = run(capsys, "encode", png_file, gsc, "-e", 0)
    assert status == 1 and "exists" in err and "-y" in err and gsc.read_bytes() == b"keep me"
    assert_one_line_error(err)
    status, _, err = run(capsys, "decode", gsc_file, png)
    assert status == 1 and "exists" in err and png.read_bytes() == b"keep me too"
    assert run(capsys, "encode", png_file, gsc, "-e", 0, "-y", "--quiet")[0] == 0
    assert gsc.read_bytes() == gsc_file.read_bytes()
    assert run(capsys, "decode", gsc_file, png, "--force", "--quiet")[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(png)), gscodec.decode(gsc_file.read_bytes()))


def test_unusable_output_is_found_before_encoding(
    tmp_path: Path, png_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    no_encode: None,
) -> None:
    (tmp_path / "folder.gsc").mkdir()
    for out, message in [(tmp_path / "folder.gsc", "folder"), (tmp_path / "missing" / "a.gsc", "does not exist")]:
        status, _, err = run(capsys, "encode", png_file, out)
        assert status == 1 and message in err, err
        assert_one_line_error(err)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # an unwritable folder, even as root
    status, _, err = run(capsys, "encode", png_file, tmp_path / "a.gsc")
    assert status == 1 and "not writable" in err
    assert not (tmp_path / "a.gsc").exists()


def test_several_inputs_to_a_folder(
    tmp_path: Path, rgb_image: np.ndarray, gsc_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rgb_image).save(src / name)
    (src / "broken.png").write_bytes(b"not an image")
    inputs = [src / "a.png", src / "broken.png", src / "b.png"]
    status, stdout, err = run(capsys, "encode", *inputs, "-o", f"{out}/", "-e", 0)
    assert status == 1  # one failed, the others were written
    assert "broken.png" in err and "cannot identify" in err and "1 of 3" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.gsc", "b.gsc"]
    assert (out / "a.gsc").read_bytes() == (out / "b.gsc").read_bytes() == gsc_file.read_bytes()
    assert stdout.count("\n") == 2

    status, _, err = run(capsys, "encode", src / "a.png", src / "b.png", "-o", out, "-e", 0, "--quiet")
    assert status == 1 and err.count("exists") == 2  # nothing replaced without -y

    status, _, err = run(capsys, "decode", out / "a.gsc", out / "b.gsc", "-o", out, "--format", "jpg", "--quiet")
    assert (status, err) == (0, "")
    assert {p.name for p in out.iterdir()} == {"a.gsc", "b.gsc", "a.jpg", "b.jpg"}
    assert Image.open(out / "b.jpg").format == "JPEG"
    status, _, err = run(capsys, "decode", out / "a.gsc", out / "b.gsc", "-o", out, "--quiet")  # default png
    assert (status, err) == (0, "")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), gscodec.decode(gsc_file.read_bytes()))


def test_several_inputs_with_one_output_name(
    tmp_path: Path, rgb_image: np.ndarray, capsys: pytest.CaptureFixture[str], no_encode: None
) -> None:
    Image.fromarray(rgb_image).save(tmp_path / "a.png")
    Image.fromarray(rgb_image).save(tmp_path / "b.png")
    status, _, err = run(capsys, "encode", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "one.gsc")
    assert status == 2 and "folder" in err
    (tmp_path / "sub").mkdir()
    Image.fromarray(rgb_image).save(tmp_path / "sub" / "a.png")
    argv = ["encode", tmp_path / "a.png", tmp_path / "sub" / "a.png", "-o", f"{tmp_path}/out/"]
    status, _, err = run(capsys, *argv)
    assert status == 1 and "does not exist" in err


def test_two_inputs_with_one_stem_do_not_overwrite_each_other(
    tmp_path: Path, rgb_image: np.ndarray, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gscodec.cli, "encode", lambda image, /, **kwargs: gscodec.encode(image, effort=0))
    (tmp_path / "sub").mkdir()
    Image.fromarray(rgb_image).save(tmp_path / "a.png")
    Image.fromarray(rgb_image[::-1]).save(tmp_path / "sub" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    status, _, err = run(capsys, "encode", tmp_path / "a.png", tmp_path / "sub" / "a.png", "-o", out, "-y")
    assert status == 1 and "also the output" in err
    assert gscodec.read(out / "a.gsc").shape == (17, 33, 3)
    assert (out / "a.gsc").read_bytes() == gscodec.encode(rgb_image, effort=0)  # the first input's


def test_decode_format_option(tmp_path: Path, gsc_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "decode", gsc_file, tmp_path / "a.png", "--format", "jpg")
    assert status == 2 and "--format" in err
    status, _, err = run(capsys, "decode", gsc_file, "-o", tmp_path, "--format", "gsc")
    assert status == 2 and "gscodec encode" in err
    status, _, err = run(capsys, "decode", gsc_file, "-o", tmp_path, "--format", "webp", "--quiet")
    assert (status, err) == (0, "")
    assert Image.open(tmp_path / "image.webp").format == "WEBP"


def test_exit_status_of_internal_and_pillow_errors(
    tmp_path: Path, png_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy_encode(image: object, /, **kwargs: object) -> bytes:
        raise ValueError("an index went wrong")  # a bug in our code, not the user's input

    monkeypatch.setattr(gscodec.cli, "encode", buggy_encode)
    status, _, err = run(capsys, "encode", png_file, tmp_path / "a.gsc", "--quiet")
    assert status == 3 and "internal error" in err and "ValueError" in err
    assert_one_line_error(err)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 33x17 is over twice that: DecompressionBombError
    status, _, err = run(capsys, "encode", png_file, tmp_path / "a.gsc", "--quiet")
    assert status == 1 and "decompression bomb" in err
    assert_one_line_error(err)


def test_encode_applies_exif_orientation(
    tmp_path: Path, rgb_image: np.ndarray, gsc_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_api import oriented_png

    src = tmp_path / "turned.png"
    src.write_bytes(oriented_png(rgb_image))
    assert run(capsys, "encode", src, tmp_path / "a.gsc", "-e", 0, "--quiet")[0] == 0
    assert (tmp_path / "a.gsc").read_bytes() == gsc_file.read_bytes()  # as the upright image encodes


def test_progress_bar_over_several_files(
    tmp_path: Path, png_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.png"
    other.write_bytes(png_file.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    status, _, err = run(capsys, "encode", png_file, other, "-o", out, "-e", 0, "--progress")
    assert status == 0 and "100%" in err and "2/2" in err and "<" in err  # elapsed<remaining
    assert err.count("\n") == 1  # one bar, left on one line


def test_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("encode", "decode"):
        status, out, _ = run(capsys, command, "--help")
        assert status == 0 and "-o DIR" in out and "--force" in out and "IN..." in out
    assert "--format" in run(capsys, "decode", "--help")[1]
