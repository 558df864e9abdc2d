"""Rate–distortion plots: PSNR-RGB and MS-SSIM-RGB against bpp.

``python -m bench.plot bench/results/kodak/*.json bench/anchors/gaussianimage_kodak.json
--out bench/results/kodak/rd`` writes ``rd.png`` and ``rd.svg``. Curves
without MS-SSIM values are left out of that panel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import schema


def plot(files: list[Path], out: Path, title: str = "", max_bpp: float | None = None) -> list[Path]:
    """Draw both panels for ``files``; return the written image paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for path in files:
        data = schema.load(path)
        style = "--" if "per_image" not in data else "-"  # anchors dashed
        for ax, metric in zip(axes, ("psnr-rgb", "ms-ssim-rgb"), strict=True):
            x, y = schema.curve(data, metric)
            if max_bpp is not None:
                x, y = [a for a in x if a <= max_bpp], [b for a, b in zip(x, y, strict=True) if a <= max_bpp]
            if x:
                ax.plot(x, y, style, marker="o", markersize=3, label=data["name"])
    for ax, label in zip(axes, ("PSNR-RGB (dB)", "MS-SSIM-RGB"), strict=True):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, kwargs in ((".png", {"dpi": 150}), (".svg", {"metadata": {"Date": None}})):
        target = out.with_suffix(ext)
        fig.savefig(target, **kwargs)
        written.append(target)
    plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="result JSON files (CompressAI schema)")
    ap.add_argument("--out", type=Path, default=Path("rd"), help="output path without extension (writes .png and .svg)")
    ap.add_argument("--title", default="")
    ap.add_argument("--max-bpp", type=float, help="drop points above this rate")
    args = ap.parse_args(argv)
    try:
        for p in plot(args.files, args.out, args.title, args.max_bpp):
            print(f"wrote {p}")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
