"""The normative rendering function, in PyTorch (CPU reference and test oracle).

pixel = background + sum_k colors[k] * exp(-q_k / 2),  q_k = d^T Sigma_k^-1 d,
summed over the splats with q_k <= Q_CUT (weight >= 1/255); d is the pixel centre
minus the splat centre. No sorting, no opacity, no normalisation: the result is
independent of splat order. bitstream/SPEC.md (section Rendering) is the definition;
this module implements it and must not drift from it.

Memory stays bounded: splats are processed in chunks of at most ``CHUNK_PAIRS``
(splat, pixel) pairs inside each splat's bounding box; no [N, H, W] tensor exists.
The op is a torch.autograd.Function with a hand-written backward (gradients for
centres, the inverse covariance and colours), checked by gradcheck in the tests.
"""

from __future__ import annotations

import math

import torch

from .color import ycbcr_to_rgb

Q_CUT = 2.0 * math.log(255.0)  # a splat's support: weight exp(-q/2) >= 1/255
CHUNK_PAIRS = 1 << 22


def covariance(scales: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Sxx, Sxy, Syy), each [N], of Sigma = R(angle) diag(s1^2, s2^2) R(angle)^T."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    v1, v2 = scales[:, 0] ** 2, scales[:, 1] ** 2
    return v1 * cos**2 + v2 * sin**2, (v1 - v2) * sin * cos, v1 * sin**2 + v2 * cos**2


def footprint_sizes(means: torch.Tensor, sxx: torch.Tensor, syy: torch.Tensor, height: int, width: int):
    """Per splat, the pixel box that can hold q <= Q_CUT: (x0, y0, nx, ny), each [N] int64.

    Pixel j is inside when its centre j + 0.5 lies within mean_x +- sqrt(Q_CUT * Sxx).
    """
    with torch.no_grad():
        rx, ry = torch.sqrt(Q_CUT * sxx), torch.sqrt(Q_CUT * syy)
        mx, my = means[:, 0].double(), means[:, 1].double()
        x0 = torch.ceil(mx - rx - 0.5).clamp(0, width).long()
        x1 = torch.floor(mx + rx - 0.5).clamp(-1, width - 1).long()
        y0 = torch.ceil(my - ry - 0.5).clamp(0, height).long()
        y1 = torch.floor(my + ry - 0.5).clamp(-1, height - 1).long()
        return x0, y0, (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)


def _enumerate_pairs(x0, y0, nx, ny):
    """Every (splat, x, y) inside the boxes: three [P] int64 tensors."""
    counts = nx * ny
    idx = torch.repeat_interleave(torch.arange(len(counts)), counts)
    local = torch.arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts)[idx]
    w = nx[idx]
    return idx, x0[idx] + local % w, y0[idx] + local // w


class _RasterizeSum(torch.autograd.Function):
    """Sum of Gaussians at pixel centres: [N] splats -> [H*W, C] image (one chunk)."""

    @staticmethod
    def forward(ctx, means, conic, colors, pairs, width, n_pixels):
        idx, px, py = pairs
        dx = px.to(means.dtype).add_(0.5).sub_(means[:, 0].index_select(0, idx))
        dy = py.to(means.dtype).add_(0.5).sub_(means[:, 1].index_select(0, idx))
        a, b, c = (conic[:, k].index_select(0, idx) for k in range(3))
        q = a * dx * dx + 2.0 * b * dx * dy + c * dy * dy
        w = torch.exp(-0.5 * q).masked_fill_(q > Q_CUT, 0.0)
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


def render_splats(
    means: torch.Tensor,  # [N, 2] source pixels
    scales: torch.Tensor,  # [N, 2]
    angles: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [N, C]
    height: int,
    width: int,
    *,
    scale: float = 1.0,
    origin: tuple[int, int] = (0, 0),
    background: torch.Tensor | None = None,  # [C]
    backend: str = "auto",
) -> torch.Tensor:
    """Render to an [height, width, C] tensor in the splats' colour space, unclamped.

    The output grid samples the source plane at ``scale`` output pixels per source
    pixel; output pixel (i, j) is output-grid pixel (origin[0] + i, origin[1] + j),
    so ``origin`` crops. When scale < 1 each covariance is widened by the variance
    (1/scale^2 - 1)/12 (box-filter anti-aliasing) and its colour scaled to keep the
    splat's mass. Differentiable in means, scales, angles and colors.

    ``backend``: "torch" (this module: the reference), "numba" (compiled CPU kernels,
    float32 CPU tensors only), "cuda" (`gscodec.render_cuda`: CUDA kernels through CuPy,
    CUDA tensors) or "auto" (cuda for float32 CUDA tensors when `has_cuda()`, numba for
    float32 CPU tensors, else torch).
    """
    sxx, sxy, syy = covariance(scales, angles)
    if scale < 1.0:
        det0 = sxx * syy - sxy * sxy
        extra = (1.0 / scale**2 - 1.0) / 12.0
        sxx, syy = sxx + extra, syy + extra
        colors = colors * torch.sqrt(det0 / (sxx * syy - sxy * sxy))[:, None]
    s2 = scale * scale
    sxx, sxy, syy = sxx * s2, sxy * s2, syy * s2
    means = means * scale - torch.tensor([origin[1], origin[0]], dtype=means.dtype, device=means.device)
    det = sxx * syy - sxy * sxy
    conic = torch.stack([syy / det, -sxy / det, sxx / det], 1)

    x0, y0, nx, ny = footprint_sizes(means, sxx, syy, height, width)
    if backend == "auto":
        backend = "torch"
        if colors.dtype == torch.float32 and colors.device.type == "cpu":
            backend = "numba"
        elif colors.dtype == torch.float32 and colors.device.type == "cuda":
            from .render_cuda import has_cuda

            backend = "cuda" if has_cuda() else "torch"
    if backend == "numba":
        out = _NumbaRasterize.apply(means, conic, colors, (x0, y0, nx, ny), height, width)
    elif backend == "cuda":
        from .render_cuda import CudaRasterize

        out = CudaRasterize.apply(means, conic, colors, (x0, y0, nx, ny), height, width)
    elif backend == "torch":
        out = _render_chunks(means, conic, colors, (x0, y0, nx, ny), height, width)
    else:
        raise ValueError(f"unknown render backend {backend!r}")
    if background is not None:
        out = out + background
    return out.view(height, width, -1)


def _render_chunks(means, conic, colors, boxes, height, width):
    """The reference path: [P]-sized tensors, in chunks of about CHUNK_PAIRS pairs."""
    x0, y0, nx, ny = boxes
    n_pixels = height * width
    out = torch.zeros(n_pixels, colors.shape[1], dtype=colors.dtype, device=colors.device)
    sizes = nx * ny
    live = torch.nonzero(sizes > 0).squeeze(1)
    if len(live):
        ends = torch.cumsum(sizes[live], 0)
        marks = torch.arange(CHUNK_PAIRS, max(int(ends[-1]), CHUNK_PAIRS), CHUNK_PAIRS)
        cuts = torch.searchsorted(ends, marks, right=True).tolist()
        bounds = [0, *sorted(set(cuts) - {0, len(live)}), len(live)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            sel = live[lo:hi]
            pairs = _enumerate_pairs(x0[sel], y0[sel], nx[sel], ny[sel])
            out = out + _RasterizeSum.apply(means[sel], conic[sel], colors[sel], pairs, width, n_pixels)
    return out


class _NumbaRasterize(torch.autograd.Function):
    """The same sum through the compiled kernels of `gscodec.render_numba`."""

    @staticmethod
    def forward(ctx, means, conic, colors, boxes, height, width):
        from . import render_numba

        arrays = [t.detach().contiguous().numpy() for t in (means, conic, colors)]
        ints = [t.to(torch.int64).contiguous().numpy() for t in boxes]
        out = render_numba.forward(*arrays, *ints, height, width)
        ctx.save_for_backward(means, conic, colors, *boxes)
        ctx.width = width
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):
        from . import render_numba

        means, conic, colors, *boxes = ctx.saved_tensors
        arrays = [t.detach().contiguous().numpy() for t in (means, conic, colors)]
        ints = [t.contiguous().numpy() for t in boxes]
        need_geometry = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        g = grad_out.to(torch.float32).contiguous().numpy()
        gm, gc, gcol = render_numba.backward(*arrays, *ints, ctx.width, g, need_geometry)
        return torch.from_numpy(gm), torch.from_numpy(gc), torch.from_numpy(gcol), None, None, None


def to_uint8_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] YCbCr (float) -> [H, W, 3] uint8 RGB: convert, scale by 255, clamp, round."""
    rgb = ycbcr_to_rgb(ycbcr.double()) * 255.0
    return torch.round(rgb.clamp(0.0, 255.0)).to(torch.uint8)

