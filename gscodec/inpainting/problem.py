"""What an inpainting task gives the network, shared by `inpaint` and training.

Splats whose support (SPEC 7: the pixels where the splat's weight is at least 1/255)
touches the hole are removed; the others are kept as they are. The region to redraw is the hole plus
every pixel a removed splat reached: there the new splats must restore what the removed
ones drew outside the hole and invent what is inside it.

All images here are torch tensors [3, H, W] (or [H, W] maps) in YCbCr with the stream's
background removed, the space the splats' colours live in.
"""

from __future__ import annotations

import math

import numba
import torch
import torch.nn.functional as F

from ..format.color import YCBCR_TO_RGB
from ..render.backends import render_splats
from .network import IN_CHANNELS, PATCH_SIZES


def touching(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """[N] bool: whether each splat's support (SPEC 7: the pixels where its weight is at least
    1/255, as the renderer cuts it) holds a hole pixel ([H, W] bool). Computed by the renderer
    itself: the adjoint of a render with unit colours, applied to the hole, is each splat's
    summed weight over the hole, positive exactly when the support meets it."""
    h, w = hole.shape
    if not len(means):
        return torch.zeros(0, dtype=torch.bool)
    ones = torch.ones(len(means), 1, requires_grad=True)
    with torch.enable_grad():
        out = render_splats(means.detach(), scales.detach(), angles.detach(), ones, h, w)
        (grad,) = torch.autograd.grad((out[..., 0] * hole.to(out.dtype)).sum(), ones)
    return grad[:, 0] > 0


def support(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[H, W] bool: the pixels inside the support of any of the splats."""
    if not len(means):
        return torch.zeros(height, width, dtype=torch.bool)
    with torch.no_grad():
        out = render_splats(means, scales, angles, torch.ones(len(means), 1), height, width)
    return out[..., 0] > 0


def render(means, scales, angles, colors, height: int, width: int, origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """[3, H, W] sum of the splats (no background), differentiable; ``origin`` (row, column) crops."""
    if not len(means):
        return torch.zeros(3, height, width)
    return render_splats(means, scales, angles, colors, height, width, origin=origin).permute(2, 0, 1)


def density_patch(removed: int, area: int) -> int:
    """A patch side for training (inference: `count_patch`): one splat per patch, at least as
    dense as the removed splats over the region (the largest of PATCH_SIZES whose square is at
    most area / removed, else the smallest). Uniformly placed splats do less per splat than
    the encoder's adaptively placed ones, so rounding down, not to the nearest side."""
    side = math.sqrt(area / max(removed, 1))
    fitting = [p for p in PATCH_SIZES if p <= side]
    return max(fitting) if fitting else min(PATCH_SIZES)


def count_patch(region: torch.Tensor, removed: int) -> int:
    """The new layer's patch side at inference: of PATCH_SIZES, the one whose count of patches
    holding region pixels ([H, W], multiples of the largest side) is nearest ``removed`` in
    ratio (of two equally near, the larger side), so that the new layer has about as many
    splats as were removed."""
    def miss(patch: int) -> float:
        return abs(math.log(max(int(patches_in(region, patch).sum()), 1) / max(removed, 1)))
    return min(sorted(PATCH_SIZES, reverse=True), key=miss)


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


# Successive over-relaxation of the fill: on 12 training images (random masks of each class,
# pixels, no codec) the converged harmonic fill scored 23.90 / 21.43 / 19.10 dB in the hole
# (thin / medium / thick), push-pull alone 22.17 / 19.62 / 17.73, scikit-image's biharmonic
# 23.67 / 20.20 (thin / medium); these sweeps 23.86 / 21.42 / 19.09 in 21 / 28 / 43 ms per
# image (50 sweeps at full resolution only: 23.90 / 21.42 / 19.01 in 32 / 40 / 62 ms).
FILL_SWEEPS = 20  # at every level of the pyramid, on its way back up
FILL_OMEGA = 1.95


def smooth_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """[C, H, W] ``image`` with the pixels where ``known`` ([H, W], 0 or 1) is 0 filled by about
    the harmonic function of the known ones (Laplace's equation in the hole, mirrored edges),
    which continues smooth shading into the hole. Push-pull on a pyramid of halvings:
    known-weighted means on the way down; on the way up, each level's mean where a quarter or
    more of it is known, the upsampled level above blended in elsewhere, then `FILL_SWEEPS`
    sweeps of over-relaxed Gauss-Seidel over those pixels (at full resolution, the hole).
    Known pixels come back unchanged."""
    known = known.to(image.dtype)
    levels = [(image * known, known[None])]
    while min(levels[-1][0].shape[-2:]) > 2:
        x, w = levels[-1]
        levels.append((F.avg_pool2d(x[None], 2, ceil_mode=True)[0], F.avg_pool2d(w[None], 2, ceil_mode=True)[0]))
    x, w = levels[-1]
    out = (x / w.clamp(min=1e-12)).to(torch.float32)
    for x, w in reversed(levels[:-1]):
        up = F.interpolate(out[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        share = (4 * w).clamp(max=1)
        out = (share * x / w.clamp(min=1e-12) + (1 - share) * up).to(torch.float32).contiguous()
        ys, xs = torch.nonzero(share[0] < 1, as_tuple=True)
        _relax(out.numpy(), ys.numpy(), xs.numpy(), FILL_SWEEPS, FILL_OMEGA)  # in place, on out's memory
    return torch.where(known.bool(), image, out.to(image.dtype))


@numba.njit(cache=True)
def _relax(u, ys, xs, iterations, omega):  # pragma: no cover - compiled
    """``iterations`` sweeps of SOR for Laplace's equation over the pixels (ys, xs) of u [C, H, W],
    in place; neighbours past the image's edge are the edge pixel itself (zero normal derivative)."""
    channels, h, w = u.shape
    for _ in range(iterations):
        for i in range(len(ys)):
            y, x = ys[i], xs[i]
            up, down = max(y - 1, 0), min(y + 1, h - 1)
            left, right = max(x - 1, 0), min(x + 1, w - 1)
            for c in range(channels):
                mean = 0.25 * (u[c, up, x] + u[c, down, x] + u[c, y, left] + u[c, y, right])
                u[c, y, x] += omega * (mean - u[c, y, x])


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
