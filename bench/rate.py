"""Rate control on Kodak: how close ``target_bpp`` and ``target_psnr`` land, and what they cost in time.

    python -m bench.rate [--targets 0.25 0.5 1.0] [--psnr-targets 28 31 34] [--effort 4] [--images ...] [--limit N]

Per image and target: an encode with ``target_bpp`` (`gscodec.encoder.rate.search_rate`)
or ``target_psnr`` (`search_psnr`), what ``gscodec.encode(image, target_bpp=..., effort=...)``
runs; what it reached, its miss (bpp / target - 1 for a rate, dB - target for a PSNR), the
quality it chose, whether the target lies beyond what quality 0 to 100 reaches, and its time
against one encode at that quality and effort (both after a warm-up encode). Results go to
``--out`` (bench/results/kodak/rate.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import gscodec
from bench import datasets
from gscodec.encoder.pipeline import encode_image
from gscodec.encoder.rate import PSNR_TOLERANCE, RATE_TOLERANCE, search_psnr, search_rate
from gscodec.metrics import psnr

RESULTS = Path(__file__).resolve().parent / "results" / "kodak"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rate", description=__doc__.splitlines()[0])
    datasets.add_selection_options(ap)
    ap.add_argument("--targets", nargs="*", type=float, default=[0.25, 0.5, 1.0], help="target_bpp values")
    ap.add_argument("--psnr-targets", nargs="*", type=float, default=[], help="target_psnr values (dB)")
    ap.add_argument("--effort", type=int, default=gscodec.DEFAULT_EFFORT)
    ap.add_argument("--out", type=Path, default=RESULTS / "rate.json")
    args = ap.parse_args(argv)
    dataset, paths = datasets.select(args.dataset, None, args.images, args.limit, args.data_dir)
    # kind -> (search function, what it reached, its miss, the tolerance the encoder keeps)
    kinds = {"target_bpp": (search_rate, lambda image, data: 8 * len(data) / image[..., 0].size,
                            lambda reached, target: reached / target - 1, RATE_TOLERANCE),
             "target_psnr": (search_psnr, lambda image, data: psnr(image, gscodec.decode(data)),
                             lambda reached, target: reached - target, PSNR_TOLERANCE)}
    targets = {"target_bpp": args.targets, "target_psnr": args.psnr_targets}
    per_image: dict = {kind: {} for kind in kinds}
    # warm-up (the network's and the kernels' first calls), so that the first search is timed as the rest
    warm = np.zeros((64, 64, 3), np.float32)
    for effort in {0, args.effort}:
        encode_image(warm, 50, effort)
    for path in tqdm(paths, desc="rate", unit="image"):
        image = datasets.load_rgb(path)
        rgb = image.astype(np.float32) / 255
        for kind, (search, reached_of, miss_of, _) in kinds.items():
            rows = {}
            for target in targets[kind]:
                start = time.perf_counter()
                result = search(rgb, target, args.effort)
                data, quality = result.data, result.quality
                seconds = time.perf_counter() - start
                start = time.perf_counter()
                encode_image(rgb, quality, args.effort)
                one = time.perf_counter() - start
                reached = reached_of(image, data)
                miss = miss_of(reached, target)
                # beyond the quality range: above the target at quality 0, or below it at 100
                beyond = (quality == 0 and miss > 0) or (quality == 100 and miss < 0)
                rows[str(target)] = {"reached": reached, "bpp": 8 * len(data) / image[..., 0].size,
                                     "miss": miss, "quality": quality, "beyond_range": beyond, "seconds": seconds,
                                     "one_encode_seconds": one, "time_ratio": seconds / one,
                                     "prune": result.prune, "quick_encodes": result.quick_encodes,
                                     "refinements": result.refinements}
            if rows:
                per_image[kind][path.stem] = rows
    summary: dict = {}
    for kind, (_, _, _, tolerance) in kinds.items():
        unit = "%" if kind == "target_bpp" else "dB"
        scale = 100 if kind == "target_bpp" else 1
        for target in targets[kind]:
            rows = [v[str(target)] for v in per_image[kind].values()]
            misses = np.abs([r["miss"] for r in rows])
            within = misses <= tolerance + 1e-9
            reachable = ~np.array([r.get("beyond_range", False) for r in rows])
            ratios = [r["time_ratio"] for r in rows]
            s = summary.setdefault(kind, {})[str(target)] = {
                "mean_reached": float(np.mean([r["reached"] for r in rows])),
                "mean_abs_miss": float(misses.mean()), "max_abs_miss": float(misses.max()),
                "within_tolerance": int(within.sum()), "tolerance": tolerance, "images": len(rows),
                "reachable": int(reachable.sum()), "reachable_within_tolerance": int((within & reachable).sum()),
                "mean_time_ratio": float(np.mean(ratios)), "median_time_ratio": float(np.median(ratios)),
                "max_time_ratio": float(np.max(ratios))}
            print(f"{kind} {target:6.2f}: mean {s['mean_reached']:.3f}, |miss| mean {scale * s['mean_abs_miss']:.2f} "
                  f"{unit} max {scale * s['max_abs_miss']:.2f} {unit}, within {scale * tolerance:g} {unit}: "
                  f"{s['within_tolerance']}/{s['images']} ({s['reachable_within_tolerance']}/{s['reachable']} "
                  f"in the quality range's reach), time x one encode at the quality chosen: mean "
                  f"{s['mean_time_ratio']:.2f}, median {s['median_time_ratio']:.2f}, max {s['max_time_ratio']:.2f}")
    report = {"name": "rate", "dataset": dataset, "date": time.strftime("%Y-%m-%d"), "effort": args.effort,
              "summary": summary, "per_image": per_image}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
