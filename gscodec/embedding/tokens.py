"""What the embedding network reads of a splat: one feature vector per splat.

A splat's features do not depend on the image's pixel size, only on where and how large
it is relative to the image (GaussianVision's "resolution-based scaling"):
- position: x / W and y / H, centred, and their Fourier features sin/cos(2^k pi u) for
  k < ``FOURIER`` (so the resampler's attention can tell nearby splats apart);
- shape: the matrix logarithm of the covariance divided by the image area,
  R diag(log(s1^2 / WH), log(s2^2 / WH)) R^T, as its three entries: continuous in the
  angle (a splat turned by pi is the same splat) and in scale, unlike (s1, s2, angle);
- colour: the three YCbCr amplitudes as coded.
The stream's background colour is a separate input (one token of its own).

Where a splat falls (`footprints`, for a model with a footprint grid): the weights that spread
its token over the cells of a G x G grid laid over the image, the cell average of its Gaussian
(EWA: the Gaussian convolved with the cell's box, approximated by a Gaussian of the box's
variance, sqrt(det S / det S') exp(-d^T S'^-1 d / 2) with S' = S + diag(cw^2, ch^2) / 12 at the
cell's centre). With colours as the tokens, that sum is the stream's decode at G x G
(background aside); the network splats learned tokens instead.

Order does not matter anywhere: each splat's vector depends on that splat alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..render.reference import box_pairs
from ..splats import Splats

FOURIER = 6
FEATURES = 2 + 4 * FOURIER + 3 + 3
# log(s^2 / WH) of a typical splat is about -10 (4 px in a 768 x 512 image): centred and scaled
# so that the features are of order one
LOG_COV_SHIFT, LOG_COV_SCALE = 9.0, 3.0

Footprint = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # [P] splat, [P] cell, [P] weight
MAX_PAIRS = 1 << 20  # (splat, cell) pairs made at a time (`footprints`): some tens of MB of work arrays


def splat_features(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, colors: torch.Tensor,
                   width: torch.Tensor | float, height: torch.Tensor | float) -> torch.Tensor:
    """[..., N] splats of images of ``width`` x ``height`` (scalars, or [...] tensors) -> [..., N, FEATURES]."""
    width = torch.as_tensor(width, dtype=means.dtype)[..., None]
    height = torch.as_tensor(height, dtype=means.dtype)[..., None]
    uv = torch.stack([means[..., 0] / width, means[..., 1] / height], -1) - 0.5  # [..., N, 2]
    freqs = math.pi * 2.0 ** torch.arange(FOURIER, dtype=means.dtype)
    phase = (uv[..., None] * freqs).flatten(-2)  # [..., N, 2F]
    log_var = (2 * torch.log(scales) - torch.log(width * height)[..., None] + LOG_COV_SHIFT) / LOG_COV_SCALE
    c, s = torch.cos(angles), torch.sin(angles)
    l1, l2 = log_var[..., 0], log_var[..., 1]
    log_cov = torch.stack([c * c * l1 + s * s * l2, s * s * l1 + c * c * l2, c * s * (l1 - l2)], -1)
    return torch.cat([uv, torch.sin(phase), torch.cos(phase), log_cov, colors], -1)


def features_of(splats: Splats) -> tuple[torch.Tensor, torch.Tensor]:
    """A `Splats` -> ([N, FEATURES], background [3]) float32 tensors."""
    t = {k: torch.from_numpy(np.asarray(getattr(splats, k))) for k in ("means", "scales", "angles", "colors")}
    feats = splat_features(t["means"], t["scales"], t["angles"], t["colors"], float(splats.width),
                           float(splats.height))
    return feats, torch.from_numpy(np.asarray(splats.background, np.float32))


def footprints(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, width: float, height: float,
               grid: int) -> Iterator[Footprint]:
    """[N] splats of a ``width`` x ``height`` image -> their footprints on a ``grid`` x ``grid``
    grid: (splat, cell, weight) triples, cells row-major from the top (pixel units, so a
    non-square image has non-square cells), in chunks of whole splats and at most
    ``MAX_PAIRS`` triples (or one splat's), so that memory stays bounded whatever the splats'
    number and sizes. A splat's cells are those within 3 standard deviations of its smoothed
    Gaussian: a few to a few dozen for most splats, at most grid^2."""
    means, scales, angles = means.double(), scales.double(), angles.double()
    cw, ch = width / grid, height / grid
    c, s = torch.cos(angles), torch.sin(angles)
    v1, v2 = scales[:, 0] ** 2, scales[:, 1] ** 2
    sxx, syy, sxy = c * c * v1 + s * s * v2, s * s * v1 + c * c * v2, c * s * (v1 - v2)
    pxx, pyy = sxx + cw * cw / 12, syy + ch * ch / 12
    det_smooth = pxx * pyy - sxy * sxy
    ratio = torch.sqrt(v1 * v2 / det_smooth)
    # the cells whose centres lie within 3 standard deviations, per axis
    x0 = ((means[:, 0] - 3 * pxx.sqrt()) / cw - 0.5).ceil().clamp(0, grid).long()
    x1 = ((means[:, 0] + 3 * pxx.sqrt()) / cw - 0.5).floor().clamp(-1, grid - 1).long()
    y0 = ((means[:, 1] - 3 * pyy.sqrt()) / ch - 0.5).ceil().clamp(0, grid).long()
    y1 = ((means[:, 1] + 3 * pyy.sqrt()) / ch - 0.5).floor().clamp(-1, grid - 1).long()
    nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    for sel, (chunk_idx, cx, cy) in box_pairs(x0, y0, nx, ny, MAX_PAIRS):
        idx = sel[chunk_idx]
        dx = (cx.double() + 0.5) * cw - means[idx, 0]
        dy = (cy.double() + 0.5) * ch - means[idx, 1]
        q = (pyy[idx] * dx * dx - 2 * sxy[idx] * dx * dy + pxx[idx] * dy * dy) / det_smooth[idx]
        yield idx, cy * grid + cx, (ratio[idx] * torch.exp(-0.5 * q)).float()


def footprint_of(splats: Splats, grid: int) -> Iterator[Footprint]:
    """`footprints` of a `Splats` over its whole image."""
    t = {k: torch.from_numpy(np.asarray(getattr(splats, k))) for k in ("means", "scales", "angles")}
    return footprints(t["means"], t["scales"], t["angles"], float(splats.width), float(splats.height), grid)


def splat_onto_grid(channels: torch.Tensor, parts: Iterable[Footprint], grid: int) -> torch.Tensor:
    """[N, c] values of N splats -> [grid^2, c]: each cell the sum of the values times the
    splats' weights there (differentiable in the values)."""
    cells = channels.new_zeros(grid * grid, channels.shape[1])
    for splat, cell, weight in parts:
        cells = cells.index_add(0, cell, weight[:, None] * channels[splat])
    return cells


def pad_tokens(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature sets of different lengths -> [B, Nmax, F] and the [B, Nmax] padding mask (True = padded)."""
    n = max(len(f) for f in features)
    out = features[0].new_zeros(len(features), n, features[0].shape[1])
    pad = torch.ones(len(features), n, dtype=torch.bool)
    for i, f in enumerate(features):
        out[i, : len(f)], pad[i, : len(f)] = f, False
    return out, pad
