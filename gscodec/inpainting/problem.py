"""What an inpainting task gives the network, shared by `inpaint` and training.

Splats whose support (the renderer's footprint box, SPEC 7: weight >= 1/255) touches the
hole are removed; the others are kept as they are. The region to redraw is the hole plus
every pixel a removed splat reached: there the new splats must restore what the removed
ones drew outside the hole and invent what is inside it.

All images here are torch tensors [3, H, W] (or [H, W] maps) in YCbCr with the stream's
background removed, the space the splats' colours live in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..format.color import YCBCR_TO_RGB
from ..render.backends import render_splats
from ..render.preprocess import prepare
from .network import IN_CHANNELS, PATCH_SIZES


def footprints(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, height: int, width: int):
    """Per splat its footprint box on the image, (x0, y0, nx, ny), each [N] int64 (clipped to the image)."""
    with torch.no_grad():
        dummy = torch.zeros(len(means), 1, dtype=means.dtype)
        return prepare(means, scales, angles, dummy, height, width, 1.0, (0, 0))[3]


def _integral(mask: torch.Tensor) -> torch.Tensor:
    """[H + 1, W + 1] summed-area table of an [H, W] map."""
    return F.pad(mask.to(torch.int64).cumsum(0).cumsum(1), (1, 0, 1, 0))


def touching(boxes, hole: torch.Tensor) -> torch.Tensor:
    """[N] bool: whether each footprint box holds a hole pixel."""
    x0, y0, nx, ny = boxes
    table = _integral(hole)
    x1, y1 = x0 + nx, y0 + ny
    count = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    return (count > 0) & (nx > 0) & (ny > 0)


def union(boxes, select: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[H, W] bool: the pixels inside any selected footprint box."""
    x0, y0, nx, ny = (b[select] for b in boxes)
    keep = (nx > 0) & (ny > 0)
    x0, y0, x1, y1 = x0[keep], y0[keep], (x0 + nx)[keep], (y0 + ny)[keep]
    marks = torch.zeros(height + 1, width + 1, dtype=torch.int64)
    ones = torch.ones_like(x0)
    for ys, xs, sign in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
        marks.index_put_((ys, xs), sign * ones, accumulate=True)
    return marks.cumsum(0).cumsum(1)[:height, :width] > 0


def render(means, scales, angles, colors, height: int, width: int, origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """[3, H, W] sum of the splats (no background), differentiable; ``origin`` (row, column) crops."""
    if not len(means):
        return torch.zeros(3, height, width)
    return render_splats(means, scales, angles, colors, height, width, origin=origin).permute(2, 0, 1)


def density_patch(removed: int, area: int) -> int:
    """The new layer's patch side: one splat per patch at about the density of the removed
    splats over the region (patches of PATCH_SIZES only)."""
    side = math.sqrt(area / max(removed, 1))
    return min(PATCH_SIZES, key=lambda p: abs(math.log2(p) - math.log2(max(side, 1.0))))


def network_input(decoded: torch.Tensor, kept: torch.Tensor, hole: torch.Tensor, region: torch.Tensor,
                  inside: torch.Tensor | None = None) -> torch.Tensor:
    """[IN_CHANNELS, H, W]: decoded image with the hole zeroed, decoded - kept render with the hole
    zeroed, hole, region, inside (1 on image pixels, 0 on padding)."""
    known = (~hole).to(decoded.dtype)
    inside = torch.ones_like(known) if inside is None else inside.to(decoded.dtype)
    out = torch.cat([decoded * known, (decoded - kept) * known, hole[None].to(decoded.dtype),
                     region[None].to(decoded.dtype), inside[None]], 0)
    assert out.shape[0] == IN_CHANNELS
    return out


def to_rgb(ycc: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] YCbCr without background -> RGB clamped to [0, 1]."""
    m = torch.from_numpy(YCBCR_TO_RGB).to(ycc)
    return torch.einsum("bchw,rc->brhw", ycc + background.view(-1, 3, 1, 1), m).clamp(0, 1)


def rgb_sq_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[..., H, W] squared RGB error summed over channels of [..., 3, H, W] YCbCr images."""
    m = torch.from_numpy(YCBCR_TO_RGB).to(a)
    return torch.einsum("...chw,rc->...rhw", a - b, m).square().sum(-3)


def patches_in(region: torch.Tensor, patch: int) -> torch.Tensor:
    """[H/p, W/p] bool: the patches of side ``patch`` that hold a region pixel ([H, W], H, W multiples of p)."""
    return F.max_pool2d(region[None, None].float(), patch)[0, 0] > 0
