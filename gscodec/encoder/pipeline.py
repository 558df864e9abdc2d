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
from ..quant.policy import Steps, steps_for_quality
from ..quant.stream import encode_splats
from ..splats import Splats, SplatTensors
from .initializers import INITIALIZERS
from .optimize import Encoder
from .plan import DEFAULT_INIT, plan_for

Progress = Callable[[float], None]  # receives the fraction done, 0..1


def fit_image(
    rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
    device: torch.device | str = "cpu", init: str = DEFAULT_INIT,
) -> tuple[Splats, Steps]:
    """Splats for an [H, W, 3] float32 RGB image in [0, 1], geometry already on the grid of the
    quantizer steps returned with them and colours solved for it (`gscodec.quant.stream.encode_splats`
    then codes them with those steps).
    ``device``: where the fitting runs (a CUDA device needs `gscodec.has_cuda`); ``init``:
    the initializer (`gscodec.encoder.initializers`)."""
    h, w = rgb.shape[:2]
    rgb_t = torch.from_numpy(rgb)
    ycc = rgb_t @ torch.from_numpy(RGB_TO_YCBCR).to(rgb_t).T
    background = np.asarray(quantize_background(ycc.reshape(-1, 3).mean(0).numpy()), np.float32)
    background /= BACKGROUND_UNIT
    plan = plan_for(quality, effort, h, w)
    enc = Encoder((ycc - torch.from_numpy(background)).to(device), seed=seed)
    report = progress or (lambda _: None)
    weight = plan.iterations + 10  # the initial placement and final solve count as 10 steps
    start = INITIALIZERS[init](enc, plan, quality)
    report(5 / weight)
    s = enc.refine(start.splats, plan.iterations, lambda f: report((5 + f * plan.iterations) / weight))
    # quantization-aware finish: each layer's geometry quantized, then the colours solved for it
    steps = start.steps or steps_for_quality(quality)
    floating = Splats.from_tensors(s, width=w, height=h, background=background, layer=start.layer.cpu().numpy(),
                                   patch_sizes=start.patch_sizes)
    parts, layer = [], []
    for index, patch in enumerate(start.patch_sizes):
        part = floating.select(floating.layer == index)
        params = fit_params(part, patch, steps)
        symbols, order = quantize_layer(part, params)
        parts.append((*dequantize_layer(params, symbols, w, h)[:3], part.colors[order]))
        layer.append(np.full(len(order), index))
    means, scales, angles, colors = (np.concatenate([p[i] for p in parts]) for i in range(4))
    geometry = SplatTensors(*(torch.from_numpy(a).to(enc.device) for a in (means, scales, angles, colors)))
    colors = enc.solve_colors(geometry, plan.color_iterations, geometry.colors).cpu().numpy()
    report(1.0)
    return Splats(w, h, means, scales, angles, colors, background, layer=np.concatenate(layer),
                  patch_sizes=start.patch_sizes), steps


def encode_image(rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
                 device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
    """.gsc bytes of an [H, W, 3] float32 RGB image in [0, 1] (options checked by the caller)."""
    splats, steps = fit_image(rgb, quality, effort, progress, seed, device, init)
    return encode_splats(splats, steps=steps)


def encode_to_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
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
        bpp = 8 * len(encode_image(rgb, mid, 0, None, seed, device, init)) / (h * w)
        lo, hi = (mid, hi) if bpp < target_bpp else (lo, mid)
        report(0.5 * (i + 1) / rounds)
    return encode_image(rgb, lo, effort, lambda f: report(0.5 + 0.5 * f), seed, device, init)
