"""Rate–distortion benchmark: ``python -m bench.rd --dataset kodak --codecs jpeg,webp``.

For each codec, each quality setting of its ladder and each image: encode the
8-bit RGB original, decode, and record bpp (from the byte count), PSNR-RGB,
MS-SSIM-RGB (on the 8-bit decode) and wall-clock encode/decode times. Writes
``<out>/<codec>.json`` in CompressAI's schema (means over images, one entry
per setting) with per-image values under ``"per_image"``.

Every (codec, setting, image) result is cached under
``bench/cache/<dataset>/<codec>/q<setting>/<image>.json`` as soon as it is
computed, so an interrupted run resumes where it stopped. Times are measured
inside worker processes: with ``--workers`` above 1 they compete for cores,
so use ``bench.speed`` for timings you quote.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from bench import datasets, metrics, schema
from bench.cache import ResultCache
from bench.codecs import Codec, codec_names, make_codec
from bench.progress import Progress

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_CODECS = "jpeg,webp,avif,jpeg2000,jpegxl"


def evaluate(codec: Codec, image: Path, quality: int, version: str) -> dict[str, Any]:
    """Encode and decode one image at one setting; return its result record."""
    img = datasets.load_rgb(image)
    h, w = img.shape[:2]
    t0 = time.perf_counter()
    data = codec.encode(img, quality)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    psnr = metrics.psnr_rgb(img, out) if out.shape == img.shape else math.nan
    if out.shape != img.shape or out.dtype != img.dtype:
        raise ValueError(
            f"{codec.name} q{quality} {image.name}: decoded {out.shape} {out.dtype}, expected {img.shape} uint8"
        )
    return {
        "codec": codec.name,
        "quality": quality,
        "image": image.stem,
        "version": version,
        "height": h,
        "width": w,
        "bytes": len(data),
        "bpp": metrics.bpp(len(data), h, w),
        "psnr-rgb": psnr if math.isfinite(psnr) else None,  # None: lossless
        "ms-ssim-rgb": metrics.ms_ssim_rgb(img, out),
        "encoding_time": t1 - t0,
        "decoding_time": t2 - t1,
        **codec.extra(data),
    }


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_codec(
    codec: Codec,
    images: list[Path],
    qualities: list[int],
    cache: ResultCache,
    dataset: str,
    workers: int = 1,
    recompute: bool = False,
) -> dict[str, Any]:
    """Fill the cache for every (setting, image) and return the result JSON dict."""
    version = codec.version()
    records: dict[tuple[int, str], dict[str, Any]] = {}
    todo: list[tuple[int, Path]] = []
    for q in qualities:
        for p in images:
            rec = None if recompute else cache.get(codec.name, q, p.stem, version)
            if rec is None:
                todo.append((q, p))
            else:
                records[(q, p.stem)] = rec
    print(
        f"{codec.name}: {len(qualities)} settings x {len(images)} images, "
        f"{len(records)} cached, {len(todo)} to compute",
        file=sys.stderr,
    )

    def done(rec: dict[str, Any]) -> None:
        cache.put(rec)
        records[(rec["quality"], rec["image"])] = rec
        bar.update()

    with Progress(len(todo), codec.name) as bar:
        if workers <= 1:
            _init_worker()
            for q, p in todo:
                done(evaluate(codec, p, q, version))
        elif todo:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                pending: set[Future[dict[str, Any]]] = {pool.submit(evaluate, codec, p, q, version) for q, p in todo}
                try:
                    while pending:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            done(fut.result())
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    return summarize(codec, images, qualities, records, dataset)


def summarize(
    codec: Codec,
    images: list[Path],
    qualities: list[int],
    records: dict[tuple[int, str], dict[str, Any]],
    dataset: str,
) -> dict[str, Any]:
    """Means over images per setting, plus per-image lists, in CompressAI's schema."""
    names = [p.stem for p in images]
    per_image = {n: {m: [records[(q, n)][m] for q in qualities] for m in schema.METRICS} for n in names}
    results = {m: [schema.mean([records[(q, n)][m] for n in names]) for q in qualities] for m in schema.METRICS}
    return {
        "name": codec.name,
        "description": f"{codec.description}. {codec.version()}",
        "dataset": dataset,
        "images": len(names),
        "qualities": list(qualities),
        "results": results,
        "per_image": per_image,
    }


def parse_qualities(specs: list[str] | None, codec: str, default: tuple[int, ...]) -> list[int]:
    """``--qualities 10,20`` (every codec) or ``--qualities jpeg=10,20 webp=30``."""
    chosen = list(default)
    for spec in specs or []:
        name, sep, values = spec.rpartition("=")
        if sep and name != codec:
            continue
        chosen = [int(v) for v in values.split(",") if v.strip()]
    return chosen


def print_table(result: dict[str, Any]) -> None:
    r = result["results"]
    print(f"\n{result['name']} ({result['images']} images)")
    print(f"{'quality':>8} {'bpp':>8} {'PSNR-RGB':>9} {'MS-SSIM':>8} {'enc ms':>8} {'dec ms':>8}")
    for i, q in enumerate(result["qualities"]):
        ms = r["ms-ssim-rgb"][i]
        ms_text = f"{ms:8.4f}" if ms is not None else f"{'n/a':>8}"
        print(
            f"{q:>8} {r['bpp'][i]:8.4f} {r['psnr-rgb'][i]:9.3f} {ms_text} "
            f"{1e3 * r['encoding_time'][i]:8.1f} {1e3 * r['decoding_time'][i]:8.1f}"
        )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.rd", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="kodak", help="kodak, div2k (with --div2k-dir) or a folder of images")
    ap.add_argument("--div2k-dir", help="DIV2K validation folder (HR or official x2) for --dataset div2k")
    datasets.add_data_dir_option(ap)
    ap.add_argument("--images", nargs="+", help="image names or globs (kodim01 'kodim1*'); comma lists allowed")
    ap.add_argument("--limit", type=int, help="use only the first N images")
    ap.add_argument("--codecs", default=DEFAULT_CODECS, help=f"comma list of {', '.join(codec_names())}")
    ap.add_argument("--gscodec-effort", help="comma list of efforts: adds gscodec-e<N> for each")
    ap.add_argument("--qualities", nargs="+", help="ladder for all codecs (10,20,30) or per codec (jpeg=10,20)")
    ap.add_argument("--out", help="output folder (default bench/results/<dataset>)")
    ap.add_argument("--cache", default=str(BENCH_DIR / "cache"), help="cache root (default bench/cache)")
    ap.add_argument("--recompute", action="store_true", help="ignore cached results (still overwrites them)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        dataset, images = datasets.select(args.dataset, args.div2k_dir, args.images, args.limit, args.data_dir)
        names = [n for n in args.codecs.split(",") if n]
        names += [f"gscodec-e{int(e)}" for e in (args.gscodec_effort or "").split(",") if e]
        codecs = [make_codec(n) for n in dict.fromkeys(names)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else BENCH_DIR / "results" / dataset
    cache = ResultCache(args.cache, dataset)
    print(f"dataset {dataset}: {len(images)} images from {images[0].parent}", file=sys.stderr)
    ran = 0
    for codec in codecs:
        reason = codec.unavailable()
        if reason:
            print(f"skipping {reason}", file=sys.stderr)
            continue
        qualities = parse_qualities(args.qualities, codec.name, codec.qualities)
        try:
            result = run_codec(codec, images, qualities, cache, dataset, args.workers, args.recompute)
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: finished results are cached under {cache.root}; run the same command again to resume",
                file=sys.stderr,
            )
            return 130
        schema.write(out / f"{codec.name}.json", result)
        print_table(result)
        print(f"wrote {out / (codec.name + '.json')}", file=sys.stderr)
        ran += 1
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
