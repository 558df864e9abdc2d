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

import numpy as np
import torch

from ..splats import Splats

FOURIER = 6
FEATURES = 2 + 4 * FOURIER + 3 + 3
# log(s^2 / WH) of a typical splat is about -10 (4 px in a 768 x 512 image): centred and scaled
# so that the features are of order one
LOG_COV_SHIFT, LOG_COV_SCALE = 9.0, 3.0

Footprint = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # [P] splat, [P] cell, [P] weight


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
               grid: int) -> Footprint:
    """[N] splats of a ``width`` x ``height`` image -> their footprints on a ``grid`` x ``grid``
    grid: P (splat, cell, weight) triples, cells row-major from the top (pixel units, so a
    non-square image has non-square cells). A splat's cells are those within 3 standard
    deviations of its smoothed Gaussian, so P grows with the splats' sizes, at most N grid^2."""
    means, scales, angles = means.double(), scales.double(), angles.double()
    cw, ch = width / grid, height / grid
    c, s = torch.cos(angles), torch.sin(angles)
    v1, v2 = scales[:, 0] ** 2, scales[:, 1] ** 2
    sxx, syy, sxy = c * c * v1 + s * s * v2, s * s * v1 + c * c * v2, c * s * (v1 - v2)
    pxx, pyy = sxx + cw * cw / 12, syy + ch * ch / 12
    det, det_smooth = v1 * v2, pxx * pyy - sxy * sxy
    ratio = torch.sqrt(det / det_smooth)
    # the cells whose centres lie within 3 standard deviations, per axis
    x0 = ((means[:, 0] - 3 * pxx.sqrt()) / cw - 0.5).ceil().clamp(0, grid).long()
    x1 = ((means[:, 0] + 3 * pxx.sqrt()) / cw - 0.5).floor().clamp(-1, grid - 1).long()
    y0 = ((means[:, 1] - 3 * pyy.sqrt()) / ch - 0.5).ceil().clamp(0, grid).long()
    y1 = ((means[:, 1] + 3 * pyy.sqrt()) / ch - 0.5).floor().clamp(-1, grid - 1).long()
    nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    counts = nx * ny
    idx = torch.repeat_interleave(torch.arange(len(counts)), counts)
    local = torch.arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts)[idx]
    cx, cy = x0[idx] + local % nx[idx], y0[idx] + local // nx[idx]
    dx = (cx.double() + 0.5) * cw - means[idx, 0]
    dy = (cy.double() + 0.5) * ch - means[idx, 1]
    a, b, d = pyy[idx], -sxy[idx], pxx[idx]  # det_smooth times the inverse
    q = (a * dx * dx + 2 * b * dx * dy + d * dy * dy) / det_smooth[idx]
    weight = ratio[idx] * torch.exp(-0.5 * q)
    return idx, cy * grid + cx, weight.float()


def footprint_of(splats: Splats, grid: int) -> Footprint:
    """`footprints` of a `Splats` over its whole image."""
    t = {k: torch.from_numpy(np.asarray(getattr(splats, k))) for k in ("means", "scales", "angles")}
    return footprints(t["means"], t["scales"], t["angles"], float(splats.width), float(splats.height), grid)


def stack_footprints(parts: list[Footprint], tokens: int, grid: int) -> torch.Tensor:
    """Per stream footprints -> one sparse [B grid^2, B tokens] matrix: block b maps the
    tokens of stream b (padded to ``tokens``) to its grid, so one product splats a whole batch."""
    rows, cols, vals = [], [], []
    for b, (splat, cell, weight) in enumerate(parts):
        rows.append(cell + b * grid * grid)
        cols.append(splat + b * tokens)
        vals.append(weight)
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(index, torch.cat(vals), (len(parts) * grid * grid, len(parts) * tokens),
                                   check_invariants=False)  # in range by construction


def pad_tokens(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature sets of different lengths -> [B, Nmax, F] and the [B, Nmax] padding mask (True = padded)."""
    n = max(len(f) for f in features)
    out = features[0].new_zeros(len(features), n, features[0].shape[1])
    pad = torch.ones(len(features), n, dtype=torch.bool)
    for i, f in enumerate(features):
        out[i, : len(f)], pad[i, : len(f)] = f, False
    return out, pad
