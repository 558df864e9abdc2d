"""Each splat's pixel weights, stored once (numba): the colour operator of
`gscodec.render.operator` on the CPU.

Rendering is linear in the colours: for fixed geometry the image is W c, W the [P, N] matrix
of the splats' weights exp(-q/2). Colour solves apply W and its transpose many times over
one geometry; computed from scratch each time (a render and a backward pass) that costs
as much as a refinement step. Stored here row span by row span (the pixels of
`kernels._row_span`, weights by `kernels._weight`, 0 where q > Q_CUT), it is computed once:
the same pixels and the same float32 weights as the renderer. A span's pixels are
consecutive, so the products run over contiguous memory (planar images, [C, P]).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from ...format.constants import Q_CUT_F32
from .kernels import CHUNK, GROUP_SPLATS, _exp, _groups_of_3, _row_span, _weight, pixel_centres, run_threads


@numba.njit(cache=True)
def count_spans(means, conic, x0, y0, nx, ny):  # pragma: no cover - compiled
    """Per splat, offsets of its row spans ([N + 1]) and of their weights ([N + 1]), int64."""
    n = len(means)
    rows, weights = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    for k in range(n):
        a, b, c = conic[k, 0], conic[k, 1], conic[k, 2]
        spans, total = 0, 0
        for iy in range(y0[k], y0[k] + ny[k]):
            dy = np.float32(iy) + np.float32(0.5) - means[k, 1]
            lo, hi = _row_span(a, b, c, dy, x0[k], nx[k], means[k, 0])
            if hi > lo:
                spans += 1
                total += hi - lo
        rows[k + 1] = rows[k] + spans
        weights[k + 1] = weights[k] + total
    return rows, weights


@numba.njit(cache=True, nogil=True)
def fill_spans(means, conic, x0, y0, nx, ny, width, rows, offsets, first_pixel, weights, q_cut, centres, first, stop
               ):  # pragma: no cover - compiled
    """For splats [first, stop): each span's first pixel (row-major index) and weight offset
    (``offsets`` [R + 1]; a splat's first span starts at its weight offset), and the weights."""
    for k in range(first, stop):
        mx, my = means[k, 0], means[k, 1]
        a, b, c = conic[k, 0], conic[k, 1], conic[k, 2]
        b2 = np.float32(2.0) * b
        r, j = rows[k], offsets[rows[k]]
        for iy in range(y0[k], y0[k] + ny[k]):
            dy = np.float32(iy) + np.float32(0.5) - my
            cyy = c * dy * dy
            lo, hi = _row_span(a, b, c, dy, x0[k], nx[k], mx)
            if hi <= lo:
                continue
            first_pixel[r] = iy * width + lo
            end_f = np.float32(hi)
            for ix in range(np.uint64(lo), np.uint64(hi)):
                w, _ = _weight(a, b2, cyy, dy, mx, ix, end_f, centres, q_cut)
                weights[j] = w
                j += 1
            r += 1
            offsets[r] = j


@numba.njit(cache=True, nogil=True)
def apply_spans(rows, offsets, first_pixel, weights, colors, out, p_lo, p_hi):  # pragma: no cover - compiled
    """out [3, P] float32, pixels [p_lo, p_hi) := sum over splats, in index order, of their
    weights x colors [N, 3] (each pixel summed in the renderer's order: the image equals its
    render)."""
    out[:, p_lo:p_hi] = 0.0
    out0, out1, out2 = out[0], out[1], out[2]
    for k in range(len(rows) - 1):
        c0, c1, c2 = colors[k, 0], colors[k, 1], colors[k, 2]
        for r in range(rows[k], rows[k + 1]):
            p, j0 = first_pixel[r], offsets[r]
            if p < p_lo or p >= p_hi:
                continue
            for i in range(offsets[r + 1] - j0):
                w = weights[j0 + i]
                out0[p + i] += w * c0
                out1[p + i] += w * c1
                out2[p + i] += w * c2


@numba.njit(cache=True, nogil=True, fastmath=True)
def gather_spans(rows, offsets, first_pixel, weights, image, squared, out, first, stop):  # pragma: no cover - compiled
    """out[k] := sum over splat k's pixels of its weight (squared if ``squared``) x image [3, P],
    for splats [first, stop) (float64 sums, reassociated to vectorize)."""
    image0, image1, image2 = image[0], image[1], image[2]
    for k in range(first, stop):
        t0, t1, t2 = 0.0, 0.0, 0.0
        for r in range(rows[k], rows[k + 1]):
            p, j0 = first_pixel[r], offsets[r]
            for i in range(offsets[r + 1] - j0):
                w = weights[j0 + i]
                if squared:
                    w = w * w
                t0 += np.float64(w * image0[p + i])
                t1 += np.float64(w * image1[p + i])
                t2 += np.float64(w * image2[p + i])
        out[k, 0], out[k, 1], out[k, 2] = t0, t1, t2


@numba.njit(cache=True, nogil=True)
def replaced_spans(means, conic, other_means, other, x0, y0, nx, ny, image, q_cut, centres, out, first, stop
                   ):  # pragma: no cover - compiled
    """For splats [first, stop) (centres ``means``, ``conic`` [N, 3]), each with another splat
    to stand in for it (``other_means``, ``other`` and the other's boxes): out[k] := the other's
    weights w' summed against the planar image [3, P + CHUNK] (zero-padded: the masked lanes
    past a row's end read it) (3), sum w'^2 and sum w w' (float64). Per-lane partial sums, as
    `kernels._backward_splats`: the pixel loop vectorizes."""
    width = len(centres) - CHUNK
    part = np.empty((5, CHUNK), np.float32)
    for k in range(first, stop):
        part[:] = 0.0
        mx, my = other_means[k, 0], other_means[k, 1]
        a, b, c = other[k, 0], other[k, 1], other[k, 2]
        b2 = np.float32(2.0) * b
        a0, b0, c0 = conic[k, 0], np.float32(2.0) * conic[k, 1], conic[k, 2]
        shift_x, shift_y = mx - means[k, 0], my - means[k, 1]  # the other's centre less this one's
        for iy in range(y0[k], y0[k] + ny[k]):
            dy = np.float32(iy) + np.float32(0.5) - my
            dy0 = dy + shift_y
            cyy, cyy0, bdy0 = c * dy * dy, c0 * dy0 * dy0, b0 * dy0
            lo, hi = _row_span(a, b, c, dy, x0[k], nx[k], mx)
            base, end, end_f = np.uint64(iy * width), np.uint64(hi), np.float32(hi)
            for start in range(np.uint64(lo), end, np.uint64(CHUNK)):
                for lane in range(np.uint64(CHUNK)):
                    ix = start + lane
                    w, dx = _weight(a, b2, cyy, dy, mx, ix, end_f, centres, q_cut)
                    dx0 = dx + shift_x
                    q0 = a0 * dx0 * dx0 + bdy0 * dx0 + cyy0
                    w0 = _exp(np.float32(-0.5) * q0) if q0 <= q_cut else np.float32(0.0)
                    part[0, lane] += w * image[0, base + ix]
                    part[1, lane] += w * image[1, base + ix]
                    part[2, lane] += w * image[2, base + ix]
                    part[3, lane] += w * w
                    part[4, lane] += w * w0
        for i in range(5):
            total = 0.0
            for lane in range(CHUNK):
                total += np.float64(part[i, lane])
            out[k, i] = total


def replaced_sums(means, conic, width: int, image: np.ndarray, candidates) -> list[np.ndarray]:
    """Per candidate (other means, conic and boxes x0, y0, nx, ny), [N, 5] float64: its
    `replaced_spans` for every splat, the image [3, P] planar."""
    n = len(means)
    centres = pixel_centres(width)
    padded = np.zeros((3, image.shape[1] + CHUNK), np.float32)
    padded[:, : image.shape[1]] = image
    groups = -(-n // GROUP_SPLATS)
    outs = []
    for other_means, other, x0, y0, nx, ny in candidates:
        out = np.empty((n, 5), np.float64)

        def worker(take: Callable[[], int], other_means=other_means, other=other, boxes=(x0, y0, nx, ny), out=out
                   ) -> None:
            while (g := take()) < groups:
                replaced_spans(means, conic, other_means, other, *boxes, padded, Q_CUT_F32, centres, out,
                               g * GROUP_SPLATS, min(n, (g + 1) * GROUP_SPLATS))

        run_threads(worker, groups)
        outs.append(out)
    return outs


def _planes_of_3(image: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """[C, P] -> (first, count, [3, P] float32 planes, zero-padded) per group of 3 channels:
    `kernels._groups_of_3` of the transpose (no copy for 3 channels)."""
    if image.shape[0] == 3:
        return [(0, 3, np.ascontiguousarray(image, np.float32))]
    return [(first, count, np.ascontiguousarray(block.T)) for first, count, block in _groups_of_3(image.T)]


class SplatWeights:
    """The stored weights of a prepared splat set (float32 means [N, 2], conic [N, 3], int64
    boxes x0, y0, nx, ny) on an image ``width`` pixels wide; ``spans``: their `count_spans`
    (`build` counts them and checks the size first)."""

    def __init__(self, means, conic, x0, y0, nx, ny, width: int, spans: tuple[np.ndarray, np.ndarray]) -> None:
        self.n = len(means)
        self.rows, starts = spans
        self.offsets = np.empty(int(self.rows[-1]) + 1, np.int64)
        self.offsets[self.rows[:-1]] = starts[:-1]  # each splat's first span; the rest filled below
        self.offsets[-1] = starts[-1]
        self.first_pixel = np.empty(int(self.rows[-1]), np.int64)
        self.weights = np.empty(int(starts[-1]), np.float32)
        centres = pixel_centres(width)
        groups = -(-self.n // GROUP_SPLATS)

        def worker(take: Callable[[], int]) -> None:
            while (g := take()) < groups:
                fill_spans(means, conic, x0, y0, nx, ny, width, self.rows, self.offsets, self.first_pixel,
                           self.weights, Q_CUT_F32, centres, g * GROUP_SPLATS, min(self.n, (g + 1) * GROUP_SPLATS))

        run_threads(worker, groups)

    @classmethod
    def build(cls, means, conic, x0, y0, nx, ny, width: int, max_weights: int) -> SplatWeights | None:
        """The stored weights, or None when there would be more than ``max_weights`` of them."""
        spans = count_spans(means, conic, x0, y0, nx, ny)
        return cls(means, conic, x0, y0, nx, ny, width, spans) if spans[1][-1] <= max_weights else None

    def apply(self, colors: np.ndarray, pixels: int, width: int) -> np.ndarray:
        """[C, pixels] float32: the image of colours [N, C], planar (rows ``width`` pixels long)."""
        out = np.empty((colors.shape[1], pixels), np.float32)
        height = pixels // width
        threads = min(numba.get_num_threads(), max(height, 1))
        block = out if colors.shape[1] == 3 else np.empty((3, pixels), np.float32)
        for first, count, group in _groups_of_3(np.asarray(colors)):

            def worker(take: Callable[[], int], group=group) -> None:
                while (t := take()) < threads:
                    lo, hi = t * height // threads, (t + 1) * height // threads
                    apply_spans(self.rows, self.offsets, self.first_pixel, self.weights, group, block, lo * width,
                                hi * width)

            run_threads(worker, threads)
            if block is not out:
                out[first : first + count] = block[:count]
        return out

    def gather(self, image: np.ndarray, squared: bool = False) -> np.ndarray:
        """[N, C] float32: each splat's weights (or squared weights) summed against the planar
        image [C, P]."""
        out = np.empty((self.n, image.shape[0]), np.float32)
        part = np.empty((self.n, 3), np.float64)
        groups = -(-self.n // GROUP_SPLATS)
        for first, count, planes in _planes_of_3(image):

            def worker(take: Callable[[], int], planes=planes) -> None:
                while (g := take()) < groups:
                    gather_spans(self.rows, self.offsets, self.first_pixel, self.weights, planes, squared, part,
                                 g * GROUP_SPLATS, min(self.n, (g + 1) * GROUP_SPLATS))

            run_threads(worker, groups)
            out[:, first : first + count] = part[:, :count]
        return out
