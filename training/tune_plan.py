"""Tune how the predictor shares the splat budget among its later stages, on training images.

    python -m training.tune_plan [--images 16] [--qualities 20 50 80] --shares 0.4,0.3,0.3 0.5,0.25,0.25 ...

For each candidate of `gscodec.predictor.initializer.STAGE_SHARES`, predictor-only encodes
(effort 0) of a fixed, seeded sample of ../shared/data/train (never a test set): mean bpp
and PSNR-RGB per quality, and the BD-rate of each candidate against the first. The chosen
shares, and the table that chose them, go into the constant's comment.
"""

from __future__ import annotations

# isort: off
import gscodec  # noqa: F401  (first: passive OpenMP waiting before torch loads)
# isort: on
import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.bdrate import bd_rate
from gscodec.encoder.pipeline import encode_image
from gscodec.metrics import psnr
from gscodec.predictor import initializer
from training.data import default_train_dir, list_train_images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.tune_plan", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_train_dir())
    ap.add_argument("--images", type=int, default=16, help="how many training images (seeded sample)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[20, 50, 80])
    ap.add_argument("--shares", nargs="+", required=True, metavar="S1,S2,S3",
                    help="candidate shares of stages 1, 2, 3 (the first is the reference)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    paths = random.Random(args.seed).sample(list_train_images(args.data), args.images)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    candidates = [tuple(float(v) for v in s.split(",")) for s in args.shares]
    original = initializer.STAGE_SHARES
    curves = {}
    try:
        with tqdm(total=len(candidates) * len(args.qualities) * len(images), desc="encodes") as bar:
            for shares in candidates:
                initializer.STAGE_SHARES = shares
                points = []
                for q in args.qualities:
                    values = []
                    for rgb in images:
                        data = encode_image(rgb.astype(np.float32) / 255, q, 0, init="predictor")
                        values.append((8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
                                       psnr(gscodec.decode(data), rgb)))
                        bar.update()
                    points.append(np.mean(values, 0))
                curves[shares] = np.array(points)
    finally:
        initializer.STAGE_SHARES = original
    reference = curves[candidates[0]]
    print(f"{len(images)} training images, predictor only (effort 0); mean bpp / PSNR-RGB per quality")
    for shares, points in curves.items():
        cells = "  ".join(f"q{q:g} {b:.3f} / {p:.2f}" for q, (b, p) in zip(args.qualities, points, strict=True))
        bd = bd_rate(reference[:, 0], reference[:, 1], points[:, 0], points[:, 1])
        print(f"shares {','.join(f'{v:g}' for v in shares):<16} {cells}  BD-rate {bd:+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
