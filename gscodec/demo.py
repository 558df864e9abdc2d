"""Encode and decode a sample image, print the rate and quality: ``python -m gscodec.demo``.

The sample is scikit-image's astronaut (512 x 512), bundled with scikit-image.
Options: ``--quality Q``, ``--effort E``, ``--init detail|predictor``, ``--image PATH`` (any image Pillow reads),
``--out FILE.gsc`` (also writes the stream and a PNG of the decode beside it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import api
from .encoder.plan import DEFAULT_INIT, INITS
from .metrics import psnr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gscodec.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--quality", type=float, default=api.DEFAULT_QUALITY)
    ap.add_argument("--effort", type=int, default=api.DEFAULT_EFFORT)
    ap.add_argument("--init", choices=INITS, default=DEFAULT_INIT, help="where splats start (default %(default)s)")
    ap.add_argument("--image", help="image file (default: scikit-image's astronaut)")
    ap.add_argument("--out", help="also write the .gsc stream here (and FILE.png)")
    args = ap.parse_args(argv)

    if args.image:
        from PIL import Image

        image = np.asarray(Image.open(args.image).convert("RGB"))
        name = args.image
    else:
        from skimage import data

        image, name = data.astronaut(), "astronaut (scikit-image)"
    h, w = image.shape[:2]
    t0 = time.perf_counter()
    stream = api.encode(image, quality=args.quality, effort=args.effort, init=args.init)
    t1 = time.perf_counter()
    decoded = api.decode(stream)
    t2 = time.perf_counter()
    api.decode(stream)  # the first decode may compile kernels: time a second one too
    t3 = time.perf_counter()
    quality = psnr(decoded, image)
    print(f"image    {name}, {w}x{h}")
    print(f"settings quality {args.quality:g}, effort {args.effort}, init {args.init}")
    print(f"size     {len(stream)} bytes = {8 * len(stream) / (h * w):.3f} bpp")
    print(f"PSNR     {quality:.2f} dB (RGB, 8-bit decode)")
    print(f"time     encode {t1 - t0:.1f} s, decode {1000 * (t3 - t2):.0f} ms ({1000 * (t2 - t1):.0f} ms first call)")
    if args.out:
        from PIL import Image

        api.write_atomic(args.out, stream)
        Image.fromarray(decoded).save(args.out + ".png")
        print(f"wrote    {args.out} and {args.out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
