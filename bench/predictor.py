"""The staged predictor measured: encode-time split and ablations (tables in bench/README.md).

    python -m bench.predictor --dataset kodak --images 'kodim0[1-6]' --qualities 20 50 80

- split: where a predictor-only encode (effort 0) spends its time: the network and
  Stage Control with the stages' renders, the colour solve, quantization and coding;
- stages: predictor-only encodes keeping the first 1..4 stages;
- stage control: Stage Control on (later stages add splats only in the worst patches,
  within the budget) against off (every candidate of every stage kept);
- init: predictor or detail-placement start, then k = 0, 40, 150 refinement steps;
- quantizer: predictor-only encodes with the network's image-adaptive quantizer steps
  against the policy's steps for every image;
- weights (``--weights LABEL=CHECKPOINT ...``): predictor-only encodes with the weights
  of training runs (e.g. POD against plain training at equal time), BD-rate against the
  first.
Each row: mean bpp, mean PSNR-RGB and mean splat count over the images. ``--sections``
runs some of them; the JSON keeps the results of the others.
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
import torch
from tqdm import tqdm

import gscodec
from bench import datasets
from bench.bdrate import bd_rate
from gscodec.encoder import initializers, optimize, pipeline
from gscodec.metrics import psnr
from gscodec.predictor import initializer as predictor_init
from gscodec.predictor import model as model_io
from gscodec.predictor.model import WEIGHTS
from gscodec.predictor.network import PredictorConfig, StagedPredictor

TIMERS: dict[str, float] = defaultdict(float)
STAGE_PLAN = predictor_init.stage_plan  # the library's rule, which the variants patch over
RESULTS = Path(__file__).resolve().parent / "results" / "kodak"
SECTIONS = ("split", "stages", "control", "init", "quantizer", "weights")


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


@contextlib.contextmanager
def adaptive_steps(on: bool) -> Iterator[None]:
    """The predictor's image-adaptive quantizer on or off (the policy's steps) while the block runs."""
    before = predictor_init.ADAPTIVE_STEPS
    predictor_init.ADAPTIVE_STEPS = on
    try:
        yield
    finally:
        predictor_init.ADAPTIVE_STEPS = before


@contextlib.contextmanager
def weights_of(checkpoint: Path) -> Iterator[None]:
    """The encoder's predictor replaced by a training checkpoint's weights while the block runs
    (a checkpoint without a trained quantizer head keeps the policy's steps)."""
    ckpt = torch.load(checkpoint, weights_only=False)
    config = ckpt["config"]
    model = StagedPredictor(PredictorConfig(**{**config, "patch_sizes": tuple(config["patch_sizes"])}))
    model.load_state_dict(ckpt["model"], strict=False)
    original = model_io.load
    model_io.load = lambda *_: model.eval()
    try:
        yield
    finally:
        model_io.load = original


def encode(rgb: np.ndarray, quality: float, effort: int, init: str) -> tuple[float, float, int]:
    data = pipeline.encode_image(rgb.astype(np.float32) / 255, quality, effort, init=init)
    out = gscodec.decode(data)
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(out, rgb), len(gscodec.decode_splats(data))


def measure(label: str, init: str, effort: int, qualities: list[float], images: list[np.ndarray],
            rows: dict[str, list], bar: tqdm) -> None:
    for q in qualities:
        values = np.array([encode(rgb, q, effort, init) for rgb in images])
        rows.setdefault(label, []).append({"quality": q, "bpp": values[:, 0].mean(), "psnr": values[:, 1].mean(),
                                           "splats": values[:, 2].mean()})
        bar.update()


def bd_against_first(rows: dict[str, list]) -> dict[str, float]:
    """BD-rate (%) of each row's curve against the first row's."""
    first = next(iter(rows.values()))
    curve = lambda r: ([p["bpp"] for p in r], [p["psnr"] for p in r])  # noqa: E731
    return {label: bd_rate(*curve(first), *curve(r)) for label, r in rows.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.predictor", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="kodak")
    datasets.add_data_dir_option(ap)
    ap.add_argument("--images", nargs="+", default=["kodim0[1-6]"])
    ap.add_argument("--qualities", type=float, nargs="+", default=[20, 50, 80])
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS[:5]))
    ap.add_argument("--weights", nargs="+", default=[], metavar="LABEL=CHECKPOINT",
                    help="training checkpoints to compare (section weights)")
    ap.add_argument("--out", type=Path, default=RESULTS / "predictor.json")
    args = ap.parse_args(argv)
    dataset, paths = datasets.select(args.dataset, None, args.images, None, args.data_dir)
    images = [datasets.load_rgb(p) for p in paths]
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update({"dataset": dataset, "images": [p.stem for p in paths], "date": time.strftime("%Y-%m-%d"),
                   "weights_sha256": json.loads((WEIGHTS / "predictor.json").read_text())["sha256"]})
    result.setdefault("ablations", {})

    if "split" in args.sections:  # time split of predictor-only encodes at quality 50 (after a warm-up encode)
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
        result["encode_seconds_quality50_effort0"] = split
        print("predictor-only encode at quality 50, mean seconds per image:")
        for k, v in split.items():
            print(f"  {k:<45} {v:.3f}")

    runs = []
    if "stages" in args.sections:
        runs += [(f"stages {s}", variant(stages=s), 0) for s in (1, 2, 3, 4)]
    if "control" in args.sections:
        runs += [("stage control off", variant(control=False), 0)]
    if "init" in args.sections:
        runs += [(f"{init} + {k} steps", init, effort) for init in ("predictor", "detail")
                 for k, effort in ((0, 0), (40, 1), (150, 3))]
    weights = [w.split("=", 1) for w in args.weights] if "weights" in args.sections else []
    total = (len(runs) + 2 * ("quantizer" in args.sections) + len(weights)) * len(args.qualities)
    rows: dict[str, list] = {}
    with tqdm(total=total, desc="ablations", unit="setting") as bar:
        for label, init, effort in runs:
            measure(label, init, effort, args.qualities, images, rows, bar)
        if "quantizer" in args.sections:
            quantizer: dict[str, list] = {}
            for on in (False, True):
                with adaptive_steps(on):
                    measure(f"{'adaptive' if on else 'policy'} quantizer steps", "predictor", 0, args.qualities,
                            images, quantizer, bar)
            result["quantizer_bd_rate_vs_policy"] = bd_against_first(quantizer)
            rows.update(quantizer)
        if weights:
            trained: dict[str, list] = {}
            for label, checkpoint in weights:
                with weights_of(Path(checkpoint)):
                    measure(f"weights {label}", "predictor", 0, args.qualities, images, trained, bar)
            result["weights_bd_rate_vs_first"] = bd_against_first(trained)
            rows.update(trained)
    result["ablations"].update(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    for label, values in rows.items():
        cells = "  ".join(f"q{r['quality']:g}: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB {r['splats']:.0f} splats"
                          for r in values)
        print(f"{label:<28} {cells}")
    for key in ("quantizer_bd_rate_vs_policy", "weights_bd_rate_vs_first"):
        if key in result and (key.startswith("quantizer") and "quantizer" in args.sections or weights):
            print(key + ": " + ", ".join(f"{k} {v:+.1f} %" for k, v in result[key].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
