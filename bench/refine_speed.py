"""Refinement speed: the encoder's forward + backward per second, per render backend.

``python -m bench.refine_speed`` (defaults: kodim01, quality 50, 50 Adam steps, the
numba kernels and the torch reference on the CPU; ``--backends cuda,numba,torch`` adds
the CUDA kernels on the GPU)

One refinement iteration is what `gscodec.encoder.optimize.Encoder.refine` does per step:
`Encoder.loss` (`gscodec.render.backends.render_mse` with the backend under test: the
render's RGB squared error, fused into the render on numba), backward, one Adam step (the
encoder's learning rates and decay), the encoder's clamps. The
start is a realistic splat set: the decoded splats of the image encoded at
``--quality`` / ``--effort`` (or of ``--stream``). Each backend runs in its own
process from the same start for the same number of steps, after one untimed
forward + backward (numba compiles, caches warm up). Reported per backend:
iterations per second, the loss after each step, and peak memory: the rise of the
process's peak RSS during the timed steps (every allocator) and, over two more
steps, tracemalloc's peak (Python and numpy allocations only; torch's and numba's
own allocators are invisible to it); for cuda, torch's peak GPU memory. Each backend's
speed is given as a ratio to the torch reference on the CPU (``speedup_vs_torch``), with
the largest relative difference of its losses from the reference's. Writes
``bench/results/<dataset>/refine_speed.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench import datasets, schema
from bench.rd import BENCH_DIR
from bench.speed import machine_info, peak_rss_during

BACKENDS = ("numba", "torch")  # the default; "cuda" needs a GPU
REFERENCE = "torch"


def run_backend(stream: Path, image: Path, backend: str, steps: int) -> dict[str, Any]:
    """Time ``steps`` refinement iterations with ``backend`` (run in a fresh process); the
    cuda backend runs on the GPU, the others on the CPU."""
    import gscodec  # noqa: F401  first, as in a user's program: its OpenMP setting must precede torch

    # isort: split
    import numba
    import numpy as np
    import torch

    from gscodec.encoder.optimize import LRS, Encoder
    from gscodec.format.codec import decode_splats
    from gscodec.format.color import RGB_TO_YCBCR
    from gscodec.splats import SplatTensors

    device = torch.device("cuda" if backend == "cuda" else "cpu")
    splats = decode_splats(stream.read_bytes())
    rgb = datasets.load_rgb(image).astype(np.float32) / 255.0
    target = torch.from_numpy(rgb) @ torch.from_numpy(RGB_TO_YCBCR).float().T - torch.from_numpy(splats.background)
    enc = Encoder(target.to(device), backend=backend)
    t = splats.tensors(device)
    params = [t.means.clone(), torch.log(t.scales), t.angles.clone(), t.colors.clone()]
    lrs = list(LRS)
    opt = Encoder._adam(params, lrs)
    limit = math.log(0.5 * max(enc.h, enc.w))

    def loss_of() -> torch.Tensor:
        means, log_scales, angles, colors = params
        return enc.loss(SplatTensors(means, log_scales.exp(), angles, colors))

    def step(i: int, total: int) -> float:  # one iteration of Encoder.refine (relocation aside)
        loss = loss_of()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group, lr in zip(opt.param_groups, lrs, strict=True):
            group["lr"] = lr * 0.1 ** (i / total)
        opt.step()
        with torch.no_grad():
            params[1].clamp_(math.log(0.3), limit)
            params[0][:, 0].clamp_(0, enc.w - 1e-3)
            params[0][:, 1].clamp_(0, enc.h - 1e-3)
        return float(loss.item())  # waits for the GPU too

    loss_of().backward()  # warm-up: compile, first allocations
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def timed() -> tuple[list[float], float]:
        t0 = time.perf_counter()
        losses = [step(i, steps) for i in range(steps)]
        return losses, time.perf_counter() - t0

    (losses, seconds), rss_rise = peak_rss_during(timed)
    tracemalloc.start()
    for i in range(2):
        step(steps + i, steps + 2)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "backend": backend,
        "splats": len(splats),
        "steps": steps,
        "seconds": seconds,
        "it_per_s": steps / seconds,
        "losses": losses,
        "peak_rss_rise_mib": rss_rise,
        "tracemalloc_peak_mib": traced_peak / 2**20,
        "maxrss_after_warmup_mib": rss_setup,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "gpu_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.refine_speed", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="kodak")
    datasets.add_data_dir_option(ap)
    ap.add_argument("--image", default="kodim01", help="image name in the dataset")
    ap.add_argument("--stream", type=Path, help="a .gsc of that image to start from (default: encode it)")
    ap.add_argument("--quality", type=float, default=50.0)
    ap.add_argument("--effort", type=int, default=0, help="effort of the start's encode")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one backend, JSON to stdout
    args = ap.parse_args(argv)

    dataset, folder = datasets.resolve(args.dataset, data_dir=args.data_dir)
    matches = datasets.list_images(folder, [args.image])
    if not matches:
        print(f"error: no image {args.image!r} in {folder}", file=sys.stderr)
        return 2
    image = matches[0]
    if args.worker:
        print(json.dumps(run_backend(args.stream, image, args.worker, args.steps)))
        return 0
    backends = [b for b in args.backends.split(",") if b]
    if "cuda" in backends:
        from gscodec import has_cuda

        if not has_cuda():
            print("error: backend cuda needs CuPy and a CUDA GPU (pip install gscodec[cuda])", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory() as tmp:
        stream = args.stream
        if stream is None:
            import gscodec

            stream = Path(tmp) / "start.gsc"
            stream.write_bytes(gscodec.encode(datasets.load_rgb(image), quality=args.quality, effort=args.effort))
        runs: dict[str, Any] = {}
        load_before = os.getloadavg()
        for backend in backends:
            print(f"{backend}: {args.steps} steps ...", file=sys.stderr)
            cmd = [sys.executable, "-m", "bench.refine_speed", "--dataset", args.dataset, "--image", args.image,
                   "--stream", str(stream), "--steps", str(args.steps), "--worker", backend]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=BENCH_DIR.parent)
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                return 1
            runs[backend] = json.loads(done.stdout.strip().splitlines()[-1])

    report: dict[str, Any] = {
        "dataset": dataset,
        "image": image.stem,
        "start": "given stream" if args.stream else f"gscodec.encode quality={args.quality} effort={args.effort}",
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(load_before),
        "runs": runs,
    }
    if REFERENCE in runs:
        ref = runs[REFERENCE]
        for name, r in runs.items():
            if name != REFERENCE:
                r["speedup_vs_torch"] = r["it_per_s"] / ref["it_per_s"]
                r["loss_max_rel_diff_vs_torch"] = max(
                    abs(x - y) / abs(y) for x, y in zip(r["losses"], ref["losses"], strict=True))
    out = args.out or BENCH_DIR / "results" / dataset / "refine_speed.json"
    schema.write(out, report)

    first = next(iter(runs.values()))
    print(f"\n{dataset}/{image.stem}: {first['splats']} splats, {first['steps']} Adam steps, {report['start']}")
    print(f"{'backend':<8} {'it/s':>8} {'s':>7} {'first loss':>11} {'last loss':>11} {'RSS rise MiB':>13} "
          f"{'tracemalloc MiB':>16} {'maxRSS MiB':>11}")
    for name, r in runs.items():
        rise = "n/a" if r["peak_rss_rise_mib"] is None else f"{r['peak_rss_rise_mib']:.1f}"
        print(f"{name:<8} {r['it_per_s']:8.3f} {r['seconds']:7.2f} {r['losses'][0]:11.6g} {r['losses'][-1]:11.6g} "
              f"{rise:>13} {r['tracemalloc_peak_mib']:16.1f} {r['maxrss_mib']:11.1f}")
    for name, r in runs.items():
        if "speedup_vs_torch" in r:
            gpu = f" on {r['gpu']} (peak {r['gpu_peak_mib']:.0f} MiB)" if r["gpu"] else ""
            print(f"{name} / torch (CPU): {r['speedup_vs_torch']:.1f}x iterations per second{gpu}; losses agree "
                  f"within {r['loss_max_rel_diff_vs_torch']:.2e} (max relative difference)")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
