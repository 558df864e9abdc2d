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

``--streams DIR`` keeps gscodec's streams: an image whose ``DIR/<codec>/<name>.gsc`` exists is not
encoded (its encode is not timed: ``encoding_time`` null), the others are encoded and their
streams written there. Decode timings can then be repeated in a minute instead of re-running
a slow encoder; the streams are whatever encoder wrote them (the report lists the reused ones).

``--paired N`` adds, for every codec against WebP, decode ratios measured in pairs: per
image, N rounds of one WebP decode then one decode of the codec, the ratio of each round's
two times, the median over rounds (``decode_vs_webp_paired``). The codecs' own timings above
are taken minutes apart, one codec after the other, and on a shared machine their per-image
ratios moved by up to 0.5 between runs; pairs see the same load.

``--device cuda`` runs gscodec's encoder and decoder on the GPU and adds two
measurements: rendering alone (the splats already on the GPU, the uint8 image left
there: the frames-per-second figure GaussianImage reports) next to the CPU's fused
decoder rendering the same splats, and refinement iterations per second of the CUDA
kernels against the torch reference and the numba kernels on the CPU
(`bench.refine_speed`, on the first image).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import datasets, metrics, schema
from bench.codecs import Codec, codec_names, make_codec
from bench.progress import Progress
from bench.rd import BENCH_DIR, DEFAULT_CODECS, parse_qualities
from gscodec.api import write_atomic


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
    codec: Codec, images: list[Path], quality: int, repeats: int, encode_repeats: int | None = None,
    streams: dict[str, bytes] | None = None, stream_dir: Path | None = None,
) -> dict[str, Any]:
    """Median encode/decode seconds per image; means over images in ms (encode over the
    images that were encoded).

    ``encode_repeats`` (default ``repeats``) lets slow encoders be timed fewer times
    than their decoder. ``streams``, when given, receives each image's encoded bytes.
    ``stream_dir``: streams read from ``<stem>.gsc`` there instead of encoding (not timed),
    or written there after encoding."""
    encode_repeats = repeats if encode_repeats is None else max(1, encode_repeats)
    per_image: dict[str, dict[str, float]] = {}
    with Progress(len(images), codec.name) as bar:
        for path in images:
            img = datasets.load_rgb(path)
            kept = stream_dir / f"{path.stem}.gsc" if stream_dir else None
            reuse = kept is not None and kept.is_file()
            data = kept.read_bytes() if reuse else codec.encode(img, quality)  # warm-up (lazy back-ends)
            if kept is not None and not reuse:
                kept.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(kept, data)
            codec.decode(data)
            enc, dec = [], []
            for i in range(max(repeats, encode_repeats)):
                if i < encode_repeats and not reuse:
                    t0 = time.perf_counter()
                    data = codec.encode(img, quality)
                    enc.append(time.perf_counter() - t0)
                if i < repeats:
                    t1 = time.perf_counter()
                    codec.decode(data)
                    dec.append(time.perf_counter() - t1)
            _, peak = peak_rss_during(codec.decode, data)  # untimed
            if streams is not None:
                streams[path.stem] = data
            per_image[path.stem] = {
                "bpp": metrics.bpp(len(data), *img.shape[:2]),
                "encoding_time": statistics.median(enc) if enc else None,
                **({"stream_reused": True} if reuse else {}),
                "decoding_time": statistics.median(dec),
                "decode_peak_mib": peak,
            }
            bar.update()
    values = list(per_image.values())
    return {
        "quality": quality,
        "description": f"{codec.description}. {codec.version()}",
        "bpp": statistics.fmean(v["bpp"] for v in values),
        "encode_ms": _mean_ms([v["encoding_time"] for v in values]),
        "decode_ms": 1e3 * statistics.fmean(v["decoding_time"] for v in values),
        "decode_peak_mib": _max_or_none([v["decode_peak_mib"] for v in values]),
        "per_image": per_image,
    }


def paired_ratios(codec: Codec, reference: Codec, data: dict[str, bytes], ref_data: dict[str, bytes],
                  rounds: int) -> dict[str, Any]:
    """Per image, the median over ``rounds`` of (codec's decode time / reference's), the two decodes
    of a round back to back (the reference first); and the median and largest over images."""
    per_image = {}
    with Progress(len(data), f"{codec.name} / {reference.name} paired") as bar:
        for name, stream in data.items():
            codec.decode(stream)
            reference.decode(ref_data[name])
            ratios = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                reference.decode(ref_data[name])
                t1 = time.perf_counter()
                codec.decode(stream)
                ratios.append((time.perf_counter() - t1) / (t1 - t0))
            per_image[name] = statistics.median(ratios)
            bar.update()
    values = list(per_image.values())
    return {"rounds": rounds, "per_image": per_image, "median": statistics.median(values), "max": max(values)}


def _mean_ms(seconds: list[float | None]) -> float | None:
    timed = [s for s in seconds if s is not None]
    return 1e3 * statistics.fmean(timed) if timed else None


def _max_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(max(values), 2)  # type: ignore[type-var]


def _frame_seconds(splats: Any, device: Any, frames: int) -> float:
    """Mean seconds per frame of `render_splats` + `to_uint8_rgb` with the splats and the
    result on ``device`` ("auto" backend: the CUDA kernels on a GPU), after a warm-up frame."""
    import torch

    from gscodec.render.backends import render_splats, to_uint8_rgb

    t = splats.tensors(device)
    background = torch.from_numpy(splats.background).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda _: None
    t0 = 0.0
    for i in range(frames + 1):
        if i == 1:  # frame 0 warms up: kernel compilation, allocator
            sync(device)
            t0 = time.perf_counter()
        to_uint8_rgb(render_splats(t.means, t.scales, t.angles, t.colors, splats.height, splats.width,
                                   background=background))
    sync(device)
    return (time.perf_counter() - t0) / frames


def render_speed(streams: dict[str, bytes], device: str, frames: int, repeats: int) -> dict[str, Any]:
    """Rendering alone, from decoded splats: ms per frame on ``device`` (splats and uint8 image
    on the device; the mean over ``frames`` back-to-back frames) and on the CPU with the fused
    decoder `decode_numba.render_rgb` (the median of ``repeats``), per image and as means."""
    import torch

    from gscodec import decode_splats
    from gscodec.render.numba.decode import render_rgb

    dev = torch.device(device)
    per_image: dict[str, dict[str, float]] = {}
    with Progress(len(streams), f"render on {device}") as bar:
        for name, data in streams.items():
            splats = decode_splats(data)
            device_s = _frame_seconds(splats, dev, frames)
            render_rgb(splats, splats.height, splats.width)
            cpu = []
            for _ in range(repeats):
                t1 = time.perf_counter()
                render_rgb(splats, splats.height, splats.width)
                cpu.append(time.perf_counter() - t1)
            per_image[name] = {"splats": len(splats), "device_render_ms": 1e3 * device_s,
                               "cpu_render_ms": 1e3 * statistics.median(cpu)}
            bar.update()
    device_ms = statistics.fmean(v["device_render_ms"] for v in per_image.values())
    cpu_ms = statistics.fmean(v["cpu_render_ms"] for v in per_image.values())
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev),
        "frames": frames,
        "device_render_ms": device_ms,
        "device_render_fps": 1e3 / device_ms,
        "cpu_render_ms": cpu_ms,
        "device_vs_cpu_speedup": cpu_ms / device_ms,
        "per_image": per_image,
    }


def refinement_on_gpu(dataset: str, image: str, data: bytes, steps: int, out: Path) -> dict[str, Any] | None:
    """`bench.refine_speed` with the cuda, numba and torch backends from ``data``; its report."""
    from bench import refine_speed

    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "start.gsc"
        stream.write_bytes(data)
        status = refine_speed.main(["--dataset", dataset, "--image", image, "--stream", str(stream),
                                    "--steps", str(steps), "--backends", "cuda,numba,torch", "--out", str(out)])
    return json.loads(out.read_text()) if status == 0 else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="kodak", help="kodak, div2k (with --div2k-dir) or a folder")
    ap.add_argument("--div2k-dir")
    datasets.add_data_dir_option(ap)
    ap.add_argument("--images", nargs="+", help="image names or globs")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--codecs", default=DEFAULT_CODECS, help=f"comma list of {', '.join(codec_names())}")
    ap.add_argument("--gscodec-effort", help="comma list of efforts: adds gscodec-e<N> for each")
    ap.add_argument("--quality", nargs="+", help="setting for all codecs (50) or per codec (jpeg=50 jpeg2000=34)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--encode-repeats", type=int, help="timed encodes per image (default: --repeats)")
    ap.add_argument("--device", help="device for gscodec's encode and decode (e.g. cuda: adds the GPU rendering "
                    "and refinement measurements); classical codecs run on the CPU")
    ap.add_argument("--frames", type=int, default=1000, help="frames per image for the GPU rendering speed")
    ap.add_argument("--refine-steps", type=int, default=50, help="Adam steps for the GPU refinement speed")
    ap.add_argument("--out", type=Path, help="output JSON (default bench/results/<dataset>/speed.json)")
    ap.add_argument("--paired", type=int, metavar="N", help="also decode ratios against WebP in N interleaved "
                    "rounds per image (see above)")
    ap.add_argument("--streams", type=Path, metavar="DIR",
                    help="gscodec's streams: reused from DIR/<codec>/<image>.gsc where present (encode not timed), "
                         "else encoded and written there")
    args = ap.parse_args(argv)
    try:
        dataset, images = datasets.select(args.dataset, args.div2k_dir, args.images, args.limit, args.data_dir)
        names = ["jpeg", "webp"] + [n for n in args.codecs.split(",") if n]
        names += [f"gscodec-e{int(e)}" for e in (args.gscodec_effort or "").split(",") if e]
        codecs = [make_codec(n, device=args.device) for n in dict.fromkeys(names)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    on_gpu = bool(args.device) and args.device.startswith("cuda")
    if on_gpu:
        from gscodec import has_cuda

        if not has_cuda():
            print(f"error: --device {args.device} needs CuPy and a CUDA GPU (pip install gscodec[cuda])",
                  file=sys.stderr)
            return 2
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    streams: dict[str, dict[str, bytes]] = {}  # per codec, per image
    for codec in codecs:
        reason = codec.unavailable()
        if reason:
            print(f"skipping {reason}", file=sys.stderr)
            continue
        (quality,) = parse_qualities(args.quality, codec.name, (codec.speed_quality,))[-1:]
        streams[codec.name] = {}
        kept = args.streams / codec.name if args.streams and codec.name.startswith("gscodec") else None
        results[codec.name] = time_codec(codec, images, quality, args.repeats, args.encode_repeats,
                                         streams[codec.name], kept)
    for r in results.values():
        for ref in ("jpeg", "webp"):
            if ref in results:
                r[f"decode_vs_{ref}"] = r["decode_ms"] / results[ref]["decode_ms"]
    if args.paired and "webp" in results:
        webp = next(c for c in codecs if c.name == "webp")
        for codec in codecs:
            if codec.name in results and codec.name not in ("jpeg", "webp"):
                results[codec.name]["decode_vs_webp_paired"] = paired_ratios(
                    codec, webp, streams[codec.name], streams["webp"], args.paired)

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
    gsc = streams.get("gscodec", {})
    if on_gpu and gsc:
        report["gpu_render"] = render_speed(gsc, args.device, args.frames, args.repeats)
        first = next(iter(gsc))
        refine = refinement_on_gpu(args.dataset, first, gsc[first], args.refine_steps,
                                   out.with_name(out.stem + "_refine.json"))
        if refine is not None:
            report["gpu_refinement"] = {
                "image": first,
                "it_per_s": {name: r["it_per_s"] for name, r in refine["runs"].items()},
                "cuda_vs_torch_cpu": refine["runs"]["cuda"]["speedup_vs_torch"],
                "cuda_vs_numba_cpu": refine["runs"]["cuda"]["it_per_s"] / refine["runs"]["numba"]["it_per_s"],
                "loss_max_rel_diff_vs_torch": refine["runs"]["cuda"]["loss_max_rel_diff_vs_torch"],
            }
    schema.write(out, report)
    print(f"\n{dataset}, {len(images)} images, median of {args.repeats} repeats per image, mean over images")
    print(f"{'codec':<14} {'quality':>7} {'bpp':>7} {'enc ms':>9} {'dec ms':>8} {'dec/JPEG':>9} {'dec/WebP':>9}"
          f" {'dec MiB':>8}")
    for name, r in results.items():
        mib = r["decode_peak_mib"]
        enc = "reused" if r["encode_ms"] is None else f"{r['encode_ms']:.1f}"
        print(
            f"{name:<14} {r['quality']:>7} {r['bpp']:7.3f} {enc:>9} {r['decode_ms']:8.2f} "
            f"{r.get('decode_vs_jpeg', float('nan')):9.2f} {r.get('decode_vs_webp', float('nan')):9.2f}"
            f" {'n/a' if mib is None else f'{mib:.1f}':>8}"
        )
    if "gpu_render" in report:
        g = report["gpu_render"]
        print(f"\nrendering alone on {g['device']}: {g['device_render_ms']:.3f} ms per frame = "
              f"{g['device_render_fps']:.0f} frames/s (mean of {len(g['per_image'])} images, {g['frames']} frames "
              f"each); CPU fused decoder {g['cpu_render_ms']:.2f} ms: GPU {g['device_vs_cpu_speedup']:.1f}x")
    if "gpu_refinement" in report:
        r = report["gpu_refinement"]
        rates = ", ".join(f"{name} {v:.1f}" for name, v in r["it_per_s"].items())
        print(f"refinement on {r['image']}, iterations/s: {rates}; cuda = {r['cuda_vs_torch_cpu']:.1f}x the torch "
              f"reference, {r['cuda_vs_numba_cpu']:.1f}x numba (CPU)")
    for name, r in results.items():
        if "decode_vs_webp_paired" in r:
            p = r["decode_vs_webp_paired"]
            over = sorted(k for k, v in p["per_image"].items() if v > 3)
            print(f"{name} / WebP decode, paired ({p['rounds']} rounds per image): median {p['median']:.2f}, "
                  f"largest {p['max']:.2f}; above 3x: {len(over)} of {len(p['per_image'])} {' '.join(over)}")
    print(f"load average (1 min) before/after: {report['machine']['loadavg_1min']}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
