"""Distortion and rate metrics on 8-bit RGB images (``[H, W, 3]`` uint8).

- ``bpp``: 8 * number of bytes / (H * W).
- ``psnr_rgb``: 10 log10(255^2 / MSE), MSE over all H * W * 3 samples jointly.
- ``ms_ssim_rgb``: 5-scale MS-SSIM from ``pytorch_msssim`` (data range 255,
  11x11 Gaussian window, sigma 1.5, standard weights), averaged over the RGB
  channels as that implementation does. Undefined (``None``) when the shorter
  side is 160 px or less, which 5 scales need.
"""

from __future__ import annotations

import logging

import numpy as np

from gscodec.metrics import psnr

log = logging.getLogger(__name__)

#: 5 scales with an 11 px window need a shorter side above (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a ``num_bytes`` file for an ``height`` x ``width`` image."""
    return 8.0 * num_bytes / (height * width)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected two [H, W, 3] images of equal shape, got {a.shape} and {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")


def psnr_rgb(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all RGB samples (`gscodec.metrics.psnr`); ``inf`` for identical images."""
    _check_pair(ref, test)
    return psnr(ref, test)


def ms_ssim_rgb(ref: np.ndarray, test: np.ndarray) -> float | None:
    """MS-SSIM in [0, 1] (``pytorch_msssim``), or ``None`` if the image is too small."""
    _check_pair(ref, test)
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        log.warning("MS-SSIM undefined for %s images (shorter side < %d px)", ref.shape, MS_SSIM_MIN_SIDE)
        return None
    import torch
    from pytorch_msssim import ms_ssim

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float().unsqueeze(0)

    with torch.no_grad():
        return float(ms_ssim(to_tensor(ref), to_tensor(test), data_range=255.0))
