"""Tune the encoding plan on training images: stage budget shares, quantizer steps, splat budget.

    python -m training.tune_plan [--images 16] [--qualities 20 50 80] --shares 0.4,0.3,0.3 0.5,0.25,0.25 ...
    python -m training.tune_plan --step-factors 0,0,0,0,0 1,0,0,0,0 0,1,0,0,0 ...
    python -m training.tune_plan --effort 4 --images 6 --crop --budgets 1 1.25 ...
    python -m training.tune_plan --effort 1 --images 6 --schedules 40,12,10,10 20,0,5,6 ...

For each candidate, encodes at ``--effort`` (default 0, the predictor alone) of a fixed,
seeded sample of ../shared/data/train (never a test set; ``--crop``: their centre
512 x 384): mean bpp and PSNR-RGB per quality, the BD-rate of each candidate against the
first, and per quality the trade against the first in dB per bit per pixel. Candidates:
shares of the later stages (`gscodec.predictor.initializer.STAGE_SHARES`); log2 factors on
the image's quantizer steps for position, scale, angle, luma and chroma (`gscodec.quant.policy.adapt`
on top of the steps the encoder would use, for every image alike: what a change of the policy
would do; each image and quality is refined once and finished with every candidate's steps,
`gscodec.encoder.pipeline.finish`); factors on the splat budget of
`gscodec.encoder.plan.plan_for`; or refinement schedules (Adam steps, relocations, polish
steps after the centres' snap, final colour-solve steps: the `Plan`'s fields), each with its mean
encode time (one process, after a warm-up encode: times are comparable within a run only).
"""

from __future__ import annotations

# isort: off
import gscodec  # noqa: F401  (first: passive OpenMP waiting before torch loads)
# isort: on
import argparse
import dataclasses
import re
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.bdrate import bd_rate
from gscodec.encoder import pipeline
from gscodec.encoder.pipeline import encode_image
from gscodec.encoder.plan import Plan, patch_for
from gscodec.metrics import psnr
from gscodec.predictor import initializer
from gscodec.quant.policy import adapt
from gscodec.quant.stream import encode_splats
from training.data import default_train_dir, sample_views


def budget_plan(plan: Plan, factor: float, pixels: int) -> Plan:
    """``plan`` with ``factor`` times its splats, in patches of about one splat each."""
    n = max(1, round(factor * plan.n_splats))
    return dataclasses.replace(plan, n_splats=n, patch_size=patch_for(n, pixels))


def schedule_plan(plan: Plan, values: tuple[float, ...]) -> Plan:
    """``plan`` with the schedule (iterations, relocations, polish_steps, color_iterations)."""
    iterations, relocations, polish, colors = (int(v) for v in values)
    return dataclasses.replace(plan, iterations=iterations, relocations=relocations, polish_steps=polish,
                               color_iterations=colors)


def point(rgb: np.ndarray, data: bytes) -> tuple[float, float]:
    """(bpp, PSNR-RGB) of ``data``, an encode of the 8-bit image ``rgb``."""
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(gscodec.decode(data), rgb)


def step_factor_curves(images: list[np.ndarray], qualities: list[float], effort: int,
                       candidates: list[tuple[float, ...]]) -> dict[tuple[float, ...], np.ndarray]:
    """Mean (bpp, PSNR) per quality of each candidate's log2 step factors: every image and
    quality refined once, then finished with each candidate's steps."""
    points = np.zeros((len(candidates), len(qualities), len(images), 2))
    with tqdm(total=len(qualities) * len(images) * (1 + len(candidates)), desc="refine + finishes") as bar:
        for j, q in enumerate(qualities):
            for k, rgb in enumerate(images):
                refined = pipeline.refine_image(rgb.astype(np.float32) / 255, q, effort, init="predictor")
                bar.update()
                for i, factors in enumerate(candidates):
                    splats, steps = pipeline.finish(refined, steps=adapt(pipeline.default_steps(refined), factors))
                    points[i, j, k] = point(rgb, encode_splats(splats, steps=steps))
                    bar.update()
    return {c: points[i].mean(1) for i, c in enumerate(candidates)}


def encode_curves(images: list[np.ndarray], qualities: list[float], effort: int, candidates: list[tuple[float, ...]],
                  kind: str) -> tuple[dict[tuple[float, ...], np.ndarray], dict[tuple[float, ...], float]]:
    """Mean (bpp, PSNR) per quality, and mean seconds per encode, of each candidate's stage
    shares, splat budget factor or refinement schedule (``kind``: "shares", "budget", "schedule")."""
    original = initializer.STAGE_SHARES, pipeline.plan_for
    curves, seconds = {}, {}
    encode_image(images[0][:64, :64].astype(np.float32) / 255, qualities[0], effort, init="predictor")  # warm-up
    try:
        with tqdm(total=len(candidates) * len(qualities) * len(images), desc="encodes") as bar:
            for values in candidates:
                if kind == "shares":
                    initializer.STAGE_SHARES = values
                elif kind == "budget":
                    pipeline.plan_for = lambda q, e, h, w, f=values[0]: budget_plan(original[1](q, e, h, w), f, h * w)
                else:
                    pipeline.plan_for = lambda q, e, h, w, v=values: schedule_plan(original[1](q, e, h, w), v)
                points, started = [], time.perf_counter()
                for q in qualities:
                    results = []
                    for rgb in images:
                        data = encode_image(rgb.astype(np.float32) / 255, q, effort, init="predictor")
                        results.append(point(rgb, data))
                        bar.update()
                    points.append(np.mean(results, 0))
                curves[values] = np.array(points)
                seconds[values] = (time.perf_counter() - started) / (len(qualities) * len(images))
    finally:
        initializer.STAGE_SHARES, pipeline.plan_for = original
    return curves, seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.tune_plan", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_train_dir())
    ap.add_argument("--images", type=int, default=16, help="how many training images (seeded sample)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[20, 50, 80])
    ap.add_argument("--effort", type=int, default=0, help="refinement effort of every encode")
    ap.add_argument("--crop", nargs="?", const="512x384", metavar="WxH",
                    help="encode the images' centre WxH (default 512x384, faster; 768x512 is Kodak's size)")
    ap.add_argument("--only", default="", metavar="TEXT", help="sample only images whose path holds TEXT "
                    "(sun_hays80: images large enough for a 768x512 crop)")
    kind = ap.add_mutually_exclusive_group(required=True)
    kind.add_argument("--shares", nargs="+", metavar="S1,S2,S3",
                      help="candidate shares of stages 1, 2, 3 (the first is the reference)")
    kind.add_argument("--step-factors", nargs="+", metavar="P,S,A,Y,C",
                      help="candidate log2 step factors (the first is the reference)")
    kind.add_argument("--budgets", nargs="+", metavar="F",
                      help="candidate factors on the splat budget (the first is the reference)")
    kind.add_argument("--schedules", nargs="+", metavar="I,R,P,C",
                      help="candidate refinement schedules: Adam steps, relocations, polish steps, "
                           "colour-solve steps (the first is the reference)")
    ap.add_argument("--seed", type=int, default=0)
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args([" " + a if re.match(r"-\d", a) else a for a in argv])  # -1,0,0,0,0 is a value
    _, images = sample_views(args.data, args.images, args.seed, args.only, args.crop)
    listed = args.shares or args.step_factors or args.budgets or args.schedules
    candidates = [tuple(float(v) for v in s.split(",")) for s in listed]
    name = "shares" if args.shares else "budget" if args.budgets else "schedule" if args.schedules else "factors"
    seconds = {}
    if args.step_factors:
        curves = step_factor_curves(images, args.qualities, args.effort, candidates)
    else:
        curves, seconds = encode_curves(images, args.qualities, args.effort, candidates, name)
    reference = curves[candidates[0]]
    print(f"{len(images)} training images{' (centre crops)' if args.crop else ''}, predictor, effort {args.effort}; "
          "mean bpp / PSNR-RGB per quality")
    for values, points in curves.items():
        cells = "  ".join(f"q{q:g} {b:.3f} / {p:.2f}" for q, (b, p) in zip(args.qualities, points, strict=True))
        delta = points - reference
        slopes = " ".join(f"{d[1] / d[0]:+.1f}" if abs(d[0]) > 1e-6 else "-" for d in delta)
        bd = bd_rate(reference[:, 0], reference[:, 1], points[:, 0], points[:, 1])
        took = f"  {seconds[values]:.2f} s" if values in seconds else ""
        print(f"{name} {','.join(f'{v:g}' for v in values):<18} {cells}  BD-rate {bd:+.1f} %  dB/bpp {slopes}{took}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
