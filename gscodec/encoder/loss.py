"""The encoder's loss: mean squared error in RGB of a YCbCr image, ``mean(((img - target) @ m) ** 2)``.

On the CPU (float32) it is one numba pass forward and one backward; the torch
expression, used on other devices, makes five image-sized temporaries each way, which
took about a quarter of a refinement step on a Kodak image (8 of 29 ms).
"""

from __future__ import annotations

import numba
import numpy as np
import torch


@numba.njit(cache=True)
def _sum_squares(img, target, m):  # pragma: no cover - compiled
    """sum over pixels p and channels c of (sum_k (img - target)[p, k] m[k, c])^2, in float64."""
    total = 0.0
    for p in range(img.shape[0]):
        e0, e1, e2 = img[p, 0] - target[p, 0], img[p, 1] - target[p, 1], img[p, 2] - target[p, 2]
        for c in range(3):
            r = e0 * m[0, c] + e1 * m[1, c] + e2 * m[2, c]
            total += np.float64(r * r)
    return total


@numba.njit(cache=True)
def _gradient(img, target, a, scale):  # pragma: no cover - compiled
    """scale * (img - target) @ a, float32 [P, 3]."""
    out = np.empty_like(img)
    for p in range(img.shape[0]):
        e0, e1, e2 = img[p, 0] - target[p, 0], img[p, 1] - target[p, 1], img[p, 2] - target[p, 2]
        for c in range(3):
            out[p, c] = scale * (e0 * a[0, c] + e1 * a[1, c] + e2 * a[2, c])
    return out


class _RgbMse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, img, target, m):
        ctx.save_for_backward(img, target, m)
        flat = img.detach().reshape(-1, 3).numpy(), target.reshape(-1, 3).numpy()
        return torch.tensor(_sum_squares(*flat, m.numpy()) / img.numel(), dtype=img.dtype)

    @staticmethod
    def backward(ctx, grad):
        img, target, m = ctx.saved_tensors
        a = (m @ m.T).numpy()  # d/de of sum((e m)^2) is 2 e m m^T
        scale = np.float32(2.0 * float(grad) / img.numel())
        g = _gradient(img.detach().reshape(-1, 3).numpy(), target.reshape(-1, 3).numpy(), a, scale)
        return torch.from_numpy(g).view(img.shape), None, None


def rgb_mse(img: torch.Tensor, target: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``mean(((img - target) @ m) ** 2)`` for [..., 3] tensors and a [3, 3] m, differentiable in img."""
    fast = all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in (img, target, m))
    if fast and not target.requires_grad:
        return _RgbMse.apply(img, target, m)
    return ((img - target) @ m).square().mean()
