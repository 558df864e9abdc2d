"""Where the bits of a .gsc stream go, per attribute, on Kodak.

    python -m bench.bits [--qualities 20 50 80] [--effort 4] [--images kodim01 ...] [--limit N]

Each image is encoded at each quality and effort; each layer's symbols are decoded and coded
again stream by stream (`gscodec.format.codec.stream_bits`, which reports the bits each
stream takes: the same words the encoder wrote), and the bits are grouped by attribute:
patch counts, offsets (x and y), scales (major exponent and minor gap), angles, Y, Cb, Cr,
and everything else (header, chunk headers and CRCs, the range coder's last word).
Printed per quality: bits per splat and share of the file for each group, means over the
images; written to ``--out`` (bench/results/kodak/bits-e<effort>.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import gscodec
from bench import datasets
from gscodec.format import codec
from gscodec.format.constants import VERSION

RESULTS = Path(__file__).resolve().parent / "results" / "kodak"
# attribute -> the symbol streams (gscodec.format.symbols.STREAMS) it is coded in
GROUPS = {"counts": ("counts",), "offsets": ("off_x", "off_y"), "scales": ("major", "minor_gap"),
          "angles": ("angle",), "Y": ("Y",), "Cb": ("Cb",), "Cr": ("Cr",)}


def stream_bits(data: bytes) -> dict[str, int]:
    """Bits of the stream ``data`` by attribute (`GROUPS`, plus "other": the rest of the file),
    "splats" and "layers": the counts. The groups and "other" add up to 8 * len(data)."""
    splats, bits = codec.stream_bits(data)
    out = {group: sum(bits.get(s, 0) for s in streams) for group, streams in GROUPS.items()}
    out["other"] = 8 * len(data) - sum(out.values())
    out["splats"], out["layers"] = len(splats), len(splats.patch_sizes)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bits", description=__doc__.splitlines()[0])
    datasets.add_selection_options(ap)
    ap.add_argument("--qualities", nargs="+", type=float, default=[20.0, 50.0, 80.0])
    ap.add_argument("--effort", type=int, default=gscodec.DEFAULT_EFFORT)
    ap.add_argument("--out", type=Path, help="default: bench/results/kodak/bits-e<effort>.json")
    args = ap.parse_args(argv)
    dataset, paths = datasets.select(args.dataset, None, args.images, args.limit, args.data_dir)
    per_image: dict = {}
    for path in tqdm(paths, desc="bits", unit="image"):
        image = datasets.load_rgb(path)
        for q in args.qualities:
            data = gscodec.encode(image, quality=q, effort=args.effort)
            per_image.setdefault(f"{q:g}", {})[path.stem] = {**stream_bits(data),
                                                             "bpp": 8 * len(data) / image[..., 0].size}
    names = [*GROUPS, "other"]
    summary = {}
    print(f"bits per splat (share of the file), effort {args.effort}, {len(paths)} images")
    print(f"{'quality':>7} {'bpp':>6} {'splats':>7} " + " ".join(f"{n:>13}" for n in names))
    for q, rows in per_image.items():
        rows = list(rows.values())
        total = np.array([sum(r[n] for n in names) for r in rows], float)
        splats = np.array([r["splats"] for r in rows], float)
        entry = {"bpp": float(np.mean([r["bpp"] for r in rows])), "splats": float(splats.mean()),
                 "bits_per_splat": {n: float(np.mean([r[n] for r in rows] / splats)) for n in names},
                 "share": {n: float(np.mean([r[n] for r in rows] / total)) for n in names}}
        summary[q] = entry
        cells = " ".join(f"{entry['bits_per_splat'][n]:6.2f} ({100 * entry['share'][n]:4.1f}%)" for n in names)
        print(f"{q:>7} {entry['bpp']:6.3f} {entry['splats']:7.0f} {cells}")
    out = args.out or RESULTS / f"bits-e{args.effort}.json"
    report = {"name": "bits", "dataset": dataset, "date": time.strftime("%Y-%m-%d"), "effort": args.effort,
              "format": "{}.{}".format(*VERSION), "summary": summary, "per_image": per_image}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
