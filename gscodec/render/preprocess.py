"""The renderers' preprocessing in torch (SPEC 7): covariance, anti-aliasing for scale < 1,
the inverse covariance (conic) and each splat's pixel box on the output grid.

Every torch-driven backend (reference, numba, CUDA) starts here; the decoder's fused
numba kernel has the same steps in numba (`gscodec.render.numba.decode.prepare`).
"""

from __future__ import annotations

import torch

from ..format.constants import Q_CUT


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


def prepare(means, scales, angles, colors, height: int, width: int, scale: float, origin: tuple[int, int]):
    """Splats on the output grid: (means [N, 2], conic [N, 3], colors [N, C], boxes (x0, y0, nx, ny)).

    At scale < 1 each covariance is widened by the variance (1/scale^2 - 1)/12 (box-filter
    anti-aliasing) and its colour scaled to keep the splat's mass; then everything is scaled
    to output pixels and shifted by ``origin`` (row, column). Differentiable in the inputs.
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
    return means, conic, colors, footprint_sizes(means, sxx, syy, height, width)
