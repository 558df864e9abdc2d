"""The staged predictor measured: encode-time split and ablations (tables in bench/README.md).

    python -m bench.predictor --dataset kodak --images 'kodim0[1-6]' --qualities 20 50 80

- split: where a predictor-only encode (effort 0) spends its time: the network and
  Stage Control with the stages' renders, the colour solve, quantization and coding;
- stages: predictor-only encodes keeping the first 1..4 stages;
- stage control: Stage Control on (later stages add splats only in the worst patches,
  within the budget) against off (every candidate of every stage kept);
- init: predictor or detail-placement start, then k = 0, 40, 150 refinement steps.
Each row: mean bpp, mean PSNR-RGB and mean splat count over the images.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

import gscodec
from bench import datasets
from gscodec.encoder import initializers, optimize, pipeline
from gscodec.metrics import psnr
from gscodec.predictor import initializer as predictor_init
from gscodec.predictor.model import WEIGHTS

TIMERS: dict[str, float] = defaultdict(float)
STAGE_PLAN = predictor_init.stage_plan  # the library's rule, which the variants patch over
RESULTS = Path(__file__).resolve().parent / "results" / "kodak"


@contextlib.contextmanager
def timed(obj: object, name: str, label: str) -> Iterator[None]:
    """Add the time spent in ``obj.name`` to TIMERS[label] while the block runs."""
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMERS[label] += time.perf_counter() - start

    setattr(obj, name, wrapper)
    try:
        yield
    finally:
        setattr(obj, name, original)


def variant(stages: int | None = None, control: bool = True):
    """A predictor initializer keeping the first ``stages`` stages and, without ``control``,
    every candidate of every stage (registered under its own name)."""

    def plan(n_splats: int, stage0: int, _stages: int = 4) -> predictor_init.StagePlan:
        base = STAGE_PLAN(n_splats, stage0)
        if not control:  # no budget, no threshold: all three later stages keep every candidate
            return predictor_init.StagePlan((10**9,) * 3, -1.0)
        return predictor_init.StagePlan(base.budgets[: (stages or 4) - 1], base.threshold)

    def init(encoder, p, quality):
        predictor_init.stage_plan = plan
        try:
            return initializers.predictor(encoder, p, quality)
        finally:
            predictor_init.stage_plan = STAGE_PLAN

    name = f"predictor-s{stages or 4}" + ("" if control else "-nocontrol")
    initializers.INITIALIZERS[name] = init
    return name


def encode(rgb: np.ndarray, quality: float, effort: int, init: str) -> tuple[float, float, int]:
    data = pipeline.encode_image(rgb.astype(np.float32) / 255, quality, effort, init=init)
    out = gscodec.decode(data)
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(out, rgb), len(gscodec.decode_splats(data))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.predictor", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="kodak")
    datasets.add_data_dir_option(ap)
    ap.add_argument("--images", nargs="+", default=["kodim0[1-6]"])
    ap.add_argument("--qualities", type=float, nargs="+", default=[20, 50, 80])
    ap.add_argument("--out", type=Path, default=RESULTS / "predictor.json")
    args = ap.parse_args(argv)
    dataset, paths = datasets.select(args.dataset, None, args.images, None, args.data_dir)
    images = [datasets.load_rgb(p) for p in paths]

    # time split of predictor-only encodes at quality 50 (one warm-up encode first)
    encode(images[0], 50, 0, "predictor")
    TIMERS.clear()
    total = 0.0
    with (timed(predictor_init, "predict", "network, Stage Control and stage renders"),
          timed(optimize.Encoder, "solve_colors", "colour solve"),
          timed(pipeline, "encode_splats", "quantization and entropy coding")):
        for rgb in images:
            start = time.perf_counter()
            encode(rgb, 50, 0, "predictor")
            total += time.perf_counter() - start
    split = {k: v / len(images) for k, v in TIMERS.items()}
    split["total"] = total / len(images)

    rows: dict[str, list] = {}
    runs = [(f"stages {s}", variant(stages=s), 0) for s in (1, 2, 3, 4)]
    runs += [("stage control off", variant(control=False), 0)]
    runs += [(f"{init} + {k} steps", init, effort) for init in ("predictor", "detail")
             for k, effort in ((0, 0), (40, 1), (150, 3))]
    jobs = [(label, init, effort, q) for label, init, effort in runs for q in args.qualities]
    for label, init, effort, q in tqdm(jobs, desc="ablations", unit="setting"):
        values = np.array([encode(rgb, q, effort, init) for rgb in images])
        rows.setdefault(label, []).append({"quality": q, "bpp": values[:, 0].mean(), "psnr": values[:, 1].mean(),
                                           "splats": values[:, 2].mean()})
    result = {"dataset": dataset, "images": [p.stem for p in paths], "date": time.strftime("%Y-%m-%d"),
              "weights_sha256": json.loads((WEIGHTS / "predictor.json").read_text())["sha256"],
              "encode_seconds_quality50_effort0": split, "ablations": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print("predictor-only encode at quality 50, mean seconds per image:")
    for k, v in split.items():
        print(f"  {k:<45} {v:.3f}")
    for label, values in rows.items():
        cells = "  ".join(f"q{r['quality']:g}: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB {r['splats']:.0f} splats"
                          for r in values)
        print(f"{label:<22} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
