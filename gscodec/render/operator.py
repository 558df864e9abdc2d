"""`color_operator`: for fixed geometry, the linear map from splat colours to the image.

Rendering is linear in the colours, image = W c. Colour solves (least squares by conjugate
gradients) apply W and its transpose many times over one geometry:

- on the CPU (numba backend) W is computed once and stored (`gscodec.render.numba.weights`:
  the renderer's own pixels and float32 weights), so each product is a pass over memory;
- elsewhere, and when W would not fit in `MAX_WEIGHTS` entries, each product is a render
  and the renderer's backward pass (its adjoint).

Measured on kodim05's effort-0 stream at quality 50 (1.99 M weights, 2 cores): W^T W c
takes 7.3 ms stored against 25.3 ms through the renderer; storing takes 5-7 ms.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .backends import _auto_backend, render_splats
from .preprocess import prepare

# Most weights stored (4 bytes each, and 16 per row span: about 100 MB at the limit);
# beyond, products go through the renderer.
MAX_WEIGHTS = 1 << 24


class ColorOperator:
    """W for one geometry, ``height`` x ``width`` pixels: `apply` gives W c ([H, W, C]),
    `adjoint` W^T y ([N, C]), `normal` W^T D W c and `squared_sums` sum_p w_p^2 d_p per splat
    ([N]), D = diag(d) a weight per pixel; `replaced` the sums a splat's replacement would have."""

    def __init__(self, means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, height: int, width: int,
                 origin: tuple[int, int] = (0, 0), backend: str = "auto") -> None:
        self.geometry = tuple(t.detach() for t in (means, scales, angles))
        self.height, self.width, self.origin = height, width, origin
        self.device = means.device
        self.backend = _auto_backend(means) if backend == "auto" else backend
        self.stored = None
        if self.backend == "numba" and len(means):
            from .numba.weights import SplatWeights

            with torch.no_grad():  # the renderer's own preprocessing (any [N, 1] stands in for colours)
                m, conic, _, boxes = prepare(*self.geometry, means[:, :1], height, width, 1.0, origin)
            arrays = [t.contiguous().numpy() for t in (m, conic)] + [t.contiguous().numpy() for t in boxes]
            self.stored = SplatWeights.build(*arrays, width, MAX_WEIGHTS)

    def apply(self, colors: torch.Tensor) -> torch.Tensor:
        """[H, W, C] image of colours [N, C]."""
        if self.stored is not None:
            out = self.stored.apply(colors.detach().numpy(), self.height * self.width, self.width)
            return torch.from_numpy(np.ascontiguousarray(out.T)).view(self.height, self.width, -1)
        with torch.no_grad():
            return render_splats(*self.geometry, colors.detach(), self.height, self.width, origin=self.origin,
                                 backend=self.backend)

    def adjoint(self, image: torch.Tensor) -> torch.Tensor:
        """[N, C]: W^T image, for an [H, W, C] (or [H * W, C]) image."""
        image = image.reshape(self.height * self.width, -1)
        if self.stored is not None:
            return torch.from_numpy(self.stored.gather(image.detach().numpy().T))
        return self._rendered_adjoint(self.geometry, image)

    def normal(self, colors: torch.Tensor, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """[N, C]: W^T diag(pixel_weight) W colors (``pixel_weight`` [H, W] or [H * W], default 1)."""
        if self.stored is not None:
            image = self.stored.apply(colors.detach().numpy(), self.height * self.width, self.width)
            if pixel_weight is not None:
                image *= pixel_weight.reshape(1, -1).numpy()
            return torch.from_numpy(self.stored.gather(image))
        image = self.apply(colors).reshape(self.height * self.width, -1)
        if pixel_weight is not None:
            image = image * pixel_weight.reshape(-1, 1)
        return self._rendered_adjoint(self.geometry, image)

    def squared_sums(self, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """[N]: per splat, its squared weights summed over the pixels, each times
        ``pixel_weight`` ([H, W] or [H * W]; default 1)."""
        if pixel_weight is None:
            pixel_weight = torch.ones(self.height * self.width, device=self.device)
        pixels = pixel_weight.reshape(-1, 1).to(torch.float32)
        if self.stored is not None:
            return torch.from_numpy(self.stored.gather(pixels.detach().numpy().T, squared=True))[:, 0]
        # a Gaussian with half the covariance has the squared weights (up to the cut at Q_CUT)
        means, scales, angles = self.geometry
        return self._rendered_adjoint((means, scales / math.sqrt(2.0), angles), pixels)[:, 0]

    def replaced(self, candidates: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], image: torch.Tensor
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """What the weights would be with each splat replaced by another: for each candidate
        geometry (means [N, 2], scales [N, 2], angles [N]), per splat, its replacement's weights
        w' summed against ``image`` ([H, W, 3]; [N, 3]), sum w'^2 ([N]) and sum w w' with its
        weights now ([N]). On the CPU one pass over each replacement's pixels
        (`gscodec.render.numba.weights.replaced_sums`); elsewhere through renders, w w' being a
        Gaussian too (`_product`)."""
        if self.backend != "numba":  # the fused pass needs no stored weights
            return [self._rendered_replaced(candidate, image) for candidate in candidates]
        from .numba.weights import replaced_sums

        def prepared(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor) -> tuple[np.ndarray, ...]:
            with torch.no_grad():
                m, conic, _, boxes = prepare(means, scales, angles, means[:, :1], self.height, self.width, 1.0,
                                             self.origin)
            return tuple(t.contiguous().numpy() for t in (m, conic, *boxes))

        planar = image.reshape(self.height * self.width, 3).T.detach().numpy()
        sums = replaced_sums(*prepared(*self.geometry)[:2], self.width, planar, [prepared(*c) for c in candidates])
        return [(s[:, :3], s[:, 3], s[:, 4]) for s in (torch.from_numpy(s).to(image.dtype) for s in sums)]

    def _rendered_replaced(self, candidate: tuple[torch.Tensor, torch.Tensor, torch.Tensor], image: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        other = ColorOperator(*candidate, self.height, self.width, self.origin, self.backend)
        *geometry, factor = _product(*self.geometry, *candidate)
        product = ColorOperator(*geometry, self.height, self.width, self.origin, self.backend)
        ones = torch.ones(self.height * self.width, 1, device=self.device)
        return other.adjoint(image), other.squared_sums(), product.adjoint(ones)[:, 0] * factor

    def _rendered_adjoint(self, geometry, image: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            c = torch.zeros(len(geometry[0]), image.shape[1], device=self.device, requires_grad=True)
            out = render_splats(*geometry, c, self.height, self.width, origin=self.origin, backend=self.backend)
            (grad,) = torch.autograd.grad(out.view(-1, image.shape[1]), c, image)
        return grad


def _product(means, scales, angles, other_means, other_scales, other_angles):
    """The product of two Gaussians exp(-q/2) exp(-q'/2) as one: its centre, scales and angle,
    and a factor. Conics (inverse covariances) A, B add; the centre is (A + B)^-1 (A m + B m');
    the factor exp(-d^T A (A + B)^-1 B d / 2), d = m - m'."""

    def conic(sc: torch.Tensor, an: torch.Tensor) -> tuple[torch.Tensor, ...]:
        i1, i2 = 1.0 / sc[:, 0].double().square(), 1.0 / sc[:, 1].double().square()
        cos, sin = torch.cos(an.double()), torch.sin(an.double())
        return i1 * cos * cos + i2 * sin * sin, (i1 - i2) * sin * cos, i1 * sin * sin + i2 * cos * cos

    (a1, b1, c1), (a2, b2, c2) = conic(scales, angles), conic(other_scales, other_angles)
    a, b, c = a1 + a2, b1 + b2, c1 + c2
    det = a * c - b * b
    m1, m2 = means.double(), other_means.double()
    # A m + B m', then (A + B)^-1 of it
    vx = a1 * m1[:, 0] + b1 * m1[:, 1] + a2 * m2[:, 0] + b2 * m2[:, 1]
    vy = b1 * m1[:, 0] + c1 * m1[:, 1] + b2 * m2[:, 0] + c2 * m2[:, 1]
    centre = torch.stack([(c * vx - b * vy) / det, (a * vy - b * vx) / det], 1)
    # A (A + B)^-1 B d: B d, then (A + B)^-1, then A
    d = m1 - m2
    bx, by = a2 * d[:, 0] + b2 * d[:, 1], b2 * d[:, 0] + c2 * d[:, 1]
    sx, sy = (c * bx - b * by) / det, (a * by - b * bx) / det
    ax, ay = a1 * sx + b1 * sy, b1 * sx + c1 * sy
    factor = torch.exp(-0.5 * (d[:, 0] * ax + d[:, 1] * ay))
    mean, half = (a + c) / 2, torch.sqrt(((a - c) / 2).square() + b.square())
    # the axis at angle atan2(2b, a - c) / 2 has the conic's larger eigenvalue: it is the shorter
    product_scales = torch.stack([torch.rsqrt(mean + half), torch.rsqrt((mean - half).clamp(min=1e-30))], 1)
    dtype = other_scales.dtype
    return (centre.to(dtype), product_scales.to(dtype), (0.5 * torch.atan2(2 * b, a - c)).to(dtype),
            factor.to(dtype))


def color_operator(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, height: int, width: int, *,
                   origin: tuple[int, int] = (0, 0), backend: str = "auto") -> ColorOperator:
    """The colour operator of a geometry on an image of ``height`` x ``width`` pixels at ``origin``
    (row, column; as `render_splats`)."""
    return ColorOperator(means, scales, angles, height, width, origin, backend)

