"""Compiled CPU kernels (numba) for the rendering function of SPEC 7 (`gscodec.render.backends`).

Same function as the PyTorch reference, computed per splat over its pixel box instead
of through [P]-sized tensors; this is what makes CPU encoding (hundreds of forward and
backward passes) and decoding practical. Kernels are compiled at first use and cached
on disk. Inputs are float32 numpy arrays; boxes (x0, y0, nx, ny) come from
`gscodec.render.preprocess.footprint_sizes`, so every path visits exactly the same pixels.

How the kernels are fast (and the decoder's, `gscodec.render.numba.decode`, shares all of it):

- Row spans: per splat and row, only the columns where q <= Q_CUT can hold (`_row_span`).
- Vector lanes: spans are walked in blocks of CHUNK pixels with the lanes past the span
  masked (a float compare of the pixel's centre: the same pixels as an index compare, and
  13-19 % less time a kernel call on AVX2 than 64-bit lane indices), and exp is a polynomial
  (`_exp`, within about 1 ulp of libm's), so the pixel loops compile to SIMD code.
- Forward by bands of rows: splats are binned to bands (`bin_bands`); a thread renders a
  band whole into a small planar buffer that stays in cache, summing each pixel's splats
  in index order (deterministic, no per-thread image, no reduction).
- Backward by splats: a splat's gradients are sums over its pixels, kept in per-lane
  partial sums (SIMD without reassociating floats), so threads take splats in groups.
- Threads: the caller's thread and a small pool run GIL-free kernels and take groups of
  work as they come free (`run_threads`). numba's own parallel loops would have the
  caller wait for sleeping workers to wake, which cost 2-3 ms per call here.

numba's on-disk cache checks only the file of the function it compiled: kernels elsewhere
(`decode.py`, the encoder's) that inline helpers from this file keep their old code after
an edit here until the caches are cleared (``find gscodec -name '*.nb[ic]' -delete``).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from ...format.constants import Q_CUT as _Q_CUT  # a float: numba freezes it at compile time
from ...format.constants import Q_CUT_F32

# The kernels' thread count is numba's (numba.get_num_threads / set_num_threads), which
# starts numba's threading layer. Its OpenMP workers busy-wait, which stalled every call
# when the cores were shared (measured with the earlier prange kernels: 24 ms per call
# under load vs 0.1 ms); the workqueue layer does not spin. A caller's own
# NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

CHUNK = 16  # pixels per vectorized block of a row span
BAND_ROWS = 16  # rows per band: a band's float32 buffer (C x 16 x W) stays in L2
GROUP_ROWS = 64  # rows a thread takes at a time (whole bands)
GROUP_SPLATS = 256  # splats a thread takes at a time in the backward pass
MAX_BAND_PAIRS_PER_SPLAT = 4  # beyond this many bands per splat on average (plus
BAND_PAIRS_SLACK = 1 << 20  # this many (splat, band) pairs in all), bands grow


@numba.njit(cache=True, inline="always")
def _row_span(a, b, c, dy, x_first, count, mx):  # pragma: no cover - compiled
    """The columns [lo, hi) of a box row that can hold q <= Q_CUT (a superset, for speed)."""
    disc = b * b * dy * dy - a * (c * dy * dy - _Q_CUT)
    if disc < 0.0:
        return x_first, x_first
    half = math.sqrt(disc) / a
    centre = mx - b * dy / a
    lo = max(x_first, int(math.floor(centre - half - 0.5)))
    hi = min(x_first + count, int(math.ceil(centre + half - 0.5)) + 1)
    return lo, max(lo, hi)


@numba.njit(cache=True, inline="always")
def _exp(x):  # pragma: no cover - compiled
    """exp(x) in float32 for x in [-7, 0] (below it, exp(-7)), within 1.2e-7 relative
    (about 1 ulp) of libm's expf: arithmetic and selects only, so pixel loops vectorize.

    Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2; Cephes' polynomial for exp(r);
    then the exact factor 2^n (n in -10..0), built in a float32's exponent field. The
    reduction and the polynomial are multiply-adds (`_muladd`: fused where the CPU has FMA)."""
    x = max(x, np.float32(-7.0))
    n = np.floor(_muladd(x, np.float32(1.44269504088896341), np.float32(0.5)))
    r = _muladd(n, np.float32(-0.693359375), x)
    r = _muladd(n, np.float32(2.12194440e-4), r)
    p = _muladd(np.float32(1.9875691500e-4), r, np.float32(1.3981999507e-3))
    p = _muladd(p, r, np.float32(8.3334519073e-3))
    p = _muladd(p, r, np.float32(4.1665795894e-2))
    p = _muladd(p, r, np.float32(1.6666665459e-1))
    p = _muladd(p, r, np.float32(5.0000001201e-1))
    y = _muladd(p * r, r, r) + np.float32(1.0)
    return y * _float32_from_bits(np.int32((np.int32(n) + 127) << 23))  # exact: y 2^n, n >= -10


@intrinsic
def _muladd(typingctx, a, b, c):
    """a b + c in float32 through LLVM's fmuladd: one fused instruction where the CPU has FMA
    (one rounding), a multiply and an add elsewhere; it vectorizes either way. Used inside
    `_exp` only, whose accuracy holds both ways; q, whose rounding decides which pixels a
    splat covers, stays a plain product and sum as the reference computes it."""
    if not all(isinstance(t, types.Float) and t.bitwidth == 32 for t in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return types.float32(a, b, c), codegen


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (here 2^n, built in its exponent field):
    a plain LLVM bitcast, which vectorizes, where numba has no scalar view."""
    if not (isinstance(bits, types.Integer) and bits.bitwidth == 32):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(bits), codegen


@numba.njit(cache=True)
def pixel_centres(width):  # pragma: no cover - compiled
    """ix + 0.5 for ix < width + CHUNK, float32 (exact): the lanes' x coordinates."""
    return np.arange(width + CHUNK).astype(np.float32) + np.float32(0.5)


# ---- bands of rows ----------------------------------------------------------------


@numba.njit(cache=True)
def _band_pairs(y0, ny, band):  # pragma: no cover - compiled
    """Number of (splat, band) pairs for bands of ``band`` rows (empty boxes excluded)."""
    total = 0
    for k in range(len(y0)):
        if ny[k] > 0:
            total += (y0[k] + ny[k] - 1) // band - y0[k] // band + 1
    return total


@numba.njit(cache=True)
def bin_bands(y0, nx, ny, band, n_bands):  # pragma: no cover - compiled
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


def band_rows(y0: np.ndarray, ny: np.ndarray, height: int) -> int:
    """Rows per band: BAND_ROWS, doubled while splats spanning many bands would make the
    (splat, band) lists much longer than the splat list (bounded memory on any stream)."""
    band = BAND_ROWS
    limit = MAX_BAND_PAIRS_PER_SPLAT * len(y0) + BAND_PAIRS_SLACK
    while band < height and _band_pairs(y0, ny, band) > limit:
        band *= 2
    return min(band, max(1, height))


# ---- threads --------------------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    global _POOL
    _POOL = None  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    """The helper threads of `run_threads` (created at first use)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="gscodec-render")
    return _POOL


def run_threads(worker: Callable[[Callable[[], int]], None], n_groups: int, threads: int | None = None) -> None:
    """Run ``worker(take)`` in this thread and up to ``threads - 1`` pool threads (default
    ``numba.get_num_threads()``); ``take()`` hands out group numbers 0, 1, ... and then
    ``n_groups`` or more, when the worker should stop. A helper that starts late delays
    nothing: the groups go to whoever is free."""
    counter = itertools.count()  # next() is atomic under the GIL

    def take() -> int:
        return next(counter)

    threads = numba.get_num_threads() if threads is None else threads
    helpers = [_pool().submit(worker, take) for _ in range(min(max(threads, 1), n_groups) - 1)]
    worker(take)
    for h in helpers:  # every group is taken: wait only for helpers that started
        if not h.cancel():
            h.result()


# ---- forward ----------------------------------------------------------------------------
# The kernels work on 3 colour channels, fused in the pixel loop; `forward` and `backward`
# run other channel counts as zero-padded groups of 3 (the encoder's colour solves use 1).


@numba.njit(cache=True, inline="always")
def _weight(a, b2, cyy, dy, mx, ix, end, centres, q_cut):  # pragma: no cover - compiled
    """(exp(-q/2), dx) at column ``ix`` of a row, the weight 0 where q > q_cut or ix >= end;
    ``end`` is a float32, compared with the pixel's centre ix + 0.5 (exact: sides <= 2^16).
    q is rounded as the reference rounds it, operation by operation: (a dx dx + 2b dx dy) + c dy dy."""
    x = centres[ix]
    dx = x - mx
    q = a * dx * dx + b2 * dx * dy + cyy
    keep = (q <= q_cut) & (x < end)
    return (_exp(np.float32(-0.5) * q) if keep else np.float32(0.0)), dx


@numba.njit(cache=True, inline="always")
def accumulate_band(
    means, conic, colors, x0, y0, nx, ny, starts, items, r0, r1, q_cut, centres, acc,
):  # pragma: no cover - compiled
    """acc [3, >= r1 - r0, W + CHUNK] float32 := sum of colors * exp(-q/2) over rows [r0, r1),
    from the splats of that band (``starts``/``items`` of `bin_bands`), each pixel's sum in
    index order. CHUNK columns of slack take the masked lanes past a span's end."""
    acc[:] = 0.0
    for j in range(starts[0], starts[1]):
        k = items[j]
        mx, my = means[k, 0], means[k, 1]
        a, b2, c = conic[k, 0], np.float32(2.0) * conic[k, 1], conic[k, 2]
        c0, c1, c2 = colors[k, 0], colors[k, 1], colors[k, 2]
        for iy in range(max(y0[k], r0), min(y0[k] + ny[k], r1)):
            dy = np.float32(iy) + np.float32(0.5) - my
            cyy = c * dy * dy
            lo, hi = _row_span(a, conic[k, 1], c, dy, x0[k], nx[k], mx)
            # blocks of CHUNK pixels from lo, lanes at or past hi masked: fixed-length loops
            # vectorize whole; unsigned indices need no negative-index wraparound
            r, end, end_f = iy - r0, np.uint64(hi), np.float32(hi)
            for start in range(np.uint64(lo), end, np.uint64(CHUNK)):
                for lane in range(np.uint64(CHUNK)):
                    ix = start + lane
                    w, _ = _weight(a, b2, cyy, dy, mx, ix, end_f, centres, q_cut)
                    acc[0, r, ix] += w * c0
                    acc[1, r, ix] += w * c1
                    acc[2, r, ix] += w * c2


@numba.njit(cache=True, nogil=True)
def _forward_bands(
    means, conic, colors, x0, y0, nx, ny, starts, items, height, width, band, q_cut, centres, out, acc, first, stop,
):  # pragma: no cover - compiled
    """Rows of bands [first, stop) of ``out`` [H * W, 3]; acc [3, band, W + CHUNK] float32
    is this thread's scratch."""
    for bi in range(first, stop):
        r0 = bi * band
        r1 = min(height, r0 + band)
        accumulate_band(means, conic, colors, x0, y0, nx, ny, starts[bi : bi + 2], items, r0, r1, q_cut, centres,
                        acc)
        for iy in range(r0, r1):
            row = iy * width
            for ix in range(width):
                for ch in range(3):
                    out[row + ix, ch] = acc[ch, iy - r0, ix]


def _band_groups(y0, nx, ny, height: int):
    """How a band pass splits the image: (rows per band, bands, `bin_bands`' starts and items,
    bands per thread group, groups)."""
    band = band_rows(y0, ny, height)
    n_bands = -(-height // band)
    starts, items = bin_bands(y0, nx, ny, band, n_bands)
    per_group = max(1, -(-GROUP_ROWS // band))
    return band, n_bands, starts, items, per_group, -(-n_bands // per_group)


def _forward3(means, conic, colors, x0, y0, nx, ny, height: int, width: int, threads: int | None) -> np.ndarray:
    band, n_bands, starts, items, per_group, n_groups = _band_groups(y0, nx, ny, height)
    out = np.empty((height * width, 3), np.float32)
    centres = pixel_centres(width)

    def worker(take: Callable[[], int]) -> None:
        acc = np.empty((3, band, width + CHUNK), np.float32)
        while (g := take()) < n_groups:
            _forward_bands(means, conic, colors, x0, y0, nx, ny, starts, items, height, width, band, Q_CUT_F32,
                           centres, out, acc, g * per_group, min(n_bands, (g + 1) * per_group))

    run_threads(worker, n_groups, threads)
    return out


def _groups_of_3(a: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """[N, C] -> (first, count, [N, 3] float32 zero-padded) per group of 3 channels."""
    if a.shape[1] == 3:
        return [(0, 3, np.ascontiguousarray(a, np.float32))]
    groups = []
    for first in range(0, a.shape[1], 3):
        count = min(3, a.shape[1] - first)
        block = np.zeros((a.shape[0], 3), np.float32)
        block[:, :count] = a[:, first : first + count]
        groups.append((first, count, block))
    return groups


def forward(means, conic, colors, x0, y0, nx, ny, height: int, width: int, threads: int | None = None) -> np.ndarray:
    """[H*W, C] float32: sum of colors * exp(-q/2) over the splats' boxes (q <= Q_CUT).

    means [N, 2], conic [N, 3], colors [N, C] float32; x0, y0, nx, ny [N] int64. Each
    pixel sums its splats in index order, whatever the number of threads."""
    if colors.shape[1] == 3:
        return _forward3(means, conic, np.ascontiguousarray(colors, np.float32), x0, y0, nx, ny, height, width,
                         threads)
    out = np.empty((height * width, colors.shape[1]), np.float32)
    for first, count, block in _groups_of_3(colors):
        block_out = _forward3(means, conic, block, x0, y0, nx, ny, height, width, threads)
        out[:, first : first + count] = block_out[:, :count]
    return out


# ---- forward fused with a squared error --------------------------------------------------
# The encoder's refinement needs of the render only its squared error against the target
# and that error's gradient: computed in the band pass while the band is in cache, no image
# is written and no gradient transposed for the backward.


@numba.njit(cache=True, nogil=True)
def _error_bands(
    means, conic, colors, x0, y0, nx, ny, starts, items, height, width, band, q_cut, centres, target, weight, m, a,
    scale, grad, sums, acc, first, stop,
):  # pragma: no cover - compiled
    """For bands [first, stop), e = render - target ([H * W, 3]) per pixel: sums[band] := sum of
    v |e m|^2 over its pixels (float64, in pixel order), grad[:, pixel] := scale * v * e a (planar,
    as `_backward_splats` reads it); v the pixel's ``weight`` [H * W], or 1 when it is empty
    (exactly: the products with 1 change nothing)."""
    weighted = weight.shape[0] > 0
    for bi in range(first, stop):
        r0 = bi * band
        r1 = min(height, r0 + band)
        accumulate_band(means, conic, colors, x0, y0, nx, ny, starts[bi : bi + 2], items, r0, r1, q_cut, centres,
                        acc)
        total = 0.0
        for iy in range(r0, r1):
            row = iy * width
            for ix in range(width):
                p = row + ix
                e0 = acc[0, iy - r0, ix] - target[p, 0]
                e1 = acc[1, iy - r0, ix] - target[p, 1]
                e2 = acc[2, iy - r0, ix] - target[p, 2]
                v = weight[p] if weighted else np.float32(1.0)
                sv = scale * v
                for c in range(3):
                    r = e0 * m[0, c] + e1 * m[1, c] + e2 * m[2, c]
                    total += np.float64(v * r * r)
                    grad[c, p] = sv * (e0 * a[0, c] + e1 * a[1, c] + e2 * a[2, c])
        sums[bi] = total


def forward_error(means, conic, colors, x0, y0, nx, ny, height: int, width: int, target, m, a, scale: float,
                  weight=None, threads: int | None = None) -> tuple[float, np.ndarray]:
    """(sum of v |(render - target) m|^2, its gradient in the render times ``scale``), for 3
    channels: target [H*W, 3], m and a = m m^T [3, 3] float32, v the pixel's ``weight`` [H*W]
    float32 (None: 1); the gradient 2 scale v (render - target) a comes planar
    [3, H*W + CHUNK], as `backward_planar` takes it."""
    weight = np.empty(0, np.float32) if weight is None else weight
    band, n_bands, starts, items, per_group, n_groups = _band_groups(y0, nx, ny, height)
    grad = np.zeros((3, height * width + CHUNK), np.float32)
    sums = np.zeros(n_bands)
    centres = pixel_centres(width)
    scale = np.float32(2.0 * scale)

    def worker(take: Callable[[], int]) -> None:
        acc = np.empty((3, band, width + CHUNK), np.float32)
        while (g := take()) < n_groups:
            _error_bands(means, conic, colors, x0, y0, nx, ny, starts, items, height, width, band, Q_CUT_F32,
                         centres, target, weight, m, a, scale, grad, sums, acc, g * per_group,
                         min(n_bands, (g + 1) * per_group))

    run_threads(worker, n_groups, threads)
    return float(sums.sum()), grad


# ---- backward --------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _backward_splats(
    means, conic, colors, x0, y0, nx, ny, width, grad, need_geometry, q_cut, centres, g_means, g_conic, g_colors,
    first, stop,
):  # pragma: no cover - compiled
    """Gradients of splats [first, stop) into g_means, g_conic, g_colors (float64 [N, *]).

    grad [3, H * W + CHUNK] float32 is dL/d(output), planar and zero-padded (the masked lanes
    past a row's end read it). Per lane, partial sums (colours 0-2; of dL/dq times dx dx,
    dx dy, dy dy, dx, dy) are added up per splat; the constants of dq/d(conic) and
    dq/d(mean) = -2 conic d are applied to the sums."""
    # Scratch allocated here, not passed in: the compiler then knows no store to it changes
    # grad, and keeps the sums out of memory (18-24 % less time a call on AVX2).
    part = np.empty((8, CHUNK), np.float32)
    sums = np.empty(8)
    for k in range(first, stop):
        part[:] = 0.0
        sums[:] = 0.0
        mx, my = means[k, 0], means[k, 1]
        a, b, c = conic[k, 0], conic[k, 1], conic[k, 2]
        b2 = np.float32(2.0) * b
        c0, c1, c2 = colors[k, 0], colors[k, 1], colors[k, 2]
        for iy in range(y0[k], y0[k] + ny[k]):
            dy = np.float32(iy) + np.float32(0.5) - my
            cyy = c * dy * dy
            lo, hi = _row_span(a, b, c, dy, x0[k], nx[k], mx)
            base, end, end_f = np.uint64(iy * width), np.uint64(hi), np.float32(hi)
            for start in range(np.uint64(lo), end, np.uint64(CHUNK)):
                if need_geometry:  # two loops, not a test per lane: each vectorizes
                    for lane in range(np.uint64(CHUNK)):
                        ix = start + lane
                        w, dx = _weight(a, b2, cyy, dy, mx, ix, end_f, centres, q_cut)
                        g0, g1, g2 = grad[0, base + ix], grad[1, base + ix], grad[2, base + ix]
                        part[0, lane] += w * g0
                        part[1, lane] += w * g1
                        part[2, lane] += w * g2
                        gq = np.float32(-0.5) * w * (g0 * c0 + g1 * c1 + g2 * c2)  # dL/dq
                        gqx, gqy = gq * dx, gq * dy
                        part[3, lane] += gqx * dx
                        part[4, lane] += gqx * dy
                        part[5, lane] += gqy * dy
                        part[6, lane] += gqx
                        part[7, lane] += gqy
                else:
                    for lane in range(np.uint64(CHUNK)):
                        ix = start + lane
                        w, _ = _weight(a, b2, cyy, dy, mx, ix, end_f, centres, q_cut)
                        part[0, lane] += w * grad[0, base + ix]
                        part[1, lane] += w * grad[1, base + ix]
                        part[2, lane] += w * grad[2, base + ix]
        for i in range(8):
            for lane in range(CHUNK):
                sums[i] += np.float64(part[i, lane])
        for i in range(3):
            g_colors[k, i] = sums[i]
        g_conic[k, 0], g_conic[k, 1], g_conic[k, 2] = sums[3], 2.0 * sums[4], sums[5]
        g_means[k, 0] = -2.0 * (np.float64(a) * sums[6] + np.float64(b) * sums[7])
        g_means[k, 1] = -2.0 * (np.float64(b) * sums[6] + np.float64(c) * sums[7])


def backward_planar(means, conic, colors, x0, y0, nx, ny, width: int, grad, need_geometry: bool,
                    threads: int | None = None):
    """Gradients (means [N, 2], conic [N, 3], colors [N, 3], float64) of sum(grad * forward) for
    3 channels, grad planar [3, H*W + CHUNK] float32 (zero past the image)."""
    n = len(means)
    gm, gc, gcol = np.zeros((n, 2)), np.zeros((n, 3)), np.zeros((n, 3))
    centres = pixel_centres(width)
    n_groups = -(-n // GROUP_SPLATS)

    def worker(take: Callable[[], int]) -> None:
        while (g := take()) < n_groups:
            _backward_splats(means, conic, colors, x0, y0, nx, ny, width, grad, need_geometry, Q_CUT_F32,
                             centres, gm, gc, gcol, g * GROUP_SPLATS, min(n, (g + 1) * GROUP_SPLATS))

    run_threads(worker, n_groups, threads)
    return gm, gc, gcol


def backward(means, conic, colors, x0, y0, nx, ny, width: int, grad_out, need_geometry: bool,
             threads: int | None = None):
    """Gradients (means [N, 2], conic [N, 3], colors [N, C], float32) of sum(grad_out * forward);
    grad_out [H*W, C]. Without ``need_geometry`` the first two are zeros."""
    n, channels = colors.shape
    g_means, g_conic = np.zeros((n, 2)), np.zeros((n, 3))
    g_colors = np.zeros((n, channels), np.float32)
    for first, count, block in _groups_of_3(colors):
        grad = np.zeros((3, grad_out.shape[0] + CHUNK), np.float32)
        grad[:count, : grad_out.shape[0]] = grad_out[:, first : first + count].T
        gm, gc, gcol = backward_planar(means, conic, block, x0, y0, nx, ny, width, grad, need_geometry, threads)
        g_means += gm  # geometry gradients are linear in the colours: groups add up
        g_conic += gc
        g_colors[:, first : first + count] = gcol[:, :count]
    return g_means.astype(np.float32), g_conic.astype(np.float32), g_colors
