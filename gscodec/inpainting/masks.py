"""Inpainting masks: reading a user's mask (`as_mask`) and drawing random ones (`random_mask`).

A mask is an [H, W] boolean array, True where the image is to be filled (the hole).

`random_mask` draws the three classes that training and the benchmark use, after the
irregular masks of LaMa and DeepFill: thin, medium and thick strokes (random polylines
with round joints), the thick class with boxes too. A class is defined by the share of
the image it covers (`COVERAGE`), reached by drawing strokes until the share is inside
the range (a target share drawn uniformly in the range, strokes added until it is
reached, starting again when the last stroke overshoots the range); stroke widths scale with the image's
shorter side, so a 128-pixel training crop and a 768 x 512 benchmark image get masks of
the same look. The same generator state gives the same mask.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GscError

KINDS = ("thin", "medium", "thick")
# share of the image each class covers (min, max)
COVERAGE = {"thin": (0.03, 0.15), "medium": (0.10, 0.30), "thick": (0.20, 0.60)}
# stroke widths as fractions of the shorter side (min, max)
WIDTH = {"thin": (0.008, 0.025), "medium": (0.035, 0.07), "thick": (0.08, 0.16)}


def as_mask(mask: object, height: int, width: int) -> np.ndarray:
    """``mask`` as an [height, width] bool array (True: fill), checked.

    Accepts a numpy array of shape [H, W] (or [H, W, 1]): bool as it is, floats True above
    0.5, integers True where nonzero if the largest value is 1, else from 128 up (8-bit
    images: white fills); a PIL image (converted to 8-bit grey: 128 and up fills); a torch
    tensor as a numpy array. GscError for another type or shape, a mask with no pixel to
    fill, or one that fills every pixel (nothing is left to fill from).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(mask, Image.Image):
        values = np.asarray(mask.convert("L")) >= 128
    else:
        if type(mask).__module__.startswith("torch"):
            mask = mask.detach().cpu().numpy()  # type: ignore[attr-defined]
        if not isinstance(mask, np.ndarray):
            raise GscError(f"mask must be a numpy array or a PIL image, got {type(mask).__name__}")
        values = mask[..., 0] if mask.ndim == 3 and mask.shape[2] == 1 else mask
        if values.dtype == bool:
            pass
        elif np.issubdtype(values.dtype, np.floating):
            if not np.isfinite(values).all():
                raise GscError("mask holds NaN or infinite values")
            values = values > 0.5
        elif np.issubdtype(values.dtype, np.integer):
            values = values > 0 if values.size and values.max() <= 1 else values >= 128
        else:
            raise GscError(f"mask must hold booleans or numbers, got dtype {values.dtype}")
    if values.shape != (height, width):
        raise GscError(f"mask must be {height} x {width} pixels (rows x columns) like the image, got shape "
                       f"{tuple(np.shape(mask))}")
    filled = int(np.count_nonzero(values))
    if filled == 0:
        raise GscError("the mask is empty: it marks no pixel to fill (True / white marks the hole)")
    if filled == values.size:
        raise GscError("the mask covers the whole image: inpainting needs some known pixels to fill from")
    return np.ascontiguousarray(values, dtype=bool)


def random_mask(height: int, width: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """An [height, width] bool mask of class ``kind`` (one of KINDS), drawn with ``rng``."""
    if kind not in KINDS:
        raise ValueError(f"mask kind must be one of {', '.join(KINDS)}, got {kind!r}")
    from PIL import Image, ImageDraw

    lo, hi = COVERAGE[kind]
    side = min(height, width)
    for _ in range(100):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        if kind == "thick":  # one or two boxes, then strokes
            for _ in range(int(rng.integers(1, 3))):
                bw, bh = (rng.uniform(0.15, 0.4, 2) * side).astype(int) + 1
                x0, y0 = int(rng.integers(0, max(1, width - bw))), int(rng.integers(0, max(1, height - bh)))
                draw.rectangle([x0, y0, x0 + bw, y0 + bh], fill=255)
        share = np.count_nonzero(np.asarray(canvas)) / (height * width)
        target = rng.uniform(lo, hi)
        while share < target:
            _stroke(draw, height, width, kind, rng)
            share = np.count_nonzero(np.asarray(canvas)) / (height * width)
        if share <= hi:
            return np.asarray(canvas) > 0
    raise RuntimeError(f"no {kind} mask within coverage {lo}-{hi} for a {width} x {height} image")  # pragma: no cover


def _stroke(draw, height: int, width: int, kind: str, rng: np.random.Generator) -> None:
    """One random polyline with round joints."""
    side = min(height, width)
    w = max(1, round(rng.uniform(*WIDTH[kind]) * side))
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    angle = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(int(rng.integers(2, 7))):
        angle += rng.uniform(-1.2, 1.2)
        length = rng.uniform(0.08, 0.25) * side
        x = float(np.clip(x + length * math.cos(angle), 0, width - 1))
        y = float(np.clip(y + length * math.sin(angle), 0, height - 1))
        points.append((x, y))
    draw.line(points, fill=255, width=w, joint="curve")
    r = w / 2
    for px, py in (points[0], points[-1]):
        draw.ellipse([px - r, py - r, px + r, py + r], fill=255)
