"""The encoder end to end: image -> splats (initializer, refinement, quantization-aware
finish) -> .gsc bytes, and the search for a target rate."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import GscError
from ..format.codec import decode_splats
from ..format.color import RGB_TO_YCBCR
from ..format.constants import BACKGROUND_UNIT
from ..format.params import dequantize_layer
from ..metrics import psnr
from ..quant.layer import canonical_shape, fit_params, quantize_background, quantize_layer
from ..quant.policy import Steps, steps_for_quality
from ..quant.stream import encode_splats
from ..render.numba.decode import render_rgb
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
    s, layer = prune(enc, s, start.layer, plan.prune)
    # quantization-aware finish: each attribute moved onto the grid in turn, the others
    # polished to make up for it, then the colours solved for the final geometry
    s, layer = snap(s, layer, start.patch_sizes, steps, w, h, ("means",))
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


# What a bit of the stream is worth in squared error: RD curves here gain about 2.5 dB per
# doubling of the rate (2.1-2.6 on training crops, 2.2-3.0 on Kodak's), so one bit more of B
# buys 2.5 ln10 / (10 ln2) D / B = 0.83 D / B, D the squared error.
SQUARED_ERROR_PER_BIT = 0.83


def prune(enc: Encoder, s: SplatTensors, layer: torch.Tensor, strength: float
          ) -> tuple[SplatTensors, torch.Tensor]:
    """Rate-distortion pruning: drop the splats that return less than they cost. Counting every
    splat as the stream's mean bits, a splat is kept if removing it alone would add at least
    ``strength`` x `SQUARED_ERROR_PER_BIT` x D / N of squared error (D the squared error, N
    the splats), and at least one splat; the colours of the rest are then re-solved (5 steps).
    ``strength`` 0 keeps all."""
    if strength <= 0 or not len(s.means):
        return s, layer
    costs, total = enc.removal_costs(s)
    keep = costs >= strength * SQUARED_ERROR_PER_BIT * total / len(costs)
    keep[torch.argmax(costs)] = True  # never prune every splat: the most useful one stays
    kept = SplatTensors(s.means[keep], s.scales[keep], s.angles[keep], s.colors[keep])
    colors = enc.solve_colors(kept, 5, kept.colors)
    return SplatTensors(kept.means, kept.scales, kept.angles, colors), layer[keep.to(layer.device)]


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
PSNR_TOLERANCE = 0.1  # dB: a final encode this close to the target PSNR is kept
EXACT_PSNR = 200.0  # dB: what the PSNR search counts an exact decode (a flat image, say) as
# What refinement at each effort adds to an effort-0 encode of the same quality, at the
# qualities EFFORT_CHANGE_QUALITIES: the log of the ratio of file sizes, and dB of PSNR-RGB.
# Means over 8 training images (centre crops of at most 512 x 384), measured by
# `python -m training.effort_priors` on 2026-12-02 with rate-distortion pruning (which
# prunes effort-0 encodes hardest); between images they spread by 0.12-0.19 in log rate
# (sd; 0.013-0.038 before pruning) and 0.48-0.80 dB. Efforts above 4 use effort 4's.
EFFORT_CHANGE_QUALITIES = (10.0, 30.0, 50.0, 70.0, 90.0)
EFFORT_CHANGE = {
    1: ((0.608, 0.792, 0.849, 0.840, 0.809), (2.52, 3.01, 3.81, 4.61, 5.19)),
    2: ((0.708, 0.883, 0.921, 0.902, 0.899), (2.92, 3.40, 4.31, 5.23, 6.11)),
    3: ((0.768, 0.930, 0.958, 0.932, 0.939), (3.16, 3.64, 4.67, 5.68, 6.78)),
    4: ((0.815, 0.972, 0.990, 0.959, 0.968), (3.33, 3.82, 4.97, 6.10, 7.33)),
}


def effort_change(effort: int, quality: float) -> tuple[float, float]:
    """(log rate ratio, dB) that refinement at ``effort`` typically adds to an effort-0 encode
    at ``quality`` (`EFFORT_CHANGE`, interpolated)."""
    if effort <= 0:
        return 0.0, 0.0
    log_rate, db = EFFORT_CHANGE[min(effort, max(EFFORT_CHANGE))]
    return (float(np.interp(quality, EFFORT_CHANGE_QUALITIES, log_rate)),
            float(np.interp(quality, EFFORT_CHANGE_QUALITIES, db)))


def encode_to_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
    """.gsc bytes at about ``target_bpp`` bits per pixel (`search_rate`)."""
    return search_rate(rgb, target_bpp, effort, progress, seed, device, init)[0]


def search_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                device: str = "cpu", init: str = DEFAULT_INIT) -> tuple[bytes, float]:
    """.gsc bytes at about ``target_bpp`` bits per pixel, and the quality they were encoded at
    (`search_quality` on the log of the rate, landing within `RATE_TOLERANCE`)."""
    if not (isinstance(target_bpp, (int, float)) and 0 < target_bpp < math.inf):
        raise GscError(f"target_bpp must be a positive number, got {target_bpp!r}")
    pixels = rgb.shape[0] * rgb.shape[1]

    def log_rate(data: bytes) -> float:
        return math.log(8 * len(data) / pixels)

    data, quality, value = search_quality(rgb, log_rate, math.log(target_bpp), math.log1p(RATE_TOLERANCE),
                                          lambda q: effort_change(effort, q)[0], effort, progress, seed, device,
                                          init)
    log.info("target %.4f bpp: quality %.2f gave %.4f bpp", target_bpp, quality, math.exp(value))
    return data, quality


def encode_to_psnr(rgb: np.ndarray, target_psnr: float, effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
    """.gsc bytes whose decode has about ``target_psnr`` dB PSNR-RGB (`search_psnr`)."""
    return search_psnr(rgb, target_psnr, effort, progress, seed, device, init)[0]


def search_psnr(rgb: np.ndarray, target_psnr: float, effort: int, progress: Progress | None = None, seed: int = 0,
                device: str = "cpu", init: str = DEFAULT_INIT) -> tuple[bytes, float]:
    """.gsc bytes whose 8-bit decode has about ``target_psnr`` dB PSNR-RGB against ``rgb``
    rounded to 8 bits, and the quality they were encoded at (`search_quality`, landing within
    `PSNR_TOLERANCE`). A target beyond what quality 100 reaches gives quality 100's encode."""
    if not (isinstance(target_psnr, (int, float)) and 0 < target_psnr < math.inf):
        raise GscError(f"target_psnr must be a positive number of dB, got {target_psnr!r}")
    reference = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)

    def decoded_psnr(data: bytes) -> float:  # finite, so that misses and shifts stay numbers
        splats = decode_splats(data)
        return min(psnr(reference, render_rgb(splats, splats.height, splats.width)), EXACT_PSNR)

    data, quality, value = search_quality(rgb, decoded_psnr, target_psnr, PSNR_TOLERANCE,
                                          lambda q: effort_change(effort, q)[1], effort, progress, seed, device,
                                          init)
    log.info("target %.2f dB: quality %.2f gave %.2f dB", target_psnr, quality, value)
    return data, quality


def search_quality(rgb: np.ndarray, measure: Callable[[bytes], float], target: float, tolerance: float,
                   prior: Callable[[float], float], effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu", init: str = DEFAULT_INIT) -> tuple[bytes, float, float]:
    """The encode whose ``measure`` (of its bytes; increasing with quality, in additive units
    such as log bpp or dB) comes closest to ``target``, its quality and its measure.

    1. Search the quality whose quick (effort-0) encode, plus ``prior(quality)``, what
       refinement at ``effort`` typically adds there (`EFFORT_CHANGE`), measures ``target``.
    2. Encode there at ``effort``. Unless that landed within ``tolerance``:
    3. search again with the prior shifted by this image's own miss of it (refinement's
       change varies with quality, and from image to image mostly by an offset), within 25
       qualities on the side of the miss, encode there at ``effort``, and keep whichever of
       the two encodes is closer to the target.

    At most two encodes at ``effort`` and 13 quick ones.
    """
    report = progress or (lambda _: None)
    quick: dict[float, tuple[bytes, float]] = {}  # quality -> its effort-0 encode and measure

    def quick_measure(quality: float) -> float:
        if quality not in quick:
            data = encode_image(rgb, quality, 0, None, seed, device, init)
            quick[quality] = data, measure(data)
        return quick[quality][1]

    def search(expected: Callable[[float], float], lo: float, hi: float, rounds: int) -> float:
        """The quality in [lo, hi] (bisection) whose ``expected`` measure is closest to the
        target; of equally close ones, the lowest (the smallest file)."""
        for _ in range(rounds):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if expected(mid) < target else (lo, mid)
        return min(quick, key=lambda q: (abs(expected(q) - target), q))

    if effort == 0:
        quality = search(quick_measure, 0.0, 100.0, 7)
        report(1.0)
        return quick[quality][0], quality, quick[quality][1]
    quality = search(lambda q: quick_measure(q) + prior(q), 0.0, 100.0, 7)
    report(0.2)
    data = encode_image(rgb, quality, effort, lambda f: report(0.2 + 0.4 * f), seed, device, init)
    value = measure(data)
    if abs(value - target) > tolerance:
        shift = value - quick_measure(quality) - prior(quality)
        lo, hi = (max(0.0, quality - 25.0), quality) if value > target else (quality, min(100.0, quality + 25.0))
        again = search(lambda q: quick_measure(q) + prior(q) + shift, lo, hi, 6)
        if again != quality:
            second = encode_image(rgb, again, effort, lambda f: report(0.6 + 0.4 * f), seed, device, init)
            second_value = measure(second)
            if abs(second_value - target) < abs(value - target):
                data, quality, value = second, again, second_value
    report(1.0)
    return data, quality, value
