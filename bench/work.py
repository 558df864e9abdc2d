"""How close the encoder comes to the decoding work bound (SPEC 4.5, `gscodec.format.work`).

`bench.rd` stores, for every gscodec encode, the stream's decoding work per pixel (the
largest over output scales 1/8 .. 2: ``work_ratio``). This summarizes those records, per
quality the largest over the images, against the bound's ``WORK_PER_PIXEL``:

    python -m bench.rd --dataset kodak --codecs gscodec --qualities 0,20,40,65
    python -m bench.work --dataset kodak --codec gscodec --out bench/results/kodak/work.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.rd import BENCH_DIR
from gscodec.format.work import WORK_PER_PIXEL


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.work", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="kodak")
    ap.add_argument("--codec", nargs="+", default=["gscodec"], help="gscodec codec names as bench.rd ran them")
    ap.add_argument("--cache", type=Path, default=BENCH_DIR / "cache", help="bench.rd's cache root")
    ap.add_argument("--out", type=Path, help="JSON file for the summary")
    args = ap.parse_args(argv)
    summary: dict[str, dict[str, dict]] = {}
    for codec in args.codec:
        for record_path in sorted((args.cache / args.dataset / codec).glob("q*/*.json")):
            rec = json.loads(record_path.read_text())
            if "work_ratio" not in rec:
                continue
            row = summary.setdefault(codec, {}).setdefault(str(rec["quality"]), {"max_ratio": 0.0, "images": 0})
            row["images"] += 1
            if rec["work_ratio"] >= row["max_ratio"]:
                row.update(max_ratio=rec["work_ratio"], image=rec["image"], splats=rec.get("splats"))
    if not summary:
        print(f"no records with work_ratio under {args.cache / args.dataset}: run bench.rd first")
        return 1
    for codec, rows in summary.items():
        for quality, row in sorted(rows.items(), key=lambda kv: float(kv[0])):
            print(f"{codec} quality {quality:>5}: largest work ratio {row['max_ratio']:.2f} ({row['image']}, "
                  f"{row['images']} images); the bound is {WORK_PER_PIXEL}")
    if args.out:
        args.out.write_text(json.dumps({"dataset": args.dataset, "work_per_pixel": WORK_PER_PIXEL,
                                        "date": time.strftime("%Y-%m-%d"), "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
