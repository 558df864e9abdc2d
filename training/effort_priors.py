"""Measure what refinement does to rate and PSNR, the priors of the encoder's rate control.

    python -m training.effort_priors [--images 8] [--qualities 10 30 50 70 90] [--efforts 1 2 3 4]

`gscodec.encoder.rate.search` searches quality with quick encodes (`rate.quick_encode`:
effort 0 without pruning), which differ from the final encode at the user's effort. It aims
those quick encodes at the target less this change, so that the first encode at the user's effort
lands more often. This script measures the change on a seeded sample of
../shared/data/train (never a test set), centre crops of at most 512 x 384 (``--crop WxH``
for another size, ``--only TEXT`` to sample only paths holding TEXT): per effort and
quality, the mean and spread of log(bpp at effort / bpp of the quick encode) and of
PSNR at effort - PSNR of the quick encode.
"""

from __future__ import annotations

# isort: off
import gscodec  # (first: passive OpenMP waiting before torch loads)
# isort: on
import argparse
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gscodec.encoder.pipeline import encode_image
from gscodec.encoder.rate import quick_encode
from gscodec.metrics import psnr
from training.data import default_train_dir, sample_views


def measure(image: np.ndarray, data: bytes) -> tuple[float, float]:
    """The log of an encode's size and its PSNR-RGB against the 8-bit ``image``."""
    return math.log(len(data)), psnr(image, gscodec.decode(data))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.effort_priors", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_train_dir())
    ap.add_argument("--images", type=int, default=8, help="how many training images (seeded sample)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[10, 30, 50, 70, 90])
    ap.add_argument("--efforts", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--crop", default="512x384", metavar="WxH",
                    help="centre crops of at most this size (768x512 is Kodak's)")
    ap.add_argument("--only", default="", metavar="TEXT", help="sample only images whose path holds TEXT "
                    "(sun_hays80: images large enough for a 768x512 crop)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the measurements as JSON")
    args = ap.parse_args(argv)
    if min(args.efforts) < 1:
        ap.error("--efforts: 1 or more (effort 0 is the search's own quick encode)")
    paths, images = sample_views(args.data, args.images, args.seed, args.only, args.crop)
    # change[effort][quality] -> [(log rate ratio, dB gain) per image]
    change: dict[int, dict[float, list[tuple[float, float]]]] = {
        e: {q: [] for q in args.qualities} for e in args.efforts}
    with tqdm(total=len(images) * len(args.qualities) * (1 + len(args.efforts)), desc="encodes") as bar:
        for image in images:
            rgb = image.astype(np.float32) / 255
            for quality in args.qualities:
                base = measure(image, quick_encode(rgb, quality, 1))  # the search's quick encode above effort 0
                bar.update()
                for effort in args.efforts:
                    point = measure(image, encode_image(rgb, quality, effort))
                    bar.update()
                    change[effort][quality].append((point[0] - base[0], point[1] - base[1]))
    report = {}
    for effort, per_quality in change.items():
        rows = {}
        for quality, pairs in per_quality.items():
            log_rate, gain = np.array(pairs).T
            rows[str(quality)] = {"log_rate": float(log_rate.mean()), "log_rate_sd": float(log_rate.std()),
                                  "db": float(gain.mean()), "db_sd": float(gain.std())}
            print(f"effort {effort} quality {quality:5.1f}: rate x{math.exp(log_rate.mean()):.3f} "
                  f"(log sd {log_rate.std():.3f}), {gain.mean():+.2f} dB (sd {gain.std():.2f})")
        all_pairs = np.array([p for pairs in per_quality.values() for p in pairs])
        rows["all"] = {"log_rate": float(all_pairs[:, 0].mean()), "db": float(all_pairs[:, 1].mean())}
        print(f"effort {effort} all qualities: log rate {all_pairs[:, 0].mean():.4f}, {all_pairs[:, 1].mean():+.3f} dB")
        report[str(effort)] = rows
    if args.out:
        args.out.write_text(json.dumps({"images": [p.name for p in paths], "change": report}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
