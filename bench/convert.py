"""Batch conversion throughput: `gscodec.convert` with 1 worker process, 2 workers and local Ray.

``python -m bench.convert --data-dir DIR --limit 8 --effort 4 --quality 50``

The images are ``--limit`` files of the training set (``train/`` in the data folder, found as
`bench.datasets` finds ``kodak``), taken evenly over its sorted list (both subsets, BSDS500 and
SUN). Each runner converts the same files from a folder of links into a fresh output folder,
so nothing is skipped. Per runner:

- ``wall_s``: the whole `convert` call (planning, starting the workers and loading the library
  in each, converting, the manifest); ``images_per_s`` = images / wall_s;
- ``first_result_s``: from the call to the first finished file (start-up plus one file);
- ``steady_images_per_s``: files finished per second after each worker's first file, i.e.
  (n - w) / (t_n - t_w) for the completion times t_1 <= ... <= t_n and w workers (None when
  n <= w): the rate a long job settles at;
- ``mean_file_s``: the mean time a worker spent on a file (open, encode, write), from the
  manifest.

Ray is started here (``ray.init(num_cpus=...)``, the number of cores); ``ray_init_s`` is its
start-up, outside ``wall_s``. ``identical_outputs`` says whether every runner wrote the same
bytes. Writes ``bench/results/convert.json`` (``--out`` to change). See bench/README.md for
projecting a cluster's throughput and cost from these figures.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gscodec
from bench import datasets, schema
from gscodec.batch import make_settings, plan

# (the workers import this module as their main module: keep its imports light)
RUNNERS = ("1", "2", "ray")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "convert.json"


def pick_images(folder: Path, limit: int) -> list[Path]:
    """``limit`` image files below ``folder``, spread evenly over its sorted list (what a
    folder conversion would take: every extension Pillow opens)."""
    with tempfile.TemporaryDirectory() as out:
        tasks = plan(folder, out, make_settings()).tasks
    if not tasks:
        raise ValueError(f"no images below {folder}")
    step = max(1, len(tasks) // limit)
    return [Path(t.source) for t in tasks[::step][:limit]]


def link_folder(images: list[Path], folder: Path) -> None:
    """A folder of symbolic links to ``images`` (flat: index + name), the runners' SRC."""
    folder.mkdir(parents=True)
    for i, path in enumerate(images):
        (folder / f"{i:04d}-{path.name}").symlink_to(path.resolve())


def run_one(runner: str, workers: int, src: Path, dst: Path, options: dict[str, Any]
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """Convert ``src`` with one runner ("1", "2": worker processes; "ray": the Ray started by the
    caller, ``workers`` CPUs); (its figures, sha256 of each output by name)."""
    finished: list[float] = []
    start = time.perf_counter()
    summary = gscodec.convert(src, dst, ray=runner == "ray", workers=None if runner == "ray" else workers,
                              on_file=lambda rec: finished.append(time.perf_counter()), **options)
    wall = time.perf_counter() - start
    if summary.failed:
        raise RuntimeError(f"{runner}: {len(summary.failed)} files failed: {summary.failed[:3]}")
    times = [t - start for t in sorted(finished)]
    n = len(times)
    steady = (n - workers) / (times[-1] - times[workers - 1]) if n > workers and times[-1] > times[workers - 1] \
        else None
    manifest = [line for line in summary.manifest.read_text().splitlines() if line]
    file_times = [json.loads(line)["time"] for line in manifest]
    outputs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dst.glob("*.gsc"))}
    figures = {
        "runner": {"1": "1 worker", "2": "2 workers"}.get(runner, "local Ray"),
        "workers": workers,
        "wall_s": round(wall, 3),
        "images_per_s": round(n / wall, 4),
        "first_result_s": round(times[0], 3) if times else None,
        "steady_images_per_s": None if steady is None else round(steady, 4),
        "mean_file_s": round(sum(file_times) / len(file_times), 4),
        "bytes_in": summary.bytes_in,
        "bytes_out": summary.bytes_out,
        "mean_bpp": None if summary.mean_bpp is None else round(summary.mean_bpp, 4),
    }
    return figures, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.convert", description=__doc__.split("\n\n")[0])
    datasets.add_data_dir_option(parser)
    parser.add_argument("--limit", type=int, default=8, help="number of training images (default 8)")
    parser.add_argument("--effort", type=int, default=gscodec.DEFAULT_EFFORT,
                        help=f"encoder effort (default {gscodec.DEFAULT_EFFORT})")
    parser.add_argument("--quality", type=float, default=gscodec.DEFAULT_QUALITY,
                        help=f"encoder quality (default {gscodec.DEFAULT_QUALITY})")
    parser.add_argument("--init", default=gscodec.DEFAULT_INIT, help=f"initializer (default {gscodec.DEFAULT_INIT})")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default), cuda or auto: each worker's device (with Ray: GPU tasks)")
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma list of 1, 2, ray (default all)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="result JSON (default bench/results/convert.json)")
    args = parser.parse_args(argv)
    runners = [r for r in args.runners.split(",") if r]
    if not runners or any(r not in RUNNERS for r in runners):
        parser.error(f"--runners: a comma list of {', '.join(RUNNERS)}")
    if args.limit < 1:
        parser.error("--limit must be at least 1")

    folder = datasets.find_data("train", args.data_dir)
    images = pick_images(folder, args.limit)
    options = {"quality": args.quality, "effort": args.effort, "init": args.init, "device": args.device}
    pixels = []
    from PIL import Image

    for path in images:
        with Image.open(path) as im:
            pixels.append(im.width * im.height)
    from bench.speed import cpu_model

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"{len(images)} images of {folder.name}/ (mean {sum(pixels) / len(pixels):.0f} pixels), quality "
          f"{args.quality:g}, effort {args.effort}, init {args.init}, device {args.device}, {cores} cores",
          file=sys.stderr)

    results: list[dict[str, Any]] = []
    hashes: list[dict[str, str]] = []
    ray_version, ray_init_s = None, None
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        src = Path(tmp) / "src"
        link_folder(images, src)
        for runner in runners:
            if runner == "ray":
                try:
                    import ray
                except ImportError:
                    print("ray: not installed (pip install 'gscodec[ray]'), skipped", file=sys.stderr)
                    continue
                ray_version = ray.__version__
                t0 = time.perf_counter()
                ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
                ray_init_s = round(time.perf_counter() - t0, 3)
            try:
                workers = cores if runner == "ray" else int(runner)
                figures, outputs = run_one(runner, workers, src, Path(tmp) / f"out-{runner}", options)
            finally:
                if runner == "ray":
                    ray.shutdown()
            results.append(figures)
            hashes.append(outputs)
            print(f"{figures['runner']}: {figures['images_per_s']:.3g} images/s over {figures['wall_s']:.1f} s, "
                  f"steady {figures['steady_images_per_s']}, {figures['mean_file_s']:.2f} s a file",
                  file=sys.stderr)

    data = {
        "name": "convert",
        "description": "gscodec.convert throughput: 1 worker process, 2 workers, local Ray (bench/convert.py)",
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "cores": cores, "python": platform.python_version()},
        "gscodec": gscodec.__version__,
        "ray": ray_version,
        "ray_init_s": ray_init_s,
        "dataset": folder.name,
        "images": len(images),
        "mean_pixels": round(sum(pixels) / len(pixels)),
        "settings": options,
        "identical_outputs": all(h == hashes[0] for h in hashes),
        "results": {key: [r[key] for r in results] for key in (results[0] if results else {})},
    }
    schema.write(args.out, data)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
