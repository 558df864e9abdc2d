"""How close the encoder comes to the decoding work bound (SPEC 4.5, `gscodec.format.work`).

Encodes every image of a folder at several qualities and reports, per quality, the
largest work ratio ``render_work / max(output pixels, source pixels)`` over the images
and over output scales 1/8 .. 2, against the bound's ``WORK_PER_PIXEL``:

    python -m bench.work --dataset kodak --qualities 0 20 40 50 65 80 100 --effort 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tqdm import tqdm

import gscodec
from bench import datasets
from gscodec.format.work import WORK_PER_PIXEL, render_work

SCALES = (0.125, 0.25, 0.5, 1.0, 2.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.work", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="kodak")
    datasets.add_data_dir_option(ap)
    ap.add_argument("--qualities", type=float, nargs="+", default=[0, 20, 40, 50, 65, 80, 100])
    ap.add_argument("--effort", type=int, default=gscodec.DEFAULT_EFFORT)
    ap.add_argument("--images", nargs="*", help="names or globs (default: all)")
    ap.add_argument("--out", type=Path, help="JSON file for the results")
    args = ap.parse_args(argv)

    name, folder = datasets.resolve(args.dataset, data_dir=args.data_dir)
    paths = datasets.list_images(folder, args.images)
    rows = {q: [] for q in args.qualities}
    jobs = [(q, p) for q in args.qualities for p in paths]
    for q, path in tqdm(jobs, desc="encoding", unit="image"):
        rgb = datasets.load_rgb(path)
        splats = gscodec.decode_splats(gscodec.encode(rgb, quality=q, effort=args.effort))
        ratios = {}
        for s in SCALES:
            h, w = max(1, round(splats.height * s)), max(1, round(splats.width * s))
            ratios[s] = render_work(splats, h, w, s) / max(h * w, splats.height * splats.width)
        rows[q].append({"image": path.stem, "splats": len(splats), "ratio": ratios})
    summary = {}
    for q, recs in rows.items():
        worst = max(recs, key=lambda r: max(r["ratio"].values()))
        summary[q] = {"max_ratio": max(worst["ratio"].values()), "image": worst["image"],
                      "max_ratio_at_scale_1": max(r["ratio"][1.0] for r in recs)}
        print(f"quality {q:5g}: largest work ratio {summary[q]['max_ratio']:.2f} ({worst['image']}), "
              f"at scale 1 {summary[q]['max_ratio_at_scale_1']:.2f}; the bound is {WORK_PER_PIXEL}")
    if args.out:
        args.out.write_text(json.dumps({"dataset": name, "effort": args.effort, "work_per_pixel": WORK_PER_PIXEL,
                                        "date": time.strftime("%Y-%m-%d"), "summary": summary, "per_image": rows},
                                       indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
