"""Quantizing one layer: splats -> integer symbols, with parameters fitted to the image.

Steps come from the policy (`gscodec.quant.policy`); ranges are the smallest that hold
this image's values, so no symbol is wasted on values the image does not use.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import GscError
from ..format.constants import BACKGROUND_UNIT, COLOR_UNIT, MAX_LEVELS, MAX_PER_PATCH
from ..format.params import LayerParams, LayerSymbols, dequantize_layer
from ..splats import Splats
from .policy import Steps


def canonical_shape(scales: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scales sorted major-first and angles folded into [0, pi): the same Gaussians."""
    scales = np.asarray(scales, np.float64)
    angles = np.asarray(angles, np.float64).copy()
    swap = scales[:, 1] > scales[:, 0]
    scales = np.where(swap[:, None], scales[:, ::-1], scales)
    angles[swap] += math.pi / 2
    return scales, np.mod(angles, math.pi)


def fit_params(splats: Splats, patch_size: int, steps: Steps) -> LayerParams:
    """Layer parameters for ``splats`` (one layer): the steps, with ranges fitted to the data."""
    if patch_size < 1 or patch_size & (patch_size - 1) or patch_size > 128:
        raise GscError(f"patch size must be a power of two up to 128, got {patch_size}")
    patch_log2 = patch_size.bit_length() - 1
    pos_bits = position_bits(patch_size, steps)
    scales, _ = canonical_shape(splats.scales, splats.angles)
    den = steps.scale_den
    log_idx = np.rint(np.log2(scales) * den).astype(np.int64) if len(splats) else np.zeros((0, 2), np.int64)
    lo = int(log_idx.min()) if len(splats) else 0
    hi = int(log_idx[:, 0].max()) if len(splats) else 0
    lo = max(lo, -16 * den)
    color_step = color_steps(steps)
    cmin, clev = [], []
    for c in range(3):
        idx = np.rint(splats.colors[:, c].astype(np.float64) * COLOR_UNIT / color_step[c]).astype(np.int64)
        a, b = (int(idx.min()), int(idx.max())) if len(splats) else (0, 0)
        # a range too wide for the alphabet is clipped symmetrically around the data
        if b - a + 1 > MAX_LEVELS:
            mid = (a + b) // 2
            a, b = mid - MAX_LEVELS // 2, mid + MAX_LEVELS // 2 - 1
        cmin.append(a)
        clev.append(b - a + 1)
    return LayerParams(
        patch_log2=patch_log2,
        pos_bits=pos_bits,
        scale_den=den,
        scale_min=lo,
        scale_levels=int(np.clip(hi - lo + 1, 1, MAX_LEVELS)),
        angle_levels=steps.angle_levels,
        color_step=color_step,  # type: ignore[arg-type]
        color_min=tuple(cmin),  # type: ignore[arg-type]
        color_levels=tuple(clev),  # type: ignore[arg-type]
    )


def position_bits(patch_size: int, steps: Steps) -> int:
    """Bits of each offset in a layer of ``patch_size`` patches: 2^bits cells a patch side, the
    cell nearest ``steps.pos_step`` pixels."""
    return int(np.clip(round(math.log2(patch_size / steps.pos_step)), 0, 8))


def color_steps(steps: Steps) -> tuple[int, int, int]:
    """The colour steps a layer stores for ``steps`` (Y, Cb, Cr, in units of 1/COLOR_UNIT)."""
    return tuple(max(1, round(v * COLOR_UNIT)) for v in steps.color_step)  # type: ignore[return-value]


def code_lengths(indices: np.ndarray) -> tuple[int, np.ndarray]:
    """Bits per value of integer ``indices`` under the order-0 model that the format's
    adaptive model learns from them (weights 2h + 1, SPEC 5.2), for every value from one
    below their least to one above their largest: (that first value, the bits)."""
    indices = np.asarray(indices, np.int64)
    if not len(indices):
        return 0, np.zeros(1)
    first = int(indices.min()) - 1
    weights = 2.0 * np.bincount(indices - first, minlength=int(indices.max()) - first + 2) + 1.0
    return first, np.log2(weights.sum()) - np.log2(weights)


def quantize_layer(splats: Splats, params: LayerParams) -> tuple[LayerSymbols, np.ndarray]:
    """Symbols for ``splats`` (one layer) and the indices of the splats they keep.

    Centres are clamped into the patch grid; a patch holding more than MAX_PER_PATCH
    splats keeps those with the largest colour energy times area.
    """
    params.validate()
    w, h = splats.width, splats.height
    rows, cols = params.grid(w, h)
    p = params.patch_size
    cells = 1 << params.pos_bits
    step = p / cells
    # position -> global offset-grid index, clamped into the grid
    gx = np.clip(np.floor(splats.means[:, 0].astype(np.float64) / step), 0, cols * cells - 1).astype(np.int64)
    gy = np.clip(np.floor(splats.means[:, 1].astype(np.float64) / step), 0, rows * cells - 1).astype(np.int64)
    patch = (gy // cells) * cols + gx // cells
    within = (gy % cells) * cells + gx % cells
    order = np.lexsort((within, patch))  # patch raster order, then offset inside the patch

    # cap splats per patch: rank inside each patch by importance, keep the first MAX_PER_PATCH
    importance = (splats.colors.astype(np.float64) ** 2).sum(1) * np.prod(splats.scales, 1)
    by_importance = np.lexsort((-importance, patch))
    first = np.searchsorted(patch[by_importance], patch[by_importance], side="left")
    rank = np.empty(len(splats), np.int64)
    rank[by_importance] = np.arange(len(splats)) - first
    order = order[rank[order] < MAX_PER_PATCH]

    counts = np.bincount(patch[order], minlength=rows * cols).astype(np.int64)
    scales, angles = canonical_shape(splats.scales[order], splats.angles[order])
    den = params.scale_den
    major = np.clip(np.rint(np.log2(scales[:, 0]) * den) - params.scale_min, 0, params.scale_levels - 1)
    minor = np.clip(np.rint(np.log2(scales[:, 1]) * den) - params.scale_min, 0, major)
    gap = (major - minor).astype(np.int64)
    angle = np.mod(np.rint(angles / math.pi * params.angle_levels), params.angle_levels).astype(np.int64)
    color = np.empty((len(order), 3), np.int64)
    for c in range(3):
        idx = np.rint(splats.colors[order, c].astype(np.float64) * COLOR_UNIT / params.color_step[c])
        color[:, c] = np.clip(idx - params.color_min[c], 0, params.color_levels[c] - 1)
    symbols = LayerSymbols(
        counts=counts,
        off_x=(gx[order] % cells).astype(np.int64),
        off_y=(gy[order] % cells).astype(np.int64),
        major=major.astype(np.int64),
        minor_gap=gap,
        angle=angle[gap > 0],
        color=color,
    )
    return symbols, order


def snap_geometry(splats: Splats, steps: Steps, attributes: tuple[str, ...] = ("means", "scales", "angles")
                  ) -> tuple[Splats, np.ndarray]:
    """``splats`` with the named geometry attributes ("means", "scales", "angles") moved onto
    the quantizer's grid of ``steps``, exactly the values a decoder reconstructs from what
    `gscodec.quant.stream.encode_splats` writes, the others kept (scales in canonical form,
    angles folded to go with them: the same Gaussians). Splats the quantizer drops (beyond a
    patch's capacity) are dropped; returns the rest, in their order, and their indices."""
    out = {k: getattr(splats, k).copy() for k in ("means", "scales", "angles")}
    kept = []
    for index, patch in enumerate(splats.patch_sizes):
        members = np.flatnonzero(splats.layer == index)
        part = splats.select(members)
        params = fit_params(part, patch, steps)
        symbols, order = quantize_layer(part, params)
        means, scales, angles, _ = dequantize_layer(params, symbols, splats.width, splats.height)
        rows = members[order]
        out["scales"][rows], out["angles"][rows] = canonical_shape(part.scales[order], part.angles[order])
        for name, value in zip(("means", "scales", "angles"), (means, scales, angles), strict=True):
            if name in attributes:
                out[name][rows] = value
        kept.append(rows)
    keep = np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)
    return dataclasses.replace(splats.select(keep), **{k: v[keep] for k, v in out.items()}), keep


def quantize_background(background: np.ndarray) -> tuple[int, int, int]:
    """The background colour [3] (YCbCr) in the header's units of 1/BACKGROUND_UNIT."""
    b = np.clip(np.rint(np.asarray(background, np.float64) * BACKGROUND_UNIT), -32768, 32767)
    return tuple(int(v) for v in b)  # type: ignore[return-value]
