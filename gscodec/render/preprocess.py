"""The renderers' preprocessing in torch (SPEC 7): axis variances, anti-aliasing for scale < 1,
the inverse covariance (conic) and each splat's pixel box on the output grid.

Every torch-driven backend (reference, numba, CUDA) starts here; the decoder's fused
numba kernel has the same steps in numba (`gscodec.render.numba.decode.prepare`).
"""

from __future__ import annotations

import torch

from ..format.constants import MIN_VARIANCE_RATIO, Q_CUT


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


def prepare(means, scales, angles, colors, height: int, width: int, scale: float, origin: tuple[int, int]):
    """Splats on the output grid: (means [N, 2], conic [N, 3], colors [N, C], boxes (x0, y0, nx, ny)).

    Everything is computed from the variances along the splat's own axes, never from a
    determinant: Sigma = R diag(l1, l2) R^T and its inverse (the conic) R diag(1/l1, 1/l2) R^T
    take only sums of positive terms, so no splat the format allows (axes 2^-16..2^24 pixels)
    cancels to a zero or negative determinant; the minor variance is raised to at least
    MIN_VARIANCE_RATIO times the major one (axes at most 256:1), beyond which q itself cancels
    in float32 and renderers would disagree (SPEC 7). At scale < 1 both axis
    variances are widened by (1/scale^2 - 1)/12 (a box filter of one output pixel; v I is
    rotation-invariant) and the colour scaled by sqrt(det Sigma / det Sigma~) to keep the
    splat's mass; then everything is scaled to output pixels and shifted by ``origin``
    (row, column). Differentiable in the inputs.
    """
    cos, sin = torch.cos(angles), torch.sin(angles)
    cc, ss, sc = cos * cos, sin * sin, sin * cos
    v1, v2 = scales[:, 0] * scales[:, 0], scales[:, 1] * scales[:, 1]
    v1 = torch.maximum(v1, v2 * MIN_VARIANCE_RATIO)  # axes at most 256:1 (SPEC 7)
    v2 = torch.maximum(v2, v1 * MIN_VARIANCE_RATIO)
    if scale < 1.0:
        extra = (1.0 / scale**2 - 1.0) / 12.0
        w1, w2 = v1 + extra, v2 + extra
        colors = colors * torch.sqrt((v1 / w1) * (v2 / w2))[:, None]
        v1, v2 = w1, w2
    s2 = scale * scale
    l1, l2 = v1 * s2, v2 * s2
    i1, i2 = 1.0 / l1, 1.0 / l2
    conic = torch.stack([i1 * cc + i2 * ss, (i1 - i2) * sc, i1 * ss + i2 * cc], 1)
    means = means * scale - torch.tensor([origin[1], origin[0]], dtype=means.dtype, device=means.device)
    return means, conic, colors, footprint_sizes(means, l1 * cc + l2 * ss, l1 * ss + l2 * cc, height, width)
