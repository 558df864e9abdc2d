"""The encoder end to end: image -> splats (initializer, refinement, quantization-aware
finish) -> .gsc bytes, and the search for a target rate."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import GscError
from ..format.color import RGB_TO_YCBCR
from ..format.constants import BACKGROUND_UNIT
from ..format.params import dequantize_layer
from ..quant.layer import canonical_shape, fit_params, quantize_background, quantize_layer
from ..quant.policy import Steps, steps_for_quality
from ..quant.stream import encode_splats
from ..splats import Splats, SplatTensors
from .initializers import INITIALIZERS
from .optimize import Encoder
from .plan import DEFAULT_INIT, plan_for

Progress = Callable[[float], None]  # receives the fraction done, 0..1
log = logging.getLogger(__name__)


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
    # the initial placement and the final solve count as 10 steps
    weight = plan.iterations + 2 * plan.polish_steps + 10
    start = INITIALIZERS[init](enc, plan, quality)
    report(5 / weight)
    s = enc.refine(start.splats, plan.iterations, lambda f: report((5 + f * plan.iterations) / weight))
    steps = start.steps or steps_for_quality(quality)
    # quantization-aware finish: each attribute moved onto the grid in turn, the others
    # polished to make up for it, then the colours solved for the final geometry
    s, layer = snap(s, start.layer, start.patch_sizes, steps, w, h, ("means",))
    s = enc.polish(s, plan.polish_steps, ("scales", "angles", "colors"))
    report((5 + plan.iterations + plan.polish_steps) / weight)
    s, layer = snap(s, layer, start.patch_sizes, steps, w, h, ("means", "scales"))
    s = enc.polish(s, plan.polish_steps, ("angles", "colors"))
    report((5 + plan.iterations + 2 * plan.polish_steps) / weight)
    s, layer = snap(s, layer, start.patch_sizes, steps, w, h, ("means", "scales", "angles"))
    colors = enc.solve_colors(s, plan.color_iterations, s.colors).cpu().numpy()
    report(1.0)
    means, scales, angles = (t.cpu().numpy() for t in (s.means, s.scales, s.angles))
    return Splats(w, h, means, scales, angles, colors, background, layer=layer.cpu().numpy(),
                  patch_sizes=start.patch_sizes), steps


def snap(s: SplatTensors, layer: torch.Tensor, patch_sizes: tuple[int, ...], steps: Steps, width: int, height: int,
         attributes: tuple[str, ...]) -> tuple[SplatTensors, torch.Tensor]:
    """``s`` with the named geometry attributes ("means", "scales", "angles") moved onto the
    quantizer's grid, exactly the values a decoder reconstructs, and the others kept (angles
    folded as the quantizer folds them, to go with canonical scales); splats the quantizer
    drops (beyond a patch's capacity) are dropped, with their layer entries."""
    floating = Splats.from_tensors(s, width=width, height=height, layer=layer.cpu().numpy(), patch_sizes=patch_sizes)
    out = {k: getattr(floating, k).copy() for k in ("means", "scales", "angles")}
    kept = []
    for index, patch in enumerate(patch_sizes):
        members = np.flatnonzero(floating.layer == index)
        part = floating.select(members)
        params = fit_params(part, patch, steps)
        symbols, order = quantize_layer(part, params)
        means, scales, angles, _ = dequantize_layer(params, symbols, width, height)
        rows = members[order]
        canonical_scales, canonical_angles = canonical_shape(part.scales[order], part.angles[order])
        out["scales"][rows] = canonical_scales
        out["angles"][rows] = canonical_angles
        for name, value in zip(("means", "scales", "angles"), (means, scales, angles), strict=True):
            if name in attributes:
                out[name][rows] = value
        kept.append(rows)
    keep = np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)
    device = s.means.device
    tensors = SplatTensors(*(torch.from_numpy(np.ascontiguousarray(out[k][keep])).to(device)
                             for k in ("means", "scales", "angles")), s.colors[torch.from_numpy(keep).to(device)])
    return tensors, layer[torch.from_numpy(keep).to(layer.device)]


def encode_image(rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
                 device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
    """.gsc bytes of an [H, W, 3] float32 RGB image in [0, 1] (options checked by the caller)."""
    splats, steps = fit_image(rgb, quality, effort, progress, seed, device, init)
    return encode_splats(splats, steps=steps)


RATE_TOLERANCE = 0.03  # a final encode within 3 % of the target rate is kept


def encode_to_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
    """.gsc bytes at about ``target_bpp`` bits per pixel (`search_rate`)."""
    return search_rate(rgb, target_bpp, effort, progress, seed, device, init)[0]


def search_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                device: str = "cpu", init: str = DEFAULT_INIT) -> tuple[bytes, float]:
    """.gsc bytes at about ``target_bpp`` bits per pixel, and the quality they were encoded at.

    1. Search the quality whose quick (effort-0) encode comes closest to the target.
    2. Encode there at ``effort``. Refinement changes the rate (about +25 % at effort 4 on
       Kodak), so unless it landed within `RATE_TOLERANCE`:
    3. search again for the target divided by this image's measured change of rate, encode
       there at ``effort``, and keep whichever of the two encodes is closer to the target.

    At most two encodes at ``effort`` and a dozen quick ones.
    """
    if not target_bpp > 0:
        raise GscError(f"target_bpp must be positive, got {target_bpp}")
    report = progress or (lambda _: None)
    h, w = rgb.shape[:2]
    quick: dict[float, bytes] = {}  # quality -> its effort-0 encode

    def rate(data: bytes) -> float:
        return 8 * len(data) / (h * w)

    def quick_rate(quality: float) -> float:
        if quality not in quick:
            quick[quality] = encode_image(rgb, quality, 0, None, seed, device, init)
        return rate(quick[quality])

    def search(target: float, lo: float, hi: float, rounds: int) -> float:
        """The quality in [lo, hi] (bisection on the quick rate) whose quick rate is closest
        to ``target`` in ratio."""
        for _ in range(rounds):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if quick_rate(mid) < target else (lo, mid)
        return min(quick, key=lambda q: abs(math.log(quick_rate(q) / target)))

    def miss(data: bytes) -> float:
        return abs(math.log(rate(data) / target_bpp))

    def done(data: bytes, quality: float) -> tuple[bytes, float]:
        report(1.0)
        log.info("target %.4f bpp: quality %.2f gave %.4f bpp", target_bpp, quality, rate(data))
        return data, quality

    quality = search(target_bpp, 0.0, 100.0, 7)
    if effort == 0:
        return done(quick[quality], quality)
    report(0.2)
    first = encode_image(rgb, quality, effort, lambda f: report(0.2 + 0.4 * f), seed, device, init)
    if miss(first) <= math.log1p(RATE_TOLERANCE):
        return done(first, quality)
    change = rate(first) / quick_rate(quality)
    lo, hi = (max(0.0, quality - 25.0), quality) if change > 1 else (quality, min(100.0, quality + 25.0))
    again = search(target_bpp / change, lo, hi, 6)
    if again == quality:
        return done(first, quality)
    second = encode_image(rgb, again, effort, lambda f: report(0.6 + 0.4 * f), seed, device, init)
    return done(first, quality) if miss(first) <= miss(second) else done(second, again)
