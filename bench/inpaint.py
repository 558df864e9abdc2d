"""Inpainting on Kodak: `gscodec.inpaint` against classical fills, from the same decoded pixels.

    python -m bench.inpaint [--data-dir DIR] [--images PATTERN ...] [--weights FOLDER]
    python -m bench.inpaint --make-masks        # once: the committed masks of bench/masks/

Every image is encoded with gscodec (quality 50, effort 0, ``init="predictor"`` by default)
and decoded. Each mask class (thin, medium, thick: `gscodec.inpainting.masks`, one fixed
mask per image and class, committed as 1-bit PNGs under bench/masks/, white = hole) then
makes a hole, and every method fills the same hole from the same decoded pixels:

- ``gscodec``: `gscodec.inpaint` on the stream (kept splats unchanged, new splats for the
  hole), written as a .gsc (`inpaint_stream`) and decoded: what a user gets;
- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` on the decoded image;
- ``telea``, ``navier-stokes``: OpenCV's ``cv2.inpaint`` (radius 3) on the decoded image;
- ``mean``: the hole set to the mean colour of the known pixels;
- ``gscodec-blank-global`` (an ablation, only with ``--methods``): ``gscodec`` with the
  model's global vector read from a grey image with no hole, not from the masked image;
- ``decoded`` (a reference, not a method): the decoded image without any hole.

Scores against the original image (8-bit RGB): PSNR and SSIM (scikit-image, data range 255,
the mean of the SSIM map) inside the hole and over the whole image, and the seconds per
image each fill took (the median of ``--repeat`` runs, 3 by default: a single run now and
then takes half as long again, the machine's noise; the encode and one untimed first fill
per method not counted; the table prints the median over the images). Results go to
``--out`` (bench/results/inpaint/kodak.json: means per method and class, the median and
largest time, per image, and the machine with its load average), with a figure (grid.png:
masked input, each method, original; one row per class).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

import gscodec
from bench import datasets
from bench.speed import machine_info
from gscodec.inpainting.masks import KINDS, random_mask

ROOT = Path(__file__).resolve().parent
MASKS = ROOT / "masks"
RESULTS = ROOT / "results" / "inpaint"
MASK_SEED = 2509  # arXiv 2509.01964
# "outside the hole's neighbourhood": farther than this from the hole. Splats touching the hole
# are replaced, and their supports reach this far at most for all but the largest splats
NEIGHBOURHOOD = 32
METHODS = ("gscodec", "biharmonic", "telea", "navier-stokes", "mean")
# on request only (--methods): the model with its global vector read from a grey image with no
# hole, i.e. without what the feature extractor sees of the image (the conditioning's ablation)
ABLATIONS = ("gscodec-blank-global",)


def mask_path(stem: str, kind: str) -> Path:
    return MASKS / f"{stem}_{kind}.png"


def make_masks(paths: list[Path]) -> None:
    """One mask per image and class, seeded by (MASK_SEED, class, image index), as 1-bit PNGs."""
    MASKS.mkdir(exist_ok=True)
    for index, path in enumerate(paths):
        with Image.open(path) as im:
            width, height = im.size
        for k, kind in enumerate(KINDS):
            mask = random_mask(height, width, kind, np.random.default_rng([MASK_SEED, k, index]))
            Image.fromarray(mask).save(mask_path(path.stem, kind), optimize=True)


def load_mask(stem: str, kind: str) -> np.ndarray:
    path = mask_path(stem, kind)
    if not path.exists():
        raise SystemExit(f"no mask {path}: run python -m bench.inpaint --make-masks once (and commit the masks)")
    with Image.open(path) as im:
        return np.array(im.convert("1"), dtype=bool)  # writable (scikit-image needs that)


def fill(method: str, data: bytes, decoded: np.ndarray, hole: np.ndarray, weights: str | None
         ) -> tuple[np.ndarray, dict]:
    """[H, W, 3] uint8: ``decoded`` with ``hole`` filled by ``method``, and facts about the
    fill (for gscodec: the bytes of the output stream against the input's). gscodec's image
    is the decode of the stream it writes (`inpaint_stream`), what a user gets."""
    if method in ("gscodec", "gscodec-blank-global"):
        from gscodec.inpainting import inpaint_stream

        out = inpaint_stream(data, hole, weights=weights if method == "gscodec" else blank_global(weights))
        return gscodec.decode(out), {"size-ratio": len(out) / len(data)}
    return fill_pixels(method, decoded, hole), {}


@functools.lru_cache(maxsize=2)
def blank_global(weights):
    """A copy of the model (a folder of weights, None for the shipped ones, or a loaded
    `InpaintNet`) whose extractor sees a uniform grey image with no hole."""
    import torch

    from gscodec.inpainting.model import InpaintNet, load

    model = copy.deepcopy(weights if isinstance(weights, InpaintNet) else load(weights))
    vector = model.global_vector
    model.global_vector = lambda rgb, hole: vector(torch.full_like(rgb, 0.5), torch.zeros_like(hole))
    return model


def fill_pixels(method: str, decoded: np.ndarray, hole: np.ndarray) -> np.ndarray:
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        # one sparse system per connected hole: on the whole image at once, scikit-image 0.26
        # leaves most of its preallocated (np.empty) matrix entries unwritten, which fails now
        # and then with a garbage index (and adds garbage when it does not fail)
        out = inpaint_biharmonic(decoded.astype(np.float64) / 255, hole, channel_axis=-1, split_into_regions=True)
        return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
    if method in ("telea", "navier-stokes"):
        import cv2

        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        bgr = np.ascontiguousarray(decoded[..., ::-1])
        return cv2.inpaint(bgr, hole.astype(np.uint8) * 255, 3, flag)[..., ::-1].copy()
    if method == "mean":
        out = decoded.copy()
        out[hole] = np.round(decoded[~hole].mean(0)).astype(np.uint8)
        return out
    raise ValueError(f"unknown method {method!r}")


def scores(original: np.ndarray, out: np.ndarray, hole: np.ndarray, far: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM of ``out`` against ``original``, inside ``hole`` and over the whole image,
    and PSNR over ``far``: the pixels more than `NEIGHBOURHOOD` pixels from the hole."""
    from skimage.metrics import structural_similarity

    diff = original.astype(np.float64) - out.astype(np.float64)

    def psnr(mse: float) -> float:
        return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))

    ssim, ssim_map = structural_similarity(original, out, channel_axis=-1, data_range=255, full=True)
    return {"psnr-hole": psnr(float((diff[hole] ** 2).mean())), "psnr-rgb": psnr(float((diff**2).mean())),
            "ssim-hole": float(ssim_map[hole].mean()), "ssim": float(ssim),
            "psnr-far": psnr(float((diff[far] ** 2).mean())) if far.any() else float("nan")}


def far_from(hole: np.ndarray) -> np.ndarray:
    """The pixels more than `NEIGHBOURHOOD` pixels (Euclidean) from every hole pixel."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~hole) > NEIGHBOURHOOD


def tile(image: np.ndarray, label: str, width: int = 160) -> Image.Image:
    im = Image.fromarray(image)
    im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    canvas = Image.new("RGB", (im.width, im.height + 14), "white")
    canvas.paste(im, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), label, fill="black")
    return canvas


def figure(rows: list[list[tuple[str, np.ndarray]]], path: Path) -> None:
    """A grid PNG: one row per mask class, one column per image (masked input, methods, original)."""
    tiles = [[tile(img, label) for label, img in row] for row in rows]
    w = max(sum(t.width for t in row) for row in tiles)
    h = sum(max(t.height for t in row) for row in tiles)
    grid = Image.new("RGB", (w, h), "white")
    y = 0
    for row in tiles:
        x = 0
        for t in row:
            grid.paste(t, (x, y))
            x += t.width
        y += max(t.height for t in row)
    grid.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inpaint", description=__doc__.splitlines()[0])
    datasets.add_data_dir_option(ap)
    ap.add_argument("--images", nargs="+", help="names or globs (kodim01, 'kodim0*'); default all")
    ap.add_argument("--weights", help="folder of exported inpainting weights (default: the installed ones)")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--methods", nargs="+", choices=METHODS + ABLATIONS, default=list(METHODS))
    ap.add_argument("--repeat", type=int, default=3, help="times each fill runs; its time is their median")
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument("--effort", type=int, default=0)
    ap.add_argument("--init", default="predictor")
    ap.add_argument("--figure-image", help="image shown in the figure (default: the first)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--make-masks", action="store_true", help="write bench/masks/ for every Kodak image and stop")
    args = ap.parse_args(argv)
    dataset, paths = datasets.select("kodak", None, args.images, None, args.data_dir)
    if args.make_masks:
        make_masks(paths)
        print(f"wrote {len(paths) * len(KINDS)} masks to {MASKS}")
        return 0
    shown = args.figure_image or paths[0].stem
    if "gscodec" in args.methods:  # load the model before timing (GscError now if there is none)
        from gscodec.inpainting.model import load

        load(args.weights)
    per_image: dict = {m: {k: {} for k in args.kinds} for m in (*args.methods, "decoded")}
    coverage: dict = {k: [] for k in args.kinds}
    rows = []
    warmed: set[str] = set()
    load_before = os.getloadavg()
    jobs = tqdm(total=len(paths) * len(args.kinds) * len(args.methods), desc="inpaint", unit="fill")
    for path in paths:
        original = datasets.load_rgb(path)
        data = gscodec.encode(original, quality=args.quality, effort=args.effort, init=args.init)
        decoded = gscodec.decode(data)
        for kind in args.kinds:
            hole = load_mask(path.stem, kind)
            coverage[kind].append(float(hole.mean()))
            far = far_from(hole)
            per_image["decoded"][kind][path.stem] = scores(original, decoded, hole, far)
            masked = decoded.copy()
            masked[hole] = 255
            row = [("masked input", masked)]
            for method in args.methods:
                if method not in warmed:  # untimed first call: lazy imports and compiled kernels
                    fill(method, data, decoded, hole, args.weights)
                    warmed.add(method)
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    out, facts = fill(method, data, decoded, hole, args.weights)
                    times.append(time.perf_counter() - start)
                seconds = float(np.median(times))
                per_image[method][kind][path.stem] = {**scores(original, out, hole, far), **facts, "seconds": seconds}
                row.append((method, out))
                jobs.update()
            if path.stem == shown:
                rows.append([*row, ("original", original)])
    jobs.close()
    results = {m: {k: {metric: float(np.mean([v[metric] for v in images.values()]))
                       for metric in next(iter(images.values()))} for k, images in kinds.items() if images}
               for m, kinds in per_image.items()}
    for m, kinds in per_image.items():  # the time limit is per fill: the median and the slowest too
        for k, images in kinds.items():
            seconds = [v["seconds"] for v in images.values() if "seconds" in v]
            if seconds:
                results[m][k].update({"seconds-median": float(np.median(seconds)), "seconds-max": max(seconds)})
    weights = Path(args.weights) if args.weights else None
    meta = (weights or Path(gscodec.__file__).parent / "inpainting" / "weights") / "inpainting.json"
    report = {
        "name": "inpaint", "dataset": dataset, "date": time.strftime("%Y-%m-%d"), "images": [p.stem for p in paths],
        "machine": machine_info(load_before),
        "encode": {"quality": args.quality, "effort": args.effort, "init": args.init}, "repeat": args.repeat,
        "weights_sha256": json.loads(meta.read_text())["sha256"] if meta.exists() else None,
        "masks": "bench/masks (1-bit PNG, white = hole)",
        "coverage": {k: float(np.mean(v)) for k, v in coverage.items()},
        "results": results, "per_image": per_image,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{dataset}.json").write_text(json.dumps(report, indent=1) + "\n")
    if rows:
        figure(rows, args.out / "grid.png")
    print(f"{'method':<15} " + " ".join(f"{k + ' hole/all dB, SSIM hole/all':>40}" for k in args.kinds))
    for method, kinds in results.items():
        cells = " ".join(f"{v['psnr-hole']:>9.2f} {v['psnr-rgb']:>7.2f} {v['ssim-hole']:>8.3f} {v['ssim']:>6.3f}"
                         + (f" {v['seconds-median']:>6.2f}s" if "seconds" in v else " " * 8) for v in kinds.values())
        print(f"{method:<15} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
