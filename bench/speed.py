"""Encode and decode speed per image on this machine.

``python -m bench.speed --dataset kodak --repeats 5``

Each codec runs at one setting (``Codec.speed_quality`` unless ``--quality``
overrides it). Per image: one untimed warm-up encode and decode, then
``--repeats`` timed encodes and decodes (wall clock, ``time.perf_counter``,
in-process, one image at a time); the per-image figure is the median over the
repeats, and the table gives the mean over images of those medians. Decode
times are compared to JPEG and WebP measured in the same run (both are always
included). Decode time covers bytes -> ``[H, W, 3]`` uint8 array. One more,
untimed decode per image measures the decode's peak memory (``decode_peak_mib``: the
rise of the process's peak RSS above its RSS before the call, Linux only; the
maximum over images).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import datasets, metrics, schema
from bench.codecs import Codec, codec_names, make_codec
from bench.progress import Progress
from bench.rd import BENCH_DIR, DEFAULT_CODECS, parse_qualities


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _malloc_trim() -> None:
    """Hand glibc's free heap pages back to the OS, so that a call's allocations touch
    fresh pages and show in RSS (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_during(fn: Callable[..., Any], *args: Any) -> tuple[Any, float | None]:
    """(fn(*args), MiB by which the process's peak RSS rose above its RSS before the call).

    Linux only (resets the peak through /proc/self/clear_refs; None elsewhere). Counts
    every allocator (numpy, torch, numba); glibc's free pages are released first, but
    memory a library keeps in its own pool (torch's, for one) can still be reused
    unseen, so it is a lower bound on the call's working memory."""
    _malloc_trim()
    before = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        before = None
    result = fn(*args)
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return result, None
    return result, max(0, peak - before) / 1024


def machine_info(load_before: tuple[float, float, float], **extra: str) -> dict[str, Any]:
    """This machine, for result files; the 1-minute load average before and after the run
    shows whether other jobs inflated the timings."""
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **extra,
        "loadavg_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def time_codec(
    codec: Codec, images: list[Path], quality: int, repeats: int, encode_repeats: int | None = None
) -> dict[str, Any]:
    """Median encode/decode seconds per image; means over images in ms.

    ``encode_repeats`` (default ``repeats``) lets slow encoders be timed fewer times
    than their decoder."""
    encode_repeats = repeats if encode_repeats is None else max(1, encode_repeats)
    per_image: dict[str, dict[str, float]] = {}
    with Progress(len(images), codec.name) as bar:
        for path in images:
            img = datasets.load_rgb(path)
            data = codec.encode(img, quality)  # warm-up (and first use of lazy back-ends)
            codec.decode(data)
            enc, dec = [], []
            for i in range(max(repeats, encode_repeats)):
                if i < encode_repeats:
                    t0 = time.perf_counter()
                    data = codec.encode(img, quality)
                    enc.append(time.perf_counter() - t0)
                if i < repeats:
                    t1 = time.perf_counter()
                    codec.decode(data)
                    dec.append(time.perf_counter() - t1)
            _, peak = peak_rss_during(codec.decode, data)  # untimed
            per_image[path.stem] = {
                "bpp": metrics.bpp(len(data), *img.shape[:2]),
                "encoding_time": statistics.median(enc),
                "decoding_time": statistics.median(dec),
                "decode_peak_mib": peak,
            }
            bar.update()
    values = list(per_image.values())
    return {
        "quality": quality,
        "description": f"{codec.description}. {codec.version()}",
        "bpp": statistics.fmean(v["bpp"] for v in values),
        "encode_ms": 1e3 * statistics.fmean(v["encoding_time"] for v in values),
        "decode_ms": 1e3 * statistics.fmean(v["decoding_time"] for v in values),
        "decode_peak_mib": _max_or_none([v["decode_peak_mib"] for v in values]),
        "per_image": per_image,
    }


def _max_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(max(values), 2)  # type: ignore[type-var]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="kodak", help="kodak, div2k (with --div2k-dir) or a folder")
    ap.add_argument("--div2k-dir")
    ap.add_argument("--images", nargs="+", help="image names or globs")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--codecs", default=DEFAULT_CODECS, help=f"comma list of {', '.join(codec_names())}")
    ap.add_argument("--gscodec-effort", help="comma list of efforts: adds gscodec-e<N> for each")
    ap.add_argument("--quality", nargs="+", help="setting for all codecs (50) or per codec (jpeg=50 jpeg2000=34)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--encode-repeats", type=int, help="timed encodes per image (default: --repeats)")
    ap.add_argument("--device", help="device for gscodec.decode (e.g. cuda); classical codecs run on CPU")
    ap.add_argument("--out", type=Path, help="output JSON (default bench/results/<dataset>/speed.json)")
    args = ap.parse_args(argv)
    try:
        dataset, images = datasets.select(args.dataset, args.div2k_dir, args.images, args.limit)
        names = ["jpeg", "webp"] + [n for n in args.codecs.split(",") if n]
        names += [f"gscodec-e{int(e)}" for e in (args.gscodec_effort or "").split(",") if e]
        codecs = [make_codec(n, device=args.device) for n in dict.fromkeys(names)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for codec in codecs:
        reason = codec.unavailable()
        if reason:
            print(f"skipping {reason}", file=sys.stderr)
            continue
        (quality,) = parse_qualities(args.quality, codec.name, (codec.speed_quality,))[-1:]
        try:
            results[codec.name] = time_codec(codec, images, quality, args.repeats, args.encode_repeats)
        except TypeError as exc:
            if "device" not in str(exc):
                raise
            print(f"skipping {codec.name}: {exc}", file=sys.stderr)
    for r in results.values():
        for ref in ("jpeg", "webp"):
            if ref in results:
                r[f"decode_vs_{ref}"] = r["decode_ms"] / results[ref]["decode_ms"]

    report = {
        "dataset": dataset,
        "images": len(images),
        "repeats": args.repeats,
        "encode_repeats": args.encode_repeats or args.repeats,
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(load_before, device=args.device or "cpu"),
        "codecs": results,
    }
    out = args.out or BENCH_DIR / "results" / dataset / "speed.json"
    schema.write(out, report)
    print(f"\n{dataset}, {len(images)} images, median of {args.repeats} repeats per image, mean over images")
    print(f"{'codec':<14} {'quality':>7} {'bpp':>7} {'enc ms':>9} {'dec ms':>8} {'dec/JPEG':>9} {'dec/WebP':>9}"
          f" {'dec MiB':>8}")
    for name, r in results.items():
        mib = r["decode_peak_mib"]
        print(
            f"{name:<14} {r['quality']:>7} {r['bpp']:7.3f} {r['encode_ms']:9.1f} {r['decode_ms']:8.2f} "
            f"{r.get('decode_vs_jpeg', float('nan')):9.2f} {r.get('decode_vs_webp', float('nan')):9.2f}"
            f" {'n/a' if mib is None else f'{mib:.1f}':>8}"
        )
    print(f"load average (1 min) before/after: {report['machine']['loadavg_1min']}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
