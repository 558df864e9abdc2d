"""The decoder's compiled CPU renderer: splats straight to 8-bit RGB (numba).

The same function as `gscodec.render.render_splats` followed by `to_uint8_rgb`, in one
pass and without gradients: splats are binned to bands of image rows, each worker
thread renders whole bands (no per-thread full-image buffers, no reduction), and each
band is converted YCbCr -> RGB, scaled by 255, clamped and rounded half to even into
the uint8 output while it is still in cache.

Same pixel set as the other backends (the boxes of `render.footprint_sizes`, the row
spans of `render_numba._row_span`, then q <= Q_CUT) and the same float32 arithmetic
per (splat, pixel) as `render_numba.forward`; per pixel the splats are summed in
index order. Only the summation order can differ from the other backends, so the
output stays within the spec's +-1 LSB of the reference (and equals it almost
everywhere).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from .color import YCBCR_TO_RGB
from .render import Q_CUT as _Q_CUT  # a float: numba freezes it at compile time
from .render import prepare_splats
from .render_numba import _row_span
from .splats import Splats

BAND_ROWS = 16  # rows per band: a band's float32 accumulator (16 x W x 3) stays in L2
MAX_BAND_PAIRS_PER_SPLAT = 4  # beyond this many bands per splat on average (plus
BAND_PAIRS_SLACK = 1 << 20  # this many (splat, band) pairs in all), bands grow
_MATRIX = np.ascontiguousarray(YCBCR_TO_RGB.numpy())  # [3, 3] float64, rows R, G, B


@numba.njit(cache=True)
def _band_pairs(y0, ny, band):  # pragma: no cover - compiled
    """Number of (splat, band) pairs for bands of ``band`` rows (empty boxes excluded)."""
    total = 0
    for k in range(len(y0)):
        if ny[k] > 0:
            total += (y0[k] + ny[k] - 1) // band - y0[k] // band + 1
    return total


@numba.njit(cache=True)
def _bin(y0, nx, ny, band, n_bands):  # pragma: no cover - compiled
    """CSR lists of the splats touching each band, in index order: (starts [B+1], items [P] int32)."""
    starts = np.zeros(n_bands + 1, np.int64)
    for k in range(len(y0)):
        if nx[k] > 0 and ny[k] > 0:
            for b in range(y0[k] // band, (y0[k] + ny[k] - 1) // band + 1):
                starts[b + 1] += 1
    for b in range(n_bands):
        starts[b + 1] += starts[b]
    fill = starts[:-1].copy()
    items = np.empty(starts[n_bands], np.int32)
    for k in range(len(y0)):
        if nx[k] > 0 and ny[k] > 0:
            for b in range(y0[k] // band, (y0[k] + ny[k] - 1) // band + 1):
                items[fill[b]] = k
                fill[b] += 1
    return starts, items


@numba.njit(cache=True, parallel=True, fastmath=False)
def render_rgb_kernel(
    means, conic, colors, x0, y0, nx, ny, background, matrix, height, width, band, threads
):  # pragma: no cover - compiled
    """[H, W, 3] uint8 RGB of background + sum of colors * exp(-q/2) (YCbCr, float32).

    means [N, 2], conic [N, 3], colors [N, 3], background [3] float32 on the output grid;
    x0, y0, nx, ny [N] int64 boxes; matrix [3, 3] float64 YCbCr -> RGB.
    """
    n_bands = (height + band - 1) // band
    starts, items = _bin(y0, nx, ny, band, n_bands)
    out = np.empty((height, width, 3), np.uint8)
    bg0, bg1, bg2 = background[0], background[1], background[2]
    for t in numba.prange(threads):
        acc = np.empty((band, width, 3), np.float32)
        for bi in range(t, n_bands, threads):
            r0 = bi * band
            r1 = min(height, r0 + band)
            acc[:] = 0.0
            for j in range(starts[bi], starts[bi + 1]):
                k = items[j]
                mx, my = means[k, 0], means[k, 1]
                a, b, c = conic[k, 0], conic[k, 1], conic[k, 2]
                c0, c1, c2 = colors[k, 0], colors[k, 1], colors[k, 2]
                for iy in range(max(y0[k], r0), min(y0[k] + ny[k], r1)):
                    dy = np.float32(iy) + np.float32(0.5) - my
                    lo, hi = _row_span(a, b, c, dy, x0[k], nx[k], mx)
                    row = acc[iy - r0]
                    for ix in range(lo, hi):
                        dx = np.float32(ix) + np.float32(0.5) - mx
                        q = a * dx * dx + np.float32(2.0) * b * dx * dy + c * dy * dy
                        if q <= _Q_CUT:
                            w = math.exp(np.float32(-0.5) * q)
                            row[ix, 0] += w * c0
                            row[ix, 1] += w * c1
                            row[ix, 2] += w * c2
            for iy in range(r0, r1):
                row = acc[iy - r0]
                for ix in range(width):
                    v0 = np.float64(row[ix, 0] + bg0)
                    v1 = np.float64(row[ix, 1] + bg1)
                    v2 = np.float64(row[ix, 2] + bg2)
                    for ch in range(3):
                        v = (v0 * matrix[ch, 0] + v1 * matrix[ch, 1] + v2 * matrix[ch, 2]) * 255.0
                        out[iy, ix, ch] = np.uint8(np.rint(min(max(v, 0.0), 255.0)))
    return out


def band_rows(y0: np.ndarray, ny: np.ndarray, height: int) -> int:
    """Rows per band: BAND_ROWS, doubled while splats spanning many bands would make the
    (splat, band) lists much longer than the splat list (bounded memory on any stream)."""
    band = BAND_ROWS
    limit = MAX_BAND_PAIRS_PER_SPLAT * len(y0) + BAND_PAIRS_SLACK
    while band < height and _band_pairs(y0, ny, band) > limit:
        band *= 2
    return min(band, max(1, height))


def render_rgb(splats: Splats, height: int, width: int, *, scale: float = 1.0) -> np.ndarray:
    """[height, width, 3] uint8 RGB of ``splats`` rendered at ``scale`` (origin (0, 0)).

    Equals ``to_uint8_rgb(render_splats(..., background=splats.background))`` within +-1 LSB.
    """
    means, conic, colors, boxes = prepare_splats(
        torch.from_numpy(splats.means), torch.from_numpy(splats.scales), torch.from_numpy(splats.angles),
        torch.from_numpy(splats.colors), height, width, scale=scale,
    )
    m, k, c = (np.ascontiguousarray(t.numpy(), np.float32) for t in (means, conic, colors))
    x0, y0, nx, ny = (np.ascontiguousarray(t.numpy(), np.int64) for t in boxes)
    band = band_rows(y0, ny, height)
    return render_rgb_kernel(
        m, k, c, x0, y0, nx, ny, np.asarray(splats.background, np.float32), _MATRIX,
        height, width, band, numba.get_num_threads(),
    )
