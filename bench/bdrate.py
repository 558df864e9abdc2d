"""Bjøntegaard delta rate and delta quality between rate–distortion curves.

``python -m bench.bdrate --reference bench/results/kodak/jpeg.json bench/results/kodak/*.json``

Interpolation: piecewise cubic Hermite (PCHIP, ``scipy.interpolate.
PchipInterpolator``) through the measured points, as in current BD tools
(the original VCEG-M33 method fits one cubic polynomial instead), integrated
exactly over the quality (or rate) interval where both curves have data:

- BD-rate: mean of ln(rate_test / rate_ref) over the common quality range,
  with ln(rate) interpolated as a function of quality, reported as
  ``100 * (exp(mean) - 1)`` %; negative means fewer bits for the same quality.
- BD-PSNR (BD-quality): mean quality difference (test - ref) over the
  common ln(rate) range, with quality interpolated as a function of ln(rate).

Quality is PSNR-RGB in dB, or MS-SSIM-RGB as ``-10 log10(1 - MS-SSIM)`` dB.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from bench import schema

INTERPOLATION = "PCHIP (piecewise cubic Hermite) on ln(rate), exact integral over the overlap"


def _strictly_increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by ``x``; among equal ``x`` keep the first point. Needs 2+ points."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    keep = np.concatenate([[True], np.diff(x) > 0])
    if keep.sum() < 2:
        raise ValueError("a curve needs at least 2 points with distinct values")
    return x[keep], y[keep]


def _mean_difference(xr: np.ndarray, yr: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> float:
    """Mean of ``yt(x) - yr(x)`` over the common ``x`` range, both PCHIP-interpolated."""
    xr, yr = _strictly_increasing(xr, yr)
    xt, yt = _strictly_increasing(xt, yt)
    lo, hi = max(xr[0], xt[0]), min(xr[-1], xt[-1])
    if hi <= lo:
        raise ValueError(f"curves do not overlap (ref {xr[0]:.3f}..{xr[-1]:.3f}, test {xt[0]:.3f}..{xt[-1]:.3f})")
    area_r = PchipInterpolator(xr, yr).integrate(lo, hi)
    area_t = PchipInterpolator(xt, yt).integrate(lo, hi)
    return float((area_t - area_r) / (hi - lo))


def bd_rate(
    ref_rate: Sequence[float],
    ref_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> float:
    """BD-rate of test against reference, in percent (negative: test saves bits)."""
    d = _mean_difference(
        np.asarray(ref_quality, float),
        np.log(np.asarray(ref_rate, float)),
        np.asarray(test_quality, float),
        np.log(np.asarray(test_rate, float)),
    )
    return 100.0 * math.expm1(d)


def bd_quality(
    ref_rate: Sequence[float],
    ref_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> float:
    """BD-PSNR (or BD-quality in the given unit) of test against reference."""
    return _mean_difference(
        np.log(np.asarray(ref_rate, float)),
        np.asarray(ref_quality, float),
        np.log(np.asarray(test_rate, float)),
        np.asarray(test_quality, float),
    )


def quality_points(data: dict, metric: str) -> tuple[list[float], list[float]]:
    """``(bpp, quality)`` of a result dict; MS-SSIM converted to dB."""
    rate, q = schema.curve(data, metric)
    if metric == "ms-ssim-rgb":
        q = [-10.0 * math.log10(1.0 - v) for v in q]
    return rate, q


def table(reference: dict, others: list[dict], metric: str) -> list[dict]:
    """One row per curve: name, BD-rate %, BD-quality dB (``None`` when undefined)
    and the common quality range (dB) over which BD-rate averages."""
    ref = quality_points(reference, metric)
    rows = []
    for data in others:
        test = quality_points(data, metric)
        row = {
            "name": data["name"],
            "bd-rate": None,
            "bd-quality": None,
            "note": "",
            "range": (max(min(ref[1]), min(test[1])), min(max(ref[1]), max(test[1]))),
        }
        try:
            row["bd-rate"] = bd_rate(*ref, *test)
            row["bd-quality"] = bd_quality(*ref, *test)
        except ValueError as exc:
            row["note"] = str(exc)
        rows.append(row)
    return rows


def format_table(reference: dict, rows: list[dict], metric: str, markdown: bool = False) -> str:
    unit = "BD-PSNR (dB)" if metric == "psnr-rgb" else "BD-MS-SSIM (dB)"
    head = f"BD-rate vs {reference['name']} on {metric}; interpolation: {INTERPOLATION}"

    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    if markdown:
        lines = [
            head,
            "",
            f"| codec | BD-rate (%) | {unit} | common range (dB) | note |",
            "| --- | ---: | ---: | --- | --- |",
        ]
        lines += [
            f"| {r['name']} | {num(r['bd-rate'], '+.1f')} | {num(r['bd-quality'], '+.2f')} "
            f"| {r['range'][0]:.2f}–{r['range'][1]:.2f} | {r['note']} |"
            for r in rows
        ]
    else:
        lines = [head, f"{'codec':<32} {'BD-rate %':>10} {unit:>16} {'common range (dB)':>18}"]
        lines += [
            f"{r['name']:<32} {num(r['bd-rate'], '+.1f'):>10} {num(r['bd-quality'], '+.3f'):>16} "
            f"{r['range'][0]:>8.2f}..{r['range'][1]:<8.2f} {r['note']}"
            for r in rows
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bdrate", description="BD-rate / BD-PSNR tables (PCHIP).")
    ap.add_argument("files", nargs="+", type=Path, help="result JSON files (CompressAI schema)")
    ap.add_argument("--reference", required=True, type=Path, help="reference result JSON (e.g. jpeg.json)")
    ap.add_argument("--metric", default="psnr-rgb", choices=["psnr-rgb", "ms-ssim-rgb"])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    try:
        reference = schema.load(args.reference)
        others = [schema.load(f) for f in args.files if f.resolve() != args.reference.resolve()]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(reference, table(reference, others, args.metric), args.metric, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
