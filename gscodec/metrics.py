"""Image quality measures shared by the demo, the benchmarks and the tests."""

from __future__ import annotations

import math

import numpy as np

from .errors import GscError


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape: 10 log10(255^2 / MSE) over all samples
    jointly (for RGB, PSNR-RGB); ``inf`` when they are equal."""
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise GscError(f"psnr needs two uint8 numpy arrays, got {_describe(a)} and {_describe(b)}")
    if a.shape != b.shape or a.size == 0:
        raise GscError(f"psnr needs two non-empty arrays of one shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _describe(x: object) -> str:
    return f"{x.dtype} array" if isinstance(x, np.ndarray) else type(x).__name__
