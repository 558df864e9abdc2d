"""The encoder end to end: image -> splats (initializer, refinement, quantization-aware
finish) -> .gsc bytes, and the search for a target rate."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import GscError
from ..format.color import RGB_TO_YCBCR
from ..format.constants import BACKGROUND_UNIT
from ..format.params import dequantize_layer
from ..quant.layer import fit_params, quantize_background, quantize_layer
from ..quant.policy import steps_for_quality
from ..quant.stream import encode_splats
from ..splats import Splats, SplatTensors
from .initializers import DEFAULT_INITIALIZER, INITIALIZERS
from .optimize import Encoder
from .plan import plan_for

Progress = Callable[[float], None]  # receives the fraction done, 0..1


def fit_image(
    rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
    device: torch.device | str = "cpu", initializer: str = DEFAULT_INITIALIZER,
) -> Splats:
    """Splats for an [H, W, 3] float32 RGB image in [0, 1], geometry already on the quantizer's
    grid and colours solved for it (`gscodec.quant.stream.encode_splats` then codes them).
    ``device``: where the fitting runs (a CUDA device needs `gscodec.has_cuda`)."""
    h, w = rgb.shape[:2]
    rgb_t = torch.from_numpy(rgb)
    ycc = rgb_t @ torch.from_numpy(RGB_TO_YCBCR).to(rgb_t).T
    background = np.asarray(quantize_background(ycc.reshape(-1, 3).mean(0).numpy()), np.float32)
    background /= BACKGROUND_UNIT
    plan = plan_for(quality, effort, h, w)
    enc = Encoder((ycc - torch.from_numpy(background)).to(device), seed=seed)
    report = progress or (lambda _: None)
    weight = plan.iterations + 10  # the initial placement and final solve count as 10 steps
    s = INITIALIZERS[initializer](enc, plan)
    report(5 / weight)
    s = enc.refine(s, plan.iterations, lambda f: report((5 + f * plan.iterations) / weight))
    # quantization-aware finish: colours solved for the quantized geometry
    steps = steps_for_quality(quality)
    floating = Splats.from_tensors(s, width=w, height=h, background=background, patch_sizes=(plan.patch_size,))
    params = fit_params(floating, plan.patch_size, steps)
    symbols, order = quantize_layer(floating, params)
    means, scales, angles, _ = dequantize_layer(params, symbols, w, h)
    geometry = SplatTensors(*(torch.from_numpy(a).to(enc.device) for a in (means, scales, angles)),
                            s.colors[torch.from_numpy(order).to(enc.device)])
    colors = enc.solve_colors(geometry, 30, geometry.colors).cpu().numpy()
    report(1.0)
    return Splats(w, h, means, scales, angles, colors, background, patch_sizes=(plan.patch_size,))


def encode_image(rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
                 device: str = "cpu") -> bytes:
    """.gsc bytes of an [H, W, 3] float32 RGB image in [0, 1] (options checked by the caller)."""
    splats = fit_image(rgb, quality, effort, progress, seed, device)
    return encode_splats(splats, quality=quality)


def encode_to_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu") -> bytes:
    """Bisect quality with quick encodes (the first half of the progress) for ``target_bpp``
    bits per pixel, then encode once at the requested effort (the second half)."""
    if not target_bpp > 0:
        raise GscError(f"target_bpp must be positive, got {target_bpp}")
    report = progress or (lambda _: None)
    h, w = rgb.shape[:2]
    lo, hi = 0.0, 100.0
    rounds = 6
    for i in range(rounds):
        mid = (lo + hi) / 2
        bpp = 8 * len(encode_image(rgb, mid, 0, None, seed, device)) / (h * w)
        lo, hi = (mid, hi) if bpp < target_bpp else (lo, mid)
        report(0.5 * (i + 1) / rounds)
    return encode_image(rgb, lo, effort, lambda f: report(0.5 + 0.5 * f), seed, device)
