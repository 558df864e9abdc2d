"""Result JSON in CompressAI's schema.

``{"name", "description", "results": {"bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [],
"encoding_time": [], "decoding_time": []}}``: one entry per quality setting,
each a mean over the dataset's images; times in seconds per image. Files
written by ``bench.rd`` add ``"qualities"``, ``"dataset"``, ``"images"`` and
``"per_image"`` (``{image: {metric: [one value per setting]}}``). Anchors from
papers may carry only some metrics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def mean(values: list[float | None]) -> float | None:
    """Mean, or ``None`` if any value is missing or not finite."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def load(path: str | Path) -> dict[str, Any]:
    """Read a result file and check that it has a name and ``results.bpp``."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "results" not in data or "bpp" not in data["results"]:
        raise ValueError(f"{path}: not a CompressAI-style result file (needs results.bpp)")
    data.setdefault("name", Path(path).stem)
    return data


def write(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON (indented, ``NaN``/``inf`` rejected) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def curve(data: dict[str, Any], metric: str) -> tuple[list[float], list[float]]:
    """``(bpp, metric)`` points with both values present, sorted by bpp (none if the
    file lacks ``metric``)."""
    res = data["results"]
    if metric not in res:
        return [], []
    pts = sorted((b, m) for b, m in zip(res["bpp"], res[metric], strict=True) if b is not None and m is not None)
    return [p[0] for p in pts], [p[1] for p in pts]
