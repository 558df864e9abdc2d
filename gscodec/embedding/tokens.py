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


def pad_tokens(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature sets of different lengths -> [B, Nmax, F] and the [B, Nmax] padding mask (True = padded)."""
    n = max(len(f) for f in features)
    out = features[0].new_zeros(len(features), n, features[0].shape[1])
    pad = torch.ones(len(features), n, dtype=torch.bool)
    for i, f in enumerate(features):
        out[i, : len(f)], pad[i, : len(f)] = f, False
    return out, pad
