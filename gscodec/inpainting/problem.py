"""What an inpainting task gives the network, shared by `inpaint` and training.

Splats whose support (SPEC 7: the pixels where the splat's weight is at least 1/255)
touches the hole are removed (at inference, only those with more than a small share of
their weight in it: `fill.REMOVE_SHARE`); the others are kept as they are. The region to
redraw is the hole plus every pixel a removed splat reached: there the new splats must restore what the removed
ones drew outside the hole and invent what is inside it.

All images here are torch tensors [3, H, W] (or [H, W] maps) in YCbCr with the stream's
background removed, the space the splats' colours live in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numba
import numpy as np
import torch
import torch.nn.functional as F

from ..format.color import YCBCR_TO_RGB
from ..render.backends import render_splats
from ..render.numba.kernels import run_threads
from .network import IN_CHANNELS, PATCH_SIZES


def touching(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, hole: torch.Tensor,
             min_share: float = 0.0) -> torch.Tensor:
    """[N] bool: whether each splat's support (SPEC 7: the pixels where its weight is at least
    1/255, as the renderer cuts it) holds a hole pixel ([H, W] bool), and more than
    ``min_share`` of its weight (summed over the image's pixels) lies in the hole. Computed by
    the renderer itself: the adjoint of a render with unit colours, applied to the hole (and to
    all pixels), is each splat's summed weight there, positive exactly when the support meets it."""
    h, w = hole.shape
    if not len(means):
        return torch.zeros(0, dtype=torch.bool)
    ones = torch.ones(len(means), 2, requires_grad=True)
    with torch.enable_grad():
        out = render_splats(means.detach(), scales.detach(), angles.detach(), ones, h, w)
        (grad,) = torch.autograd.grad((out[..., 0] * hole.to(out.dtype)).sum() + out[..., 1].sum(), ones)
    return (grad[:, 0] > 0) & (grad[:, 0] > min_share * grad[:, 1])


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


# The fill: push-pull, then sweeps of over-relaxed Gauss-Seidel for Laplace's equation and,
# apart, for the biharmonic equation; the fill blends them. On training images decoded at
# quality 50, effort 0, with the generator's masks (pixels, no splats), hole PSNR thin /
# medium / thick: 8 Sun-Hays crops of Kodak's size (768 x 512): the harmonic fill alone 23.41
# / 20.69 / 18.42 dB, the biharmonic alone (30 sweeps) 23.82 / 20.80 / 18.05, scikit-image's
# inpaint_biharmonic 23.84 / 20.74 / 17.72 (in 4-15 times the mean's time), the mean 23.76 / 20.91 /
# 18.43 (23.78 / 20.95 / 18.44 with 30 biharmonic sweeps); 12 smaller images (mostly BSDS,
# 481 x 321): harmonic 23.15 / 20.87 / 17.90, biharmonic 23.73 / 21.36 / 18.07, the mean 23.56
# / 21.30 / 18.19. The biharmonic fill alone, in place of the harmonic one, lost 0.42 dB in
# thick holes on Kodak (bench/README.md): in wide holes it overshoots. So the blend follows
# the distance d to the nearest known pixel: exp(-d / BLEND_DISTANCE) of the biharmonic fill,
# the rest harmonic (biharmonic at the hole's edge, where it continues gradients; harmonic deep
# inside). On 12 Sun-Hays crops and 12 BSDS images (the same setting), against the mean:
# BLEND_DISTANCE 8 / 12 / 16 / 24 / 32 gave +0.10 / +0.11 / +0.12 / +0.12 / +0.12 dB thin,
# +0.02 / +0.04 / +0.04 / +0.03 / +0.02 medium, 0.00 / +0.02 / +0.04 / +0.04 / +0.03 thick
# (fixed shares of 0.6 / 0.7 biharmonic: +0.04 / +0.08, +0.01 / +0.01, -0.02 / -0.05).
FILL_SWEEPS = 20  # harmonic sweeps at every level of the pyramid, on its way back up
FILL_OMEGA = 1.95
BIHARMONIC_SWEEPS = 15
BIHARMONIC_OMEGA = 1.8
BLEND_DISTANCE = 16.0  # pixels


def smooth_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """[C, H, W] ``image`` with the pixels where ``known`` ([H, W], 0 or 1) is 0 filled by a blend
    of about the harmonic and about the biharmonic function of the known ones (Laplace's and
    the biharmonic equation in the hole, mirrored edges), which continues shading into the
    hole: exp(-d / `BLEND_DISTANCE`) biharmonic at a distance d from the known pixels
    (`chamfer_distance`), the rest harmonic. Push-pull on a pyramid of halvings:
    known-weighted means on the way down; on the way up, each level's mean where a quarter
    or more of it is known, the upsampled level above blended in elsewhere, then sweeps of
    over-relaxed Gauss-Seidel over those pixels (at full resolution, the hole), one pyramid
    per equation. Known pixels come back unchanged."""
    known = known.to(image.dtype)
    levels = [(image * known, known[None])]
    while min(levels[-1][0].shape[-2:]) > 2:
        x, w = levels[-1]
        levels.append((F.avg_pool2d(x[None], 2, ceil_mode=True)[0], F.avg_pool2d(w[None], 2, ceil_mode=True)[0]))
    x, w = levels[-1]
    harmonic = biharmonic = (x / w.clamp(min=1e-12)).to(torch.float32)
    for x, w in reversed(levels[:-1]):
        share = (4 * w).clamp(max=1)
        ys, xs = (v.numpy() for v in torch.nonzero(share[0] < 1, as_tuple=True))
        mean = share * x / w.clamp(min=1e-12)
        harmonic, biharmonic = _pull(harmonic, mean, share), _pull(biharmonic, mean, share)
        _in_parallel(  # in place, on the tensors' memory; the two fills are independent
            partial(_relax, harmonic.numpy(), ys, xs, FILL_SWEEPS, FILL_OMEGA),
            partial(_relax_biharmonic, biharmonic.numpy(), ys, xs, BIHARMONIC_SWEEPS, BIHARMONIC_OMEGA))
    share = torch.exp(torch.from_numpy(chamfer_distance(known.numpy() == 0)) / -BLEND_DISTANCE)
    return torch.where(known.bool(), image, (share * biharmonic + (1 - share) * harmonic).to(image.dtype))


@numba.njit(cache=True)
def chamfer_distance(inside):  # pragma: no cover - compiled
    """[H, W] float32: for each pixel where ``inside`` ([H, W] bool) is True, about its
    Euclidean distance to the nearest pixel where it is False (8-neighbour chamfer: steps of
    1 and sqrt 2, within 8 %), 0 elsewhere; a large value if every pixel is inside."""
    h, w = inside.shape
    far = np.float32(h + w)
    d = np.where(inside, far * np.float32(2.0), np.float32(0.0)).astype(np.float32)
    diag = np.float32(math.sqrt(2.0))
    for y in range(h):  # forward pass: neighbours above and to the left
        for x in range(w):
            if inside[y, x]:
                v = d[y, x]
                if x > 0:
                    v = min(v, d[y, x - 1] + 1)
                if y > 0:
                    v = min(v, d[y - 1, x] + 1)
                    if x > 0:
                        v = min(v, d[y - 1, x - 1] + diag)
                    if x < w - 1:
                        v = min(v, d[y - 1, x + 1] + diag)
                d[y, x] = v
    for y in range(h - 1, -1, -1):  # backward pass: below and to the right
        for x in range(w - 1, -1, -1):
            if inside[y, x]:
                v = d[y, x]
                if x < w - 1:
                    v = min(v, d[y, x + 1] + 1)
                if y < h - 1:
                    v = min(v, d[y + 1, x] + 1)
                    if x < w - 1:
                        v = min(v, d[y + 1, x + 1] + diag)
                    if x > 0:
                        v = min(v, d[y + 1, x - 1] + diag)
                d[y, x] = v
    return d


def _in_parallel(*jobs: Callable[[], object]) -> None:
    """Run the jobs (compiled without the GIL) on the renderer's threads, each once."""
    def worker(take: Callable[[], int]) -> None:
        i = take()
        while i < len(jobs):
            jobs[i]()
            i = take()

    run_threads(worker, len(jobs))


def _pull(coarser: torch.Tensor, mean: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """A level on the way up: its known mean (weighted by ``share``) and the coarser level upsampled."""
    up = F.interpolate(coarser[None], size=mean.shape[-2:], mode="bilinear", align_corners=False)[0]
    return (mean + (1 - share) * up).to(torch.float32).contiguous()


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _relax_biharmonic(u, ys, xs, iterations, omega):  # pragma: no cover - compiled
    """``iterations`` sweeps of SOR for the biharmonic equation (its 13-point stencil: 20 u = 8 *
    the 4 nearest - 2 * the 4 diagonal - the 4 two steps away) over the pixels (ys, xs) of
    u [C, H, W], in place; neighbours past the image's edge are the edge pixel itself."""
    channels, h, w = u.shape
    for _ in range(iterations):
        for i in range(len(ys)):
            y, x = ys[i], xs[i]
            y1, y2 = max(y - 1, 0), min(y + 1, h - 1)
            x1, x2 = max(x - 1, 0), min(x + 1, w - 1)
            y0, y3 = max(y - 2, 0), min(y + 2, h - 1)
            x0, x3 = max(x - 2, 0), min(x + 2, w - 1)
            for c in range(channels):
                near = u[c, y1, x] + u[c, y2, x] + u[c, y, x1] + u[c, y, x2]
                diagonal = u[c, y1, x1] + u[c, y1, x2] + u[c, y2, x1] + u[c, y2, x2]
                far = u[c, y0, x] + u[c, y3, x] + u[c, y, x0] + u[c, y, x3]
                u[c, y, x] += omega * ((8.0 * near - 2.0 * diagonal - far) / 20.0 - u[c, y, x])


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
