"""The reference renderer in PyTorch: the test oracle and the fallback on any device.

pixel = sum_k colors[k] * exp(-q_k / 2),  q_k = d^T Sigma_k^-1 d, over the splats with
q_k <= Q_CUT, d the pixel centre minus the splat centre (bitstream/SPEC.md, section 7).

Memory stays bounded: splats are processed in chunks of at most ``CHUNK_PAIRS``
(splat, pixel) pairs inside each splat's box; no [N, H, W] tensor exists. The op is
a torch.autograd.Function with a hand-written backward (gradients for centres, the
inverse covariance and colours), checked by gradcheck in the tests.
"""

from __future__ import annotations

import torch

from ..format.constants import Q_CUT

CHUNK_PAIRS = 1 << 22


def q_cut_for(dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` <= Q_CUT: ``q <= q_cut_for(q.dtype)`` decides exactly ``q <= Q_CUT``
    (a plain comparison would round Q_CUT to the tensor's dtype, up in float32)."""
    cut = torch.tensor(Q_CUT, dtype=torch.float64).to(dtype)
    if float(cut) > Q_CUT:
        cut = torch.nextafter(cut, torch.zeros((), dtype=dtype))
    return float(cut)


def _enumerate_pairs(x0, y0, nx, ny):
    """Every (splat, x, y) inside the boxes: three [P] int64 tensors."""
    counts = nx * ny
    idx = torch.repeat_interleave(torch.arange(len(counts)), counts)
    local = torch.arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts)[idx]
    w = nx[idx]
    return idx, x0[idx] + local % w, y0[idx] + local // w


def box_pairs(x0, y0, nx, ny, max_pairs: int | None = None):
    """Every (box, x, y) inside the boxes (x0, y0, nx, ny: [N] int64), in chunks of whole boxes
    and at most ``max_pairs`` pairs (default CHUNK_PAIRS; more only for a box that alone has
    more): yields ([K] the chunk's box indices, its pairs as `_enumerate_pairs` gives them,
    box numbers counted within the chunk). Empty boxes are skipped."""
    limit = CHUNK_PAIRS if max_pairs is None else max_pairs
    sizes = nx * ny
    live = torch.nonzero(sizes > 0).squeeze(1)
    ends = torch.cumsum(sizes[live], 0)
    lo = 0
    while lo < len(live):
        done = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(torch.searchsorted(ends, done + limit, right=True)))
        sel = live[lo:hi]
        yield sel, _enumerate_pairs(x0[sel], y0[sel], nx[sel], ny[sel])
        lo = hi


class _RasterizeSum(torch.autograd.Function):
    """Sum of Gaussians at pixel centres: [N] splats -> [H*W, C] image (one chunk)."""

    @staticmethod
    def forward(ctx, means, conic, colors, pairs, width, n_pixels):
        idx, px, py = pairs
        dx = px.to(means.dtype).add_(0.5).sub_(means[:, 0].index_select(0, idx))
        dy = py.to(means.dtype).add_(0.5).sub_(means[:, 1].index_select(0, idx))
        a, b, c = (conic[:, k].index_select(0, idx) for k in range(3))
        q = a * dx * dx + 2.0 * b * dx * dy + c * dy * dy
        w = torch.exp(-0.5 * q).masked_fill_(q > q_cut_for(q.dtype), 0.0)
        pix = py * width + px
        out = torch.zeros(n_pixels, colors.shape[1], dtype=colors.dtype, device=colors.device)
        out.index_add_(0, pix, w[:, None] * colors.index_select(0, idx))
        ctx.save_for_backward(conic, colors, idx, pix, dx, dy, w)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        conic, colors, idx, pix, dx, dy, w = ctx.saved_tensors
        g = grad_out.index_select(0, pix)  # [P, C]
        n = len(colors)
        grad_colors = torch.zeros_like(colors).index_add_(0, idx, w[:, None] * g)
        gq = (g * colors.index_select(0, idx)).sum(1).mul_(w).mul_(-0.5)  # dL/dq per pair
        a, b, c = (conic[:, k].index_select(0, idx) for k in range(3))
        gqx, gqy = gq * dx, gq * dy
        # dq/dconic = (dx^2, 2 dx dy, dy^2); dq/dmean = -2 Sigma^-1 d
        per_pair = torch.stack([gqx * dx, 2.0 * gqx * dy, gqy * dy, a * gqx + b * gqy, b * gqx + c * gqy], 1)
        sums = torch.zeros(n, 5, dtype=per_pair.dtype, device=per_pair.device).index_add_(0, idx, per_pair)
        return -2.0 * sums[:, 3:], sums[:, :3], grad_colors, None, None, None


def rasterize(means, conic, colors, boxes, height, width):
    """[H * W, C] from splats on the output grid (`preprocess.prepare`): [P]-sized tensors, in chunks
    of at most CHUNK_PAIRS (splat, pixel) pairs (`box_pairs`)."""
    n_pixels = height * width
    out = torch.zeros(n_pixels, colors.shape[1], dtype=colors.dtype, device=colors.device)
    for sel, pairs in box_pairs(*boxes):
        out = out + _RasterizeSum.apply(means[sel], conic[sel], colors[sel], pairs, width, n_pixels)
    return out
