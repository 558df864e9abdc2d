"""`render_splats`: the one entry to every renderer, and the backends behind it.

Backends (all implement SPEC 7 and agree within +-1 LSB after rounding):

- "torch": `gscodec.render.reference`, the oracle; any dtype and device.
- "numba": the compiled CPU kernels of `gscodec.render.numba.kernels` (float32 CPU tensors).
- "cuda": the CUDA kernels of the top-level ``cuda/`` folder through CuPy
  (`gscodec.render.cuda`; float32 CUDA tensors).
"""

from __future__ import annotations

import numpy as np
import torch

from ..format.color import YCBCR_TO_RGB
from . import reference
from .preprocess import prepare

BACKENDS = ("torch", "numba", "cuda")


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

    ``backend``: one of BACKENDS, or "auto" (cuda for float32 CUDA tensors when
    `gscodec.has_cuda()`, numba for float32 CPU tensors, else torch).
    """
    if backend == "auto":
        backend = _auto_backend(colors)
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r} (one of {', '.join(BACKENDS)} or auto)")
    means, conic, colors, boxes = prepare(means, scales, angles, colors, height, width, scale, origin)
    if backend == "numba":
        out = _NumbaRasterize.apply(means, conic, colors, boxes, height, width)
    elif backend == "cuda":
        from .cuda import CudaRasterize

        out = CudaRasterize.apply(means, conic, colors, boxes, height, width)
    else:
        out = reference.rasterize(means, conic, colors, boxes, height, width)
    if background is not None:
        out = out + background
    return out.view(height, width, -1)


def _auto_backend(colors: torch.Tensor) -> str:
    if colors.dtype == torch.float32 and colors.device.type == "cpu":
        return "numba"
    if colors.dtype == torch.float32 and colors.device.type == "cuda":
        from .cuda import has_cuda

        return "cuda" if has_cuda() else "torch"
    return "torch"


def render_mse(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, colors: torch.Tensor,
               target: torch.Tensor, metric: torch.Tensor, *, weight: torch.Tensor | None = None,
               origin: tuple[int, int] = (0, 0), backend: str = "auto") -> torch.Tensor:
    """``mean(weight * ((render - target) @ metric) ** 2)`` (the mean over target's elements):
    the squared error of the splats' render against ``target`` [H, W, 3] (the pixels from
    ``origin`` on) through a [3, 3] colour map, each pixel weighed by ``weight`` [H, W]
    (default 1), differentiable in the splats. The encoder's loss (YCbCr
    splats, error in RGB) and inpainting's polish (a weighted window). The numba backend
    computes it in its forward pass (`kernels.forward_error`, no image kept), which took
    12-16 % off an effort-1 encode of a 768 x 512 image; other backends render, then take the
    expression."""
    if backend == "auto":
        backend = _auto_backend(colors)
    tensors = (colors, target, metric) if weight is None else (colors, target, metric, weight)
    cpu32 = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    h, w = target.shape[:2]
    if backend != "numba" or colors.shape[1] != 3 or target.requires_grad or not cpu32:
        img = render_splats(means, scales, angles, colors, h, w, origin=origin, backend=backend)
        error = ((img - target) @ metric).square()
        return (error if weight is None else error * weight[..., None]).mean()
    means, conic, colors, boxes = prepare(means, scales, angles, colors, h, w, 1.0, origin)
    return _NumbaRenderMse.apply(means, conic, colors, boxes, target, metric, weight)


def _kernel_args(means, conic, colors, boxes) -> list[np.ndarray]:
    """The numba kernels' arrays: means, conic, colors (float32) and the boxes x0, y0, nx, ny (int64)."""
    return ([t.detach().contiguous().numpy() for t in (means, conic, colors)]
            + [t.to(torch.int64).contiguous().numpy() for t in boxes])


class _NumbaRenderMse(torch.autograd.Function):
    """`render_mse` through `kernels.forward_error` and `kernels.backward_planar`."""

    @staticmethod
    def forward(ctx, means, conic, colors, boxes, target, metric, weight):
        from .numba import kernels

        h, w = target.shape[:2]
        flat = target.detach().reshape(-1, 3).contiguous().numpy()
        a = (metric @ metric.T).contiguous().numpy()
        v = None if weight is None else weight.detach().reshape(-1).contiguous().numpy()
        total, ctx.grad = kernels.forward_error(*_kernel_args(means, conic, colors, boxes), h, w, flat,
                                                metric.contiguous().numpy(), a, 1.0 / target.numel(), v)
        ctx.save_for_backward(means, conic, colors, *boxes)
        ctx.width = w
        return torch.tensor(total / target.numel(), dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad):
        from .numba import kernels

        means, conic, colors, *boxes = ctx.saved_tensors
        need_geometry = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        g = float(grad)  # the kernels' gradient is the loss's own: scaled by the caller's
        grads = kernels.backward_planar(*_kernel_args(means, conic, colors, boxes), ctx.width, ctx.grad, need_geometry)
        gm, gc, gcol = (torch.from_numpy(x * g if g != 1.0 else x).to(torch.float32) for x in grads)
        return gm, gc, gcol, None, None, None, None


class _NumbaRasterize(torch.autograd.Function):
    """The sum of `reference.rasterize` through the compiled kernels of `gscodec.render.numba.kernels`."""

    @staticmethod
    def forward(ctx, means, conic, colors, boxes, height, width):
        from .numba import kernels

        out = kernels.forward(*_kernel_args(means, conic, colors, boxes), height, width)
        ctx.save_for_backward(means, conic, colors, *boxes)
        ctx.width = width
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):
        from .numba import kernels

        means, conic, colors, *boxes = ctx.saved_tensors
        need_geometry = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        g = grad_out.to(torch.float32).contiguous().numpy()
        gm, gc, gcol = kernels.backward(*_kernel_args(means, conic, colors, boxes), ctx.width, g, need_geometry)
        return torch.from_numpy(gm), torch.from_numpy(gc), torch.from_numpy(gcol), None, None, None


def render_rgb8(splats, height: int, width: int, *, scale: float = 1.0, device: str = "cpu",
                backend: str = "auto") -> np.ndarray:
    """[height, width, 3] uint8 RGB of a `gscodec.Splats` through `render_splats` and `to_uint8_rgb`:
    the CUDA decode path, and with ``backend="torch"`` the spec's reference decode."""
    t = splats.tensors(device=device)
    with torch.no_grad():
        ycc = render_splats(t.means, t.scales, t.angles, t.colors, height, width, scale=scale,
                            background=torch.from_numpy(splats.background).to(device), backend=backend)
        return to_uint8_rgb(ycc).cpu().numpy()


def to_uint8_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] YCbCr (float) -> [H, W, 3] uint8 RGB: convert, scale by 255, clamp, round."""
    matrix = torch.from_numpy(YCBCR_TO_RGB).to(ycbcr.device)
    rgb = (ycbcr.double() @ matrix.T) * 255.0
    return torch.round(rgb.clamp(0.0, 255.0)).to(torch.uint8)
