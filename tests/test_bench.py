"""Fast tests of the benchmark harness (bench/): BD-rate, result schema, cache, data folders.

The bench extra (scipy, pytorch_msssim, ...) is optional: tests that need it skip without it."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# bench/ is a folder of scripts, not part of the installed package: make the
# repository root importable also when pytest is run without `python -m`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import datasets, metrics, rd
from bench.codecs import JpegCodec
from gscodec.metrics import psnr

H, W = 168, 176  # smallest sizes above the 160 px that 5-scale MS-SSIM needs


def _synthetic(seed: int) -> np.ndarray:
    """A smooth colour image with some texture, [H, W, 3] uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    chans = [128 + 90 * np.sin(x / (7 + 3 * c + seed) + y / (11 + c)) + rng.normal(0, 6, (H, W)) for c in range(3)]
    return np.clip(np.stack(chans, axis=-1), 0, 255).astype(np.uint8)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_synthetic(i)).save(folder / f"img{i}.png")
    return folder


def _run(image_dir: Path, tmp_path: Path, *extra: str) -> dict:
    argv = [
        "--dataset",
        str(image_dir),
        "--codecs",
        "jpeg",
        "--qualities",
        "20,60",
        "--workers",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--cache",
        str(tmp_path / "cache"),
        *extra,
    ]
    assert rd.main(argv) == 0
    return json.loads((tmp_path / "out" / "jpeg.json").read_text())


def needs_msssim() -> None:
    """Skip unless pytorch_msssim (bench extra) is there: bench.rd computes MS-SSIM for every image."""
    pytest.importorskip("pytorch_msssim")


@pytest.fixture()
def bdrate():
    """bench.bdrate, which needs scipy (bench extra)."""
    pytest.importorskip("scipy")
    from bench import bdrate

    return bdrate


# --- BD-rate -------------------------------------------------------------------

RATE = np.array([0.15, 0.3, 0.55, 0.9, 1.4])
PSNR = np.array([25.0, 28.0, 30.5, 32.5, 34.8])


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25, 2.0])
def test_bd_rate_of_constant_rate_factor_is_that_factor(bdrate, factor: float) -> None:
    assert bdrate.bd_rate(RATE, PSNR, factor * RATE, PSNR) == pytest.approx(100 * (factor - 1), abs=1e-9)


@pytest.mark.parametrize("shift", [-1.0, 0.0, 0.5])
def test_bd_psnr_of_constant_quality_shift_is_that_shift(bdrate, shift: float) -> None:
    assert bdrate.bd_quality(RATE, PSNR, RATE, PSNR + shift) == pytest.approx(shift, abs=1e-9)


def test_bd_rate_is_antisymmetric_in_log_rate_and_ignores_point_order(bdrate) -> None:
    test_rate = RATE * np.array([0.7, 0.75, 0.8, 0.85, 0.9])
    fwd = bdrate.bd_rate(RATE, PSNR, test_rate[::-1], PSNR[::-1])
    back = bdrate.bd_rate(test_rate, PSNR, RATE, PSNR)
    assert math.log1p(fwd / 100) == pytest.approx(-math.log1p(back / 100))
    assert -30 < fwd < -10


def test_bd_rate_without_overlap_is_an_error(bdrate) -> None:
    with pytest.raises(ValueError, match="overlap"):
        bdrate.bd_rate(RATE, PSNR, RATE, PSNR + 20)


# --- bench.rd ------------------------------------------------------------------


def test_rd_writes_compressai_schema(image_dir: Path, tmp_path: Path) -> None:
    needs_msssim()
    data = _run(image_dir, tmp_path)
    assert data["name"] == "jpeg" and isinstance(data["description"], str)
    assert data["qualities"] == [20, 60] and data["images"] == 2
    res = data["results"]
    assert set(res) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert all(len(v) == 2 for v in res.values())
    assert res["bpp"][0] < res["bpp"][1] and res["psnr-rgb"][0] < res["psnr-rgb"][1]
    assert all(0 < v <= 1 for v in res["ms-ssim-rgb"])
    assert set(data["per_image"]) == {"img0", "img1"}

    # bpp from real bytes and PSNR on the 8-bit decode, recomputed independently
    bpps, psnrs = [], []
    for i in range(2):
        img = _synthetic(i)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=60)
        dec = np.asarray(Image.open(buf).convert("RGB"))
        bpps.append(8 * buf.tell() / (H * W))
        psnrs.append(psnr(img, dec))
        assert data["per_image"][f"img{i}"]["bpp"][1] == pytest.approx(bpps[-1])
    assert res["bpp"][1] == pytest.approx(np.mean(bpps))
    assert res["psnr-rgb"][1] == pytest.approx(np.mean(psnrs))


def test_rd_resumes_from_cache_without_encoding_again(
    image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_msssim()
    first = _run(image_dir, tmp_path)
    calls: list[int] = []
    original = JpegCodec.encode

    def counting_encode(self: JpegCodec, img: np.ndarray, quality: int) -> bytes:
        calls.append(quality)
        return original(self, img, quality)

    monkeypatch.setattr(JpegCodec, "encode", counting_encode)
    again = _run(image_dir, tmp_path)
    assert calls == []
    assert again["results"] == first["results"]

    # an interrupted run: one result missing from the cache is the only one recomputed
    (tmp_path / "cache" / "imgs" / "jpeg" / "q60" / "img1.json").unlink()
    resumed = _run(image_dir, tmp_path)
    assert calls == [60]
    assert resumed["results"]["bpp"] == first["results"]["bpp"]


def test_parse_qualities_global_and_per_codec() -> None:
    assert rd.parse_qualities(None, "jpeg", (1, 2)) == [1, 2]
    assert rd.parse_qualities(["10,20"], "jpeg", (1,)) == [10, 20]
    assert rd.parse_qualities(["webp=5", "jpeg=30,40"], "jpeg", (1,)) == [30, 40]
    assert rd.parse_qualities(["webp=5"], "jpeg", (1,)) == [1]


def test_small_div2k_folder_is_not_named_div2k(image_dir: Path) -> None:
    name, _ = datasets.resolve("div2k", str(image_dir))
    assert name == "div2k-partial"


def test_metrics_on_identical_and_tiny_images() -> None:
    img = _synthetic(3)
    assert metrics.psnr_rgb(img, img) == math.inf
    assert metrics.ms_ssim_rgb(img[:64, :64], img[:64, :64]) is None  # too small: no torch needed
    assert metrics.bpp(96, 16, 48) == 1.0
    needs_msssim()
    assert metrics.ms_ssim_rgb(img, img) == pytest.approx(1.0, abs=1e-6)


def test_psnr_is_one_function() -> None:
    """bench's PSNR-RGB is gscodec.metrics.psnr, which the demo and tests use too."""
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 60  # MSE = 3600 / 60 = 60
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 60))
    assert metrics.psnr_rgb(a, b) == psnr(a, b) and psnr(b, b) == math.inf
    import gscodec

    for x, y in [(a, b.astype(np.float32)), (a, b[:2]), (a, "image")]:
        with pytest.raises(gscodec.GscError):
            psnr(x, y)


# --- data folders ----------------------------------------------------------------


@pytest.fixture()
def data_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Three data folders (option, environment, ../shared/data), each with its own kodak/ folder."""
    roots = {name: tmp_path / name for name in ("option", "env", "shared")}
    for root in roots.values():
        (root / "kodak").mkdir(parents=True)
    monkeypatch.setenv("GSCODEC_DATA", str(roots["env"]))
    monkeypatch.setattr(datasets, "SHARED_DATA_DIR", roots["shared"])
    return roots


def test_data_folder_order(data_roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    option = str(data_roots["option"])
    assert datasets.resolve("kodak", data_dir=option) == ("kodak", data_roots["option"] / "kodak")
    assert datasets.resolve("kodak") == ("kodak", data_roots["env"] / "kodak")
    (data_roots["env"] / "kodak").rmdir()  # a folder that lacks the dataset is passed over
    assert datasets.resolve("kodak") == ("kodak", data_roots["shared"] / "kodak")
    monkeypatch.delenv("GSCODEC_DATA")
    assert datasets.resolve("kodak") == ("kodak", data_roots["shared"] / "kodak")


def test_missing_data_names_every_place(data_roots: dict[str, Path]) -> None:
    for root in data_roots.values():
        (root / "kodak").rmdir()
    with pytest.raises(ValueError, match="kodak") as info:
        datasets.resolve("kodak", data_dir=str(data_roots["option"]))
    message = str(info.value)
    assert all(str(root / "kodak") in message for root in data_roots.values())
    assert "--data-dir" in message and "GSCODEC_DATA" in message and "../shared/data" in message


def test_default_data_folder_is_beside_the_checkout() -> None:
    checkout = Path(__file__).resolve().parents[1]
    assert datasets.SHARED_DATA_DIR == checkout.parent / "shared" / "data"
    for path in (checkout / "bench").glob("*.py"):
        assert f'"{checkout.parent}/' not in path.read_text(), f"{path.name} names a machine path"


def test_gscodec_wrapper_passes_effort_and_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from bench.codecs import make_codec

    seen: dict = {}

    def encode(img: np.ndarray, /, *, quality: int, effort: int = 0, device: str = "cpu") -> bytes:
        seen.update(quality=quality, effort=effort, encode_device=device)
        return img.tobytes()

    def decode(data: bytes, /, *, device: str = "cpu") -> np.ndarray:
        seen.update(decode_device=device)
        return np.frombuffer(data, np.uint8).reshape(H, W, 3)

    (tmp_path / "gscodec").mkdir()
    (tmp_path / "gscodec" / "__init__.py").write_text("")
    fake = types.ModuleType("gscodec")
    fake.__file__ = str(tmp_path / "gscodec" / "__init__.py")
    fake.encode, fake.decode = encode, decode
    monkeypatch.setitem(sys.modules, "gscodec", fake)

    codec = make_codec("gscodec-e2")
    assert codec.name == "gscodec-e2" and codec.unavailable() is None
    img = _synthetic(0)
    assert np.array_equal(codec.decode(codec.encode(img, 40)), img)
    assert seen == {"quality": 40, "effort": 2, "encode_device": "cpu", "decode_device": "cpu"}
    codec = make_codec("gscodec", device="cuda:1")
    codec.decode(codec.encode(img, 40))
    assert seen["encode_device"] == seen["decode_device"] == "cuda:1"


def test_render_speed_and_gpu_refinement_checks(tmp_path: Path) -> None:
    """The GPU measurements' code runs on the CPU too; refine_speed refuses cuda without a GPU."""
    import gscodec
    from bench import refine_speed, speed

    data = gscodec.encode(_synthetic(0), effort=0)
    r = speed.render_speed({"img0": data}, "cpu", frames=2, repeats=1)
    assert r["device"] == "cpu" and r["per_image"]["img0"]["splats"] == len(gscodec.decode_splats(data))
    assert r["device_render_fps"] == pytest.approx(1e3 / r["device_render_ms"])
    assert r["device_vs_cpu_speedup"] > 0
    if not gscodec.has_cuda():
        folder = tmp_path / "imgs"
        folder.mkdir()
        Image.fromarray(_synthetic(0)).save(folder / "img0.png")
        argv = ["--dataset", str(folder), "--image", "img0", "--backends", "cuda,torch", "--out", str(tmp_path / "r")]
        assert refine_speed.main(argv) == 2


def test_speed_reports_decode_peak_memory(image_dir: Path, tmp_path: Path) -> None:
    from bench import speed

    _, mib = speed.peak_rss_during(lambda n: np.ones(n).sum(), 10_000_000)  # an 80 MB array
    if mib is not None:  # Linux
        assert mib > 60
    out = tmp_path / "speed.json"
    assert speed.main(["--dataset", str(image_dir), "--codecs", "jpeg", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["codecs"]) == {"jpeg", "webp"}
    for r in report["codecs"].values():
        assert "decode_peak_mib" in r and "decode_peak_mib" in r["per_image"]["img0"]


def test_speed_reuses_kept_streams(image_dir: Path, tmp_path: Path) -> None:
    """--streams: the first run encodes and keeps the streams, the second decodes them without encoding
    (and measures paired decode ratios against WebP)."""
    from bench import speed

    argv = ["--dataset", str(image_dir), "--codecs", "gscodec-predictor-e0", "--quality", "gscodec-predictor-e0=0",
            "--repeats", "1", "--streams", str(tmp_path / "streams")]
    assert speed.main([*argv, "--out", str(tmp_path / "first.json")]) == 0
    kept = sorted((tmp_path / "streams" / "gscodec-predictor-e0").glob("*.gsc"))
    assert [p.stem for p in kept] == ["img0", "img1"]
    assert speed.main([*argv, "--out", str(tmp_path / "second.json"), "--paired", "3"]) == 0
    first, second = (json.loads((tmp_path / f"{n}.json").read_text())["codecs"]["gscodec-predictor-e0"]
                     for n in ("first", "second"))
    assert first["encode_ms"] > 0 and second["encode_ms"] is None
    for name, row in second["per_image"].items():
        assert row["stream_reused"] and row["encoding_time"] is None and row["decoding_time"] > 0
        assert row["bpp"] == first["per_image"][name]["bpp"]
    paired = second["decode_vs_webp_paired"]
    assert paired["rounds"] == 3 and set(paired["per_image"]) == {"img0", "img1"}
    assert all(v > 0 for v in paired["per_image"].values()) and paired["max"] == max(paired["per_image"].values())
    assert "decode_vs_webp_paired" not in first


def test_rate_reports_the_miss_and_the_quality(image_dir: Path, tmp_path: Path) -> None:
    from bench import rate

    out = tmp_path / "rate.json"
    assert rate.main(["--dataset", str(image_dir), "--targets", "0.8", "--psnr-targets", "25", "--effort", "0",
                      "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    row = report["per_image"]["target_bpp"]["img0"]["0.8"]
    assert row["miss"] == pytest.approx(row["bpp"] / 0.8 - 1) and 0 <= row["quality"] <= 100
    row = report["per_image"]["target_psnr"]["img0"]["25.0"]
    assert row["miss"] == pytest.approx(row["reached"] - 25) and 0 <= row["quality"] <= 100
    assert report["summary"]["target_bpp"]["0.8"]["images"] == 2
    assert report["summary"]["target_psnr"]["25.0"]["images"] == 2


def test_bits_by_attribute_add_up_to_the_file(image_dir: Path, tmp_path: Path) -> None:
    from bench import bits

    out = tmp_path / "bits.json"
    assert bits.main(["--dataset", str(image_dir), "--qualities", "30", "80", "--effort", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for q in ("30", "80"):
        row = report["per_image"][q]["img0"]
        parts = sum(row[n] for n in [*bits.GROUPS, "other"])
        assert parts == pytest.approx(row["bpp"] * H * W) and row["splats"] > 0
        assert all(row[n] > 0 for n in ("counts", "offsets", "scales", "Y"))
        # the header and GEND (48 bytes); per layer its chunk framing and parameters (66) and the last word
        assert 8 * (48 + 66 * row["layers"]) <= row["other"] <= 8 * (48 + 70 * row["layers"])
        assert sum(report["summary"][q]["share"].values()) == pytest.approx(1)
    assert report["summary"]["80"]["bpp"] > report["summary"]["30"]["bpp"]
