"""Rate control on Kodak: how close ``target_bpp`` lands, and what it costs in time.

    python -m bench.rate [--targets 0.25 0.5 1.0] [--effort 4] [--images ...] [--limit N]

Per image and target: an encode with ``target_bpp`` (`gscodec.encoder.pipeline.search_rate`,
what ``gscodec.encode(image, target_bpp=..., effort=...)`` runs), its bpp, its miss
(bpp / target - 1), the quality it chose, and its time against one encode at that quality
and effort. Results go to ``--out`` (bench/results/kodak/rate.json).
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
from gscodec.encoder.pipeline import encode_image, search_rate

RESULTS = Path(__file__).resolve().parent / "results" / "kodak"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rate", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="kodak", help="kodak or a folder of images")
    datasets.add_data_dir_option(ap)
    ap.add_argument("--images", nargs="+", help="names or globs (kodim01, 'kodim0*'); default all")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--targets", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    ap.add_argument("--effort", type=int, default=gscodec.DEFAULT_EFFORT)
    ap.add_argument("--out", type=Path, default=RESULTS / "rate.json")
    args = ap.parse_args(argv)
    dataset, paths = datasets.select(args.dataset, None, args.images, args.limit, args.data_dir)
    per_image: dict = {}
    for path in tqdm(paths, desc="rate", unit="image"):
        image = datasets.load_rgb(path)
        rgb = image.astype(np.float32) / 255
        pixels = rgb.shape[0] * rgb.shape[1]
        rows = {}
        for target in args.targets:
            start = time.perf_counter()
            data, quality = search_rate(rgb, target, args.effort)
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            encode_image(rgb, quality, args.effort)
            one = time.perf_counter() - start
            bpp = 8 * len(data) / pixels
            rows[str(target)] = {"bpp": bpp, "miss": bpp / target - 1, "quality": quality, "seconds": seconds,
                                 "one_encode_seconds": one, "time_ratio": seconds / one}
        per_image[path.stem] = rows
    summary = {}
    for target in args.targets:
        rows = [v[str(target)] for v in per_image.values()]
        misses = np.abs([r["miss"] for r in rows])
        summary[str(target)] = {"mean_bpp": float(np.mean([r["bpp"] for r in rows])),
                                "mean_abs_miss": float(misses.mean()), "max_abs_miss": float(misses.max()),
                                "within_3_percent": int((misses <= 0.03).sum()), "images": len(rows),
                                "mean_time_ratio": float(np.mean([r["time_ratio"] for r in rows]))}
        s = summary[str(target)]
        print(f"target {target:5.2f} bpp: mean {s['mean_bpp']:.3f}, |miss| mean {100 * s['mean_abs_miss']:.1f} % "
              f"max {100 * s['max_abs_miss']:.1f} %, within 3 %: {s['within_3_percent']}/{s['images']}, "
              f"time {s['mean_time_ratio']:.2f}x one encode at the quality chosen")
    report = {"name": "rate", "dataset": dataset, "date": time.strftime("%Y-%m-%d"), "effort": args.effort,
              "summary": summary, "per_image": per_image}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
