"""The decoder's compiled CPU renderer: splats straight to 8-bit RGB (numba).

The same function as `gscodec.render.render_splats` followed by `to_uint8_rgb`, in one
pass and without gradients: splats are binned to bands of image rows; threads (the
caller's and helpers from a pool, in a GIL-free kernel) take groups of bands as they
come free and render them whole (no per-thread full-image buffers, no reduction);
each band is converted YCbCr -> RGB, scaled by 255, clamped and rounded half to even
into the uint8 output while it is still in cache. (Not numba's parallel loops: with
the workqueue layer that `render_numba` selects, the calling thread waits while both
workers wake up, which cost 2-3 ms per decode here.)

Same pixel set as the other backends (the boxes of `render.footprint_sizes`, the row
spans of `render_numba._row_span`, then q <= Q_CUT) and the same float32 arithmetic
as `render_splats` and `render_numba.forward`, except for correctly rounded cos, sin
and sqrt in the set-up (`prepare`: no torch op in the decode path, whose OpenMP
threads would compete with numba's) and exp: a polynomial within about 1 ulp of
libm's (`_exp`), which lets the pixel loop vectorize. Per pixel the splats are summed
in index order. The output stays within the spec's +-1 LSB of the reference and
equals it almost everywhere (kodim01 at quality 50: 2 of 1.2 million samples differ).
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .color import YCBCR_TO_RGB
from .render import Q_CUT as _Q_CUT  # a float: numba freezes it at compile time
from .render_numba import _row_span
from .splats import Splats

CHUNK = 16  # pixels per vectorized block of a row span
BAND_ROWS = 16  # rows per band: a band's float32 accumulator (16 x W x 3) stays in L2
GROUP_ROWS = 64  # rows a thread takes at a time (whole bands)
MAX_BAND_PAIRS_PER_SPLAT = 4  # beyond this many bands per splat on average (plus
BAND_PAIRS_SLACK = 1 << 20  # this many (splat, band) pairs in all), bands grow
# the largest float32 <= Q_CUT: q <= _Q_CUT_F32 in float32 decides as q <= Q_CUT in float64
_Q_CUT_F32 = np.float32(_Q_CUT) if float(np.float32(_Q_CUT)) <= _Q_CUT else np.nextafter(np.float32(_Q_CUT), 0)
_MATRIX = np.ascontiguousarray(YCBCR_TO_RGB.numpy())  # [3, 3] float64, rows R, G, B


@numba.njit(cache=True)
def prepare(means, scales, angles, colors, height, width, scale):  # pragma: no cover - compiled
    """The preprocessing of `render.render_splats` (covariance, widening for scale < 1,
    conic, boxes) for one image at ``scale`` (origin (0, 0)), in numba.

    means, scales [N, 2], angles [N], colors [N, 3] float32 -> (means [N, 2], conic [N, 3],
    colors [N, 3] float32, x0, y0, nx, ny [N] int64) with the reference's float32 steps;
    cos, sin and sqrt are correctly rounded here (torch's may differ by an ulp).
    """
    n = len(means)
    m = np.empty((n, 2), np.float32)
    conic = np.empty((n, 3), np.float32)
    cols = np.empty((n, 3), np.float32)
    x0, y0 = np.empty(n, np.int64), np.empty(n, np.int64)
    nx, ny = np.empty(n, np.int64), np.empty(n, np.int64)
    extra = np.float32((1.0 / scale**2 - 1.0) / 12.0)
    s2, sc, q_cut = np.float32(scale * scale), np.float32(scale), np.float32(_Q_CUT)
    for i in range(n):
        co, si = np.float32(math.cos(angles[i])), np.float32(math.sin(angles[i]))
        v1, v2 = scales[i, 0] * scales[i, 0], scales[i, 1] * scales[i, 1]
        sxx = v1 * (co * co) + v2 * (si * si)
        sxy = (v1 - v2) * si * co
        syy = v1 * (si * si) + v2 * (co * co)
        gain = np.float32(1.0)
        if scale < 1.0:  # box-filter widening, mass kept
            det0 = sxx * syy - sxy * sxy
            sxx, syy = sxx + extra, syy + extra
            gain = np.sqrt(det0 / (sxx * syy - sxy * sxy))
        for ch in range(3):
            cols[i, ch] = colors[i, ch] * gain
        sxx, sxy, syy = sxx * s2, sxy * s2, syy * s2
        mx, my = means[i, 0] * sc, means[i, 1] * sc
        m[i, 0], m[i, 1] = mx, my
        det = sxx * syy - sxy * sxy
        conic[i, 0], conic[i, 1], conic[i, 2] = syy / det, -sxy / det, sxx / det
        # render.footprint_sizes: radii in float32, edges in float64
        rx, ry = np.float64(np.sqrt(q_cut * sxx)), np.float64(np.sqrt(q_cut * syy))
        lo = min(max(math.ceil(np.float64(mx) - rx - 0.5), 0), width)
        hi = min(max(math.floor(np.float64(mx) + rx - 0.5), -1), width - 1)
        x0[i], nx[i] = lo, max(hi - lo + 1, 0)
        lo = min(max(math.ceil(np.float64(my) - ry - 0.5), 0), height)
        hi = min(max(math.floor(np.float64(my) + ry - 0.5), -1), height - 1)
        y0[i], ny[i] = lo, max(hi - lo + 1, 0)
    return m, conic, cols, x0, y0, nx, ny


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


@numba.njit(cache=True, inline="always")
def _exp(x):  # pragma: no cover - compiled
    """exp(x) in float32 for x in [-7, 0] (below it, exp(-7)), within 1.2e-7 relative
    (about 1 ulp) of libm's expf: arithmetic and selects only, so pixel loops vectorize.

    Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2; Cephes' polynomial for exp(r);
    then the exact factor 2^n (n in -10..0) as four selected multiplications."""
    x = max(x, np.float32(-7.0))
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * r * r + r + np.float32(1.0)
    m = -n
    big = m >= np.float32(8.0)
    y *= np.float32(2.0**-8) if big else np.float32(1.0)
    m -= np.float32(8.0) if big else np.float32(0.0)
    big = m >= np.float32(4.0)
    y *= np.float32(2.0**-4) if big else np.float32(1.0)
    m -= np.float32(4.0) if big else np.float32(0.0)
    big = m >= np.float32(2.0)
    y *= np.float32(0.25) if big else np.float32(1.0)
    m -= np.float32(2.0) if big else np.float32(0.0)
    return y * (np.float32(0.5) if m >= np.float32(1.0) else np.float32(1.0))


@numba.njit(cache=True, nogil=True, fastmath=False)
def render_bands(
    means, conic, colors, x0, y0, nx, ny, starts, items, background, matrix, height, width, band, q_cut,
    out, acc, first, stop,
):  # pragma: no cover - compiled
    """Render bands [first, stop) of ``band`` rows into ``out`` [H, W, 3] uint8 RGB:
    background + sum of colors * exp(-q/2) in YCbCr (float32), then to 8-bit RGB.

    means [N, 2], conic [N, 3], colors [N, 3], background [3] float32 on the output grid;
    x0, y0, nx, ny [N] int64 boxes; starts, items: the band lists of `_bin`; matrix [3, 3]
    float64 YCbCr -> RGB; q_cut: Q_CUT rounded down to float32 (q <= q_cut in float32 is
    q <= Q_CUT in float64); acc [3, band, W + CHUNK] float32 scratch (one per thread).
    Releases the GIL: threads render disjoint bands of one image at once.
    """
    flat = out.reshape(-1)
    centres = np.arange(width + CHUNK).astype(np.float32) + np.float32(0.5)  # exact: ix + 0.5
    bg0, bg1, bg2 = background[0], background[1], background[2]
    m00, m01, m02 = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    m10, m11, m12 = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    m20, m21, m22 = matrix[2, 0], matrix[2, 1], matrix[2, 2]
    for bi in range(first, stop):
        r0 = bi * band
        r1 = min(height, r0 + band)
        acc[:] = 0.0
        for j in range(starts[bi], starts[bi + 1]):
            k = items[j]
            mx, my = means[k, 0], means[k, 1]
            a, b2, c = conic[k, 0], np.float32(2.0) * conic[k, 1], conic[k, 2]
            c0, c1, c2 = colors[k, 0], colors[k, 1], colors[k, 2]
            for iy in range(max(y0[k], r0), min(y0[k] + ny[k], r1)):
                dy = np.float32(iy) + np.float32(0.5) - my
                cyy = c * dy * dy
                lo, hi = _row_span(a, conic[k, 1], c, dy, x0[k], nx[k], mx)
                # blocks of CHUNK pixels from lo, lanes at or past hi masked: fixed-length
                # loops vectorize whole (no scalar remainder); unsigned indices need no
                # negative-index wraparound. The buffers have CHUNK columns of slack.
                r, end = iy - r0, np.uint64(hi)
                for start in range(np.uint64(lo), end, np.uint64(CHUNK)):
                    for lane in range(np.uint64(CHUNK)):
                        ix = start + lane
                        dx = centres[ix] - mx
                        q = a * dx * dx + b2 * dx * dy + cyy  # as render_numba.forward
                        keep = (q <= q_cut) & (ix < end)
                        w = _exp(np.float32(-0.5) * q) if keep else np.float32(0.0)
                        acc[0, r, ix] += w * c0
                        acc[1, r, ix] += w * c1
                        acc[2, r, ix] += w * c2
        for iy in range(r0, r1):  # YCbCr -> RGB in float64, x 255, clamp, round half to even
            r, base = iy - r0, np.uint64(iy * width * 3)
            for ix in range(np.uint64(width)):
                v0 = np.float64(acc[0, r, ix] + bg0)
                v1 = np.float64(acc[1, r, ix] + bg1)
                v2 = np.float64(acc[2, r, ix] + bg2)
                red = (v0 * m00 + v1 * m01 + v2 * m02) * 255.0
                green = (v0 * m10 + v1 * m11 + v2 * m12) * 255.0
                blue = (v0 * m20 + v1 * m21 + v2 * m22) * 255.0
                o = base + np.uint64(3) * ix
                flat[o] = np.uint8(np.rint(min(max(red, 0.0), 255.0)))
                flat[o + np.uint64(1)] = np.uint8(np.rint(min(max(green, 0.0), 255.0)))
                flat[o + np.uint64(2)] = np.uint8(np.rint(min(max(blue, 0.0), 255.0)))


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
    Uses ``numba.get_num_threads()`` threads: this one and pool threads take groups of
    bands as they come free, so a helper thread that starts late delays nothing.
    """
    m, k, c, x0, y0, nx, ny = prepare(splats.means, splats.scales, splats.angles, splats.colors, height, width, scale)
    band = band_rows(y0, ny, height)
    n_bands = -(-height // band)
    starts, items = _bin(y0, nx, ny, band, n_bands)
    out = np.empty((height, width, 3), np.uint8)
    background = np.asarray(splats.background, np.float32)
    per_group = max(1, -(-GROUP_ROWS // band))
    n_groups = -(-n_bands // per_group)
    groups = itertools.count()  # next() is atomic under the GIL

    def work() -> None:
        acc = np.empty((3, band, width + CHUNK), np.float32)
        while (g := next(groups)) < n_groups:
            render_bands(m, k, c, x0, y0, nx, ny, starts, items, background, _MATRIX, height, width, band,
                         _Q_CUT_F32, out, acc, g * per_group, min(n_bands, (g + 1) * per_group))

    helpers = [_pool().submit(work) for _ in range(min(numba.get_num_threads(), n_groups) - 1)]
    work()
    for h in helpers:  # every group is taken: wait only for helpers that started
        if not h.cancel():
            h.result()
    return out


_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    global _POOL
    _POOL = None  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    """The helper threads of `render_rgb` (created at first use)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="gscodec-decode")
    return _POOL
