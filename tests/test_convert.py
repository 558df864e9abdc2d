"""Batch conversion (gscodec.convert, `gscodec convert`): planning a tree, the manifest and
resuming, failures recorded and listed, decoding back, the same bytes from every runner (this
process, worker processes, Ray), and a resume after Ctrl-C and after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gscodec
from gscodec.batch import MANIFEST, Manifest, make_settings, plan
from gscodec.cli import main
from tests.conftest import smooth_image

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = {"quality": 10, "effort": 0}  # encoder settings of every test here
FAST_ARGS = ["-q", "10", "-e", "0"]
IMAGES = ["a/b/two.png", "a/gray.png", "a/one.jpg", "top.png"]  # the convertible files of `tree`


def picture(i: int, height: int = 32, width: int = 48) -> np.ndarray:
    """A small RGB uint8 image, different for each ``i``."""
    return ((smooth_image(height, width).astype(np.int64) + 37 * i) % 256).astype(np.uint8)


def expected(path: Path) -> bytes:
    """What the conversion of the image file ``path`` must write: gscodec.encode in this process."""
    with Image.open(path) as image:
        return gscodec.encode(image, **FAST)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """src/ with nested images, a corrupt image, unreadable files, a non-image with an image
    extension, and files a folder conversion passes over."""
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / ".cache").mkdir()
    Image.fromarray(picture(0)).save(src / "top.png")
    Image.fromarray(picture(1)).save(src / "a" / "one.jpg", quality=90)
    Image.fromarray(picture(2)).save(src / "a" / "b" / "two.png")
    Image.fromarray(picture(3)[:, :, 0]).save(src / "a" / "gray.png")  # mode L
    (src / "a" / "corrupt.png").write_bytes((src / "top.png").read_bytes()[:60])  # truncated
    (src / "a" / "fake.jpg").write_text("not an image\n")
    (src / "a" / "b" / "broken.png").symlink_to("missing.png")  # unreadable: a dangling link
    Image.fromarray(picture(4)).save(src / "a" / "b" / "locked.png")
    (src / "a" / "b" / "locked.png").chmod(0)  # unreadable, unless we are root
    (src / "notes.txt").write_text("ignored: not an image\n")
    (src / "old.gsc").write_bytes(b"ignored when encoding")
    Image.fromarray(picture(5)).save(src / ".cache" / "hidden.png")  # dot-folders are skipped
    return src


def failures_of(src: Path) -> set[str]:
    out = {"a/corrupt.png", "a/fake.jpg", "a/b/broken.png"}
    if os.access(src / "a" / "b" / "locked.png", os.R_OK):  # root reads it anyway
        return out
    return out | {"a/b/locked.png"}


def records(dst: Path) -> list[dict]:
    """The manifest's records (a line cut short by a kill is not one)."""
    out = []
    for line in (dst / MANIFEST).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def outputs(dst: Path) -> dict[str, bytes]:
    return {p.relative_to(dst).as_posix(): p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()
            and p.name != MANIFEST}


def gsc_name(key: str) -> str:
    return str(Path(key).with_suffix(".gsc").as_posix())


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------- a tree, in this process


def test_cli_converts_a_tree_records_failures_and_resumes(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "out"
    convertible = IMAGES + ([] if "a/b/locked.png" in failures_of(tree) else ["a/b/locked.png"])
    failed = failures_of(tree)

    status, out, err = run(capsys, "convert", tree, dst, *FAST_ARGS, "--workers", 0)
    assert status == 1
    assert f"done {len(convertible)}, skipped 0" in out and f"failed {len(failed)}, ignored 2" in out
    for key in failed:  # each failure on stderr as it happens, and in the summary with its reason
        assert f"gscodec: error: {key}: " in err and f"  {key}: " in out
    assert "cannot identify image file" in out and "No such file or directory" in out and "truncated" in out
    assert f"{len(failed)} of {len(failed) + len(convertible)} files failed" in err

    want = {gsc_name(k): expected(tree / k) for k in convertible}
    assert outputs(dst) == want  # the tree mirrored, bytes as gscodec.encode makes them, nothing else
    recs = records(dst)
    assert sorted(r["source"] for r in recs) == sorted(convertible + list(failed))
    for r in recs:
        assert set(r) >= {"source", "output", "size", "mtime", "settings", "bytes", "bpp", "time", "error"}
        assert r["settings"] == {"to": "gsc", "quality": 10.0, "target_bpp": None, "target_psnr": None, "effort": 0,
                                 "init": gscodec.DEFAULT_INIT, "seed": 0, "drop_alpha": False, "device": "cpu",
                                 "version": gscodec.__version__}
        if r["error"] is None:
            assert r["bytes"] == len(want[r["output"]]) and r["bpp"] == pytest.approx(8 * r["bytes"] / (32 * 48))

    # a rerun skips what is done and retries only the failures
    status, out, err = run(capsys, "convert", tree, dst, *FAST_ARGS, "-j", 0)
    assert status == 1 and f"done 0, skipped {len(convertible)}" in out
    assert sorted(r["source"] for r in records(dst)[len(recs):]) == sorted(failed)
    # other settings redo every file
    status, out, _ = run(capsys, "convert", tree, dst, "-q", 20, "-e", 0, "-j", 0, "--quiet")
    assert status == 1 and out == ""
    assert len(records(dst)) == 2 * len(recs) + len(failed)


def test_resume_redoes_changed_sources_missing_outputs_and_torn_lines(tree: Path, tmp_path: Path) -> None:
    src = tmp_path / "few"
    src.mkdir()
    for key in ("top.png", "a/one.jpg", "a/b/two.png"):
        (src / Path(key).name).write_bytes((tree / key).read_bytes())
    dst = tmp_path / "out"
    first = gscodec.convert(src, dst, workers=0, **FAST)
    assert (first.done, first.skipped, first.failed, first.ok) == (3, 0, [], True)
    assert first.bytes_out == sum(len(b) for b in outputs(dst).values()) and first.mean_bpp > 0

    os.utime(src / "top.png", ns=(1, 1))  # a changed source
    (dst / "two.gsc").unlink()  # a lost output
    with open(dst / MANIFEST, "a") as f:
        f.write('{"source": "one.jpg", "err')  # a line cut short by a kill
    again = gscodec.convert(src, dst, workers=0, **FAST)
    assert (again.done, again.skipped) == (2, 1)
    assert sorted(r["source"] for r in records(dst)[3:]) == ["top.png", "two.png"]
    assert outputs(dst)["two.gsc"] == expected(src / "two.png")


def test_a_psnr_target_is_searched_and_recorded(tree: Path, tmp_path: Path) -> None:
    src = tmp_path / "one"
    src.mkdir()
    (src / "top.png").write_bytes((tree / "top.png").read_bytes())
    summary = gscodec.convert(src, tmp_path / "out", target_psnr=30, effort=0, workers=0)
    assert summary.done == 1 and summary.ok
    (record,) = records(tmp_path / "out")
    assert record["settings"]["target_psnr"] == 30.0 and record["settings"]["quality"] is None
    with Image.open(src / "top.png") as image:
        want = gscodec.encode(image, target_psnr=30, effort=0)
    assert (tmp_path / "out" / "top.gsc").read_bytes() == want


def test_decode_to_png_mirrors_the_gsc_tree(tmp_path: Path) -> None:
    gsc = tmp_path / "gsc"
    (gsc / "x").mkdir(parents=True)
    for i, key in enumerate(["p.gsc", "x/q.gsc"]):
        gscodec.write(gsc / key, picture(i), **FAST)
    (gsc / "x" / "bad.gsc").write_bytes(b"GSC?" + bytes(40))
    Image.fromarray(picture(0)).save(gsc / "x" / "skip.png")  # not a .gsc file: ignored when decoding
    summary = gscodec.convert(gsc, tmp_path / "png", to="png", workers=0)
    assert (summary.done, summary.ignored, [s for s, _ in summary.failed]) == (2, 1, ["x/bad.gsc"])
    for key in ["p", "x/q"]:
        decoded = np.asarray(Image.open(tmp_path / "png" / f"{key}.png"))
        np.testing.assert_array_equal(decoded, gscodec.read(gsc / f"{key}.gsc"))
    with pytest.raises(gscodec.GscError, match="apply to encoding"):
        gscodec.convert(gsc, tmp_path / "png2", to="png", quality=5)


# ---------------------------------------------------------------- planning


def test_plan_folder_glob_and_list(tree: Path, tmp_path: Path) -> None:
    enc = make_settings(**FAST)
    folder = plan(tree, tmp_path / "out", enc)
    keys = [t.key for t in folder.tasks]
    assert sorted(keys) == sorted(IMAGES + ["a/corrupt.png", "a/fake.jpg", "a/b/broken.png", "a/b/locked.png"])
    assert folder.ignored == 2 and folder.refused == []  # notes.txt, old.gsc; .cache/ skipped
    assert {t.output for t in folder.tasks} == {gsc_name(k) for k in keys}

    by_glob = plan(str(tree / "**" / "*.png"), tmp_path / "out", enc)
    assert sorted(t.key for t in by_glob.tasks) == ["a/b/broken.png", "a/b/locked.png", "a/b/two.png",
                                                     "a/corrupt.png", "a/gray.png", "top.png"]
    one_level = plan(str(tree / "a" / "*.*"), tmp_path / "out", enc)
    assert sorted(t.key for t in one_level.tasks) == ["corrupt.png", "fake.jpg", "gray.png", "one.jpg"]

    listing = tree / "a" / "list.txt"
    listing.write_text("# images\none.jpg\n\nb/two.png\none.jpg\n../old.gsc\n")
    listed = plan(listing, tmp_path / "out", enc)
    assert [t.key for t in listed.tasks] == ["a/one.jpg", "a/b/two.png"]  # rooted at their common folder
    assert [(r["source"], r["error"]) for r in listed.refused] == [("old.gsc", "already a .gsc file, the "
                                                                                "output format")]
    assert [t.key for t in plan([tree / "a" / "one.jpg"], tmp_path / "o", enc).tasks] == ["one.jpg"]


def test_plan_refuses_collisions_and_skips_dst_inside_src(tree: Path, tmp_path: Path) -> None:
    enc = make_settings(**FAST)
    Image.fromarray(picture(9)).save(tree / "top.bmp")  # top.png and top.bmp both -> top.gsc
    inside = tree / "converted"
    inside.mkdir()
    Image.fromarray(picture(9)).save(inside / "made-before.png")
    work = plan(tree, inside, enc)
    assert not any(t.key.startswith("converted/") for t in work.tasks)
    assert [(r["source"], r["error"]) for r in work.refused] == [
        ("top.png", "its output top.gsc is also the output of top.bmp; rename one of them")]
    with pytest.raises(gscodec.GscError, match="SRC itself"):
        plan(tree, tree, enc)
    with pytest.raises(gscodec.GscError, match="does not exist"):
        plan(tmp_path / "nowhere", tmp_path / "o", enc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(gscodec.GscError, match="no files to convert"):
        gscodec.convert(tmp_path / "empty", tmp_path / "o", workers=0)


def test_options_and_usage_errors(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad, match in [({"quality": 101}, "quality"), ({"effort": 99}, "effort"), ({"to": "xyz"}, "to='xyz'"),
                       ({"init": "nope"}, "init"), ({"workers": -1}, "workers"),
                       ({"quality": 5, "target_bpp": 0.3}, "give one of"),
                       ({"target_bpp": 0.3, "target_psnr": 30}, "give one of"),
                       ({"target_psnr": -1}, "target_psnr must be"), ({"target_psnr": True}, "target_psnr must be"),
                       ({"to": "png", "target_psnr": 30}, "target_psnr apply to encoding")]:
        with pytest.raises(gscodec.GscError, match=match):
            gscodec.convert(tree, tmp_path / "o", **bad)  # type: ignore[arg-type]
    status, _, err = run(capsys, "convert", tree / "top.png", tree / "a" / "one.jpg", tmp_path / "o")
    assert status == 2 and "quote a glob" in err
    status, _, err = run(capsys, "convert", "--ray", tree, tmp_path / "o")
    assert status == 2 and "put --ray after SRC DST" in err
    status, _, err = run(capsys, "convert", tree, tmp_path / "o", "--to", "png", "-q", 5)
    assert status == 2 and "--quality apply to encoding" in err
    status, _, err = run(capsys, "convert", tree, tmp_path / "o", "--to", "png", "--target-psnr", 30)
    assert status == 2 and "--target-psnr apply to encoding" in err
    assert not (tmp_path / "o").exists()


def test_a_manifest_is_held_by_one_conversion(tmp_path: Path) -> None:
    with Manifest(tmp_path), pytest.raises(gscodec.GscError, match="in use by another conversion"):
        Manifest(tmp_path).__enter__()


def test_worker_setup_uses_one_thread_and_no_torch_for_decoding() -> None:
    code = ("import sys; from gscodec.batch import setup_worker; setup_worker(False, own_signals=False); "
            "print('torch' in sys.modules); setup_worker(True, own_signals=False); "
            "import torch, numba; print(torch.get_num_threads(), numba.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "1", "1"]


# ---------------------------------------------------------------- worker processes: Ctrl-C, kill, resume


def _wait_for_lines(proc: subprocess.Popen, manifest: Path, count: int, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.002)
    raise AssertionError(f"the manifest did not reach {count} lines (exit status {proc.poll()})")


def test_ctrl_c_and_kill_then_resume_with_worker_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) with 2 workers, then a kill
    of the process group (SIGKILL) with 1 worker, then a rerun: no file converted twice, no
    temporary or partial file left, every output the bytes gscodec.encode makes here."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    keys = [f"{'sub/' if i % 2 else ''}im{i:02d}.png" for i in range(12)]
    for i, key in enumerate(keys):
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture(i, 64, 96)).save(src / key)
    manifest = dst / MANIFEST
    command = [sys.executable, "-m", "gscodec", "convert", str(src), str(dst), *FAST_ARGS]

    def start(workers: int) -> subprocess.Popen:
        # a child inherits an ignored SIGINT (pytest started in the background by a shell), never
        # a handler: with Python's own handler here, the child gets SIGINT's default and Ctrl-C
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return subprocess.Popen(command + ["-j", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        finally:
            signal.signal(signal.SIGINT, previous)

    first = start(2)
    _wait_for_lines(first, manifest, 2)
    os.killpg(first.pid, signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "interrupted" in out and "run the same command again" in err and "Traceback" not in err
    assert not list(dst.rglob("*.tmp"))
    done_first = [r["source"] for r in records(dst)]
    assert 2 <= len(done_first) < len(keys), "the run ended before Ctrl-C: make the images larger"
    inodes = {k: (dst / gsc_name(k)).stat().st_ino for k in done_first}

    second = start(1)
    _wait_for_lines(second, manifest, len(done_first) + 2)
    os.killpg(second.pid, signal.SIGKILL)
    second.communicate(timeout=60)
    recs = records(dst)  # every line whole: a line is written at once, after its file
    assert len(recs) < len(keys), "the run ended before the kill: make the images larger"
    stale = dst / "sub" / f".{gsc_name(keys[-1]).split('/')[-1]}.x1y2z3w4.tmp"
    stale.write_bytes(b"partial")  # what a write killed midway leaves

    status, out, err = run(capsys, "convert", src, dst, *FAST_ARGS, "-j", 0)  # here: no worker start-up to wait for
    assert status == 0, err
    final = records(dst)
    sources = [r["source"] for r in final]
    assert sorted(sources) == sorted(keys) and all(r["error"] is None for r in final)  # none twice
    assert f"skipped {len(recs)}" in out and f"done {len(keys) - len(recs)}" in out
    assert {k: (dst / gsc_name(k)).stat().st_ino for k in done_first} == inodes  # not rewritten
    assert not list(dst.rglob("*.tmp"))
    assert outputs(dst) == {gsc_name(k): expected(src / k) for k in keys}


# ---------------------------------------------------------------- Ray


def test_ray_writes_the_same_bytes_and_resumes(tree: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = gscodec.convert(tree, tmp_path / "out", ray=True, **FAST)
        assert summary.runner.startswith("Ray") and summary.done == len(IMAGES) + (
            "a/b/locked.png" not in failures_of(tree))
        assert {s for s, _ in summary.failed} == failures_of(tree)
        again = gscodec.convert(tree, tmp_path / "out", ray=True, **FAST)
        assert (again.done, again.skipped) == (0, summary.done)
    finally:
        ray.shutdown()
    got = outputs(tmp_path / "out")
    assert {gsc_name(k): got[gsc_name(k)] for k in IMAGES} == {gsc_name(k): expected(tree / k) for k in IMAGES}
