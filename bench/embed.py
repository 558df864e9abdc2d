"""Embeddings from splat streams on Kodak: how close the splat student comes to its teacher,
against a student that reads a pixel thumbnail of the same bytes; and embedding throughput.

    python -m bench.embed [--data-dir DIR] [--model FOLDER] [--thumbnail RUN] [--qualities Q ...]

For every Kodak image (held out: the models trained on ../shared/data/train only) and every
quality (effort 0, ``init="predictor"``):
- ``teacher``: the model's ViT on the image's pixels (`gscodec.embed_pixels`), the target;
- ``splat``: `gscodec.embed` on the .gsc stream, no pixels decoded;
- ``thumbnail``: the baseline student (``training.embed distill --student thumbnail``: the
  teacher's blocks, its pixel stem retrained) on a raw 8-bit RGB thumbnail of as many bytes
  as the .gsc stream, upsampled to the teacher's input;
- ``decoded`` (a reference, not a student): the teacher on the stream's decoded pixels.
Scores per student: the mean cosine to the teacher's embedding, and nearest-neighbour
agreement among the 24 images (for each image, whether its nearest other image by the
student is the teacher's nearest; and the overlap of the 5 nearest).

Throughput: streams per second through `gscodec.embed` (the streams already in memory; a
batch of all 24, and one at a time), against decoding them and running the RGB tower on
the pixels, in the same process. Results: bench/results/embed/kodak.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import gscodec
from bench import datasets
from gscodec.embedding import model as model_io
from gscodec.embedding.vit import VisionTransformer, VitConfig, prepare_pixels
from training.embed import thumbnail

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "embed"
THUMBNAIL_RUN = ROOT.parent / "training" / "runs" / "embed-thumbnail-v2"


def load_thumbnail_student(run: Path) -> VisionTransformer:
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    if ckpt.get("student") != "thumbnail":
        raise SystemExit(f"{run} is not a thumbnail student's run")
    model = VisionTransformer(VitConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def normalised(x: torch.Tensor | np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """[N, k] indices of each row's k most similar other rows."""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def agreement(student: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    cos = np.sum(student * teacher, 1)
    top1 = float(np.mean(neighbours(student, 1)[:, 0] == neighbours(teacher, 1)[:, 0]))
    s5, t5 = neighbours(student, 5), neighbours(teacher, 5)
    overlap = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(s5, t5, strict=True)]))
    return {"cosine": float(cos.mean()), "cosine_min": float(cos.min()), "nn_top1_agreement": top1,
            "nn_top5_overlap": overlap}


def throughput(streams: list[bytes], model_folder: Path | None, repeats: int = 3) -> dict[str, float]:
    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    gscodec.embed(streams[:1], model=model_folder)  # load the model once
    n = len(streams)
    batch = best(lambda: gscodec.embed(streams, model=model_folder))
    single = best(lambda: [gscodec.embed(s, model=model_folder) for s in streams])
    pixels = best(lambda: [gscodec.embed_pixels(gscodec.decode(s), model=model_folder) for s in streams])
    return {"streams": n, "batch_per_s": n / batch, "one_at_a_time_per_s": n / single,
            "decode_then_rgb_per_s": n / pixels, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.embed", description=__doc__.splitlines()[0])
    datasets.add_data_dir_option(ap)
    ap.add_argument("--model", type=Path, default=None, help="embedding weights (default: the shipped ones)")
    ap.add_argument("--thumbnail", type=Path, default=THUMBNAIL_RUN, help="the thumbnail student's run folder")
    ap.add_argument("--qualities", type=float, nargs="+", default=[10.0, 40.0])
    ap.add_argument("--out", type=Path, default=RESULTS / "kodak.json")
    args = ap.parse_args(argv)

    _, paths = datasets.select("kodak", None, None, None, args.data_dir)
    net = model_io.load(args.model)
    thumb = load_thumbnail_student(args.thumbnail)
    size = net.config.vit.image_size
    originals = [datasets.load_rgb(p) for p in paths]
    teacher = normalised([gscodec.embed_pixels(im, model=args.model) for im in originals])
    info = model_io.meta(args.model)
    result = {"dataset": "kodak", "images": len(paths), "model": info["teacher"], "model_sha256": info["sha256"],
              "qualities": {}}
    for q in args.qualities:
        streams, rows = [], {"splat": [], "thumbnail": [], "decoded": []}
        for im in tqdm(originals, desc=f"quality {q:g}", leave=False):
            data = gscodec.encode(im, quality=q, effort=0, init="predictor")
            streams.append(data)
            rows["splat"].append(gscodec.embed(data, model=args.model))
            rows["decoded"].append(gscodec.embed_pixels(gscodec.decode(data), model=args.model))
            rgb = torch.tensor(im).permute(2, 0, 1).float() / 255
            with torch.inference_mode():
                small = thumbnail(rgb, len(data), size)
                rows["thumbnail"].append(thumb.embed_pixels(prepare_pixels(small[None], size))[0].numpy())
        nbytes = np.array([len(s) for s in streams])
        pixels = np.array([im.shape[0] * im.shape[1] for im in originals])
        entry = {"mean_bytes": float(nbytes.mean()), "mean_bpp": float((8 * nbytes / pixels).mean()),
                 "mean_splats": float(np.mean([len(gscodec.decode_splats(s).angles) for s in streams]))}
        for name, vectors in rows.items():
            entry[name] = agreement(normalised(vectors), teacher)
        result["qualities"][f"{q:g}"] = entry
        print(f"quality {q:g}: {entry['mean_bytes']:.0f} bytes ({entry['mean_bpp']:.3f} bpp), "
              f"{entry['mean_splats']:.0f} splats")
        for name in rows:
            e = entry[name]
            print(f"  {name:10s} cosine {e['cosine']:.4f} (min {e['cosine_min']:.4f})  "
                  f"NN top-1 {e['nn_top1_agreement']:.3f}  top-5 overlap {e['nn_top5_overlap']:.3f}")
    result["throughput"] = throughput(streams, args.model)
    t = result["throughput"]
    print(f"throughput ({t['streams']} streams of quality {args.qualities[-1]:g}, {t['threads']} threads): "
          f"{t['batch_per_s']:.1f} streams/s batched, {t['one_at_a_time_per_s']:.1f}/s one at a time; "
          f"decode + RGB tower {t['decode_then_rgb_per_s']:.1f}/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
