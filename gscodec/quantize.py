"""The image-adaptive quantizer: splats of one layer <-> integer symbols.

Each layer carries its own integer parameters (`LayerParams`): patch size, position
precision, log-scale step and range, angle levels, and per colour channel a step and
a range. Steps follow from ``quality`` (a rule measured on training images, see
`steps_for_quality`); ranges are the smallest that hold this image's values, so no
symbol is wasted on values the image does not use.

Positions are coded as a per-patch splat count plus each splat's offset inside its
patch, in patch raster order, and within a patch sorted by offset: the order of
splats is fixed by their positions and costs no bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import GscError
from .splats import Splats

MAX_PER_PATCH = 15
MAX_LEVELS = 4096  # largest alphabet of any attribute
COLOR_UNIT = 1 << 16  # colour steps are integers in units of 1/65536


@dataclass(frozen=True)
class LayerParams:
    """Integer quantizer parameters of one layer (stored in its LAYR chunk)."""

    patch_log2: int  # patch side p = 2**patch_log2 pixels
    pos_bits: int  # offsets inside a patch in steps of p / 2**pos_bits
    scale_den: int  # log2(scale) in steps of 1/scale_den
    scale_min: int  # smallest major-axis index: scale = 2**(index / scale_den)
    scale_levels: int  # major-axis alphabet; minor = major - d, d in [0, scale_levels)
    angle_levels: int  # angles in steps of pi / angle_levels
    color_step: tuple[int, int, int]  # per channel, units of 1/COLOR_UNIT
    color_min: tuple[int, int, int]  # smallest colour index per channel
    color_levels: tuple[int, int, int]  # colour alphabet per channel

    @property
    def patch_size(self) -> int:
        return 1 << self.patch_log2

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """(rows, columns) of the patch grid covering a width x height image."""
        p = self.patch_size
        return -(-height // p), -(-width // p)

    def validate(self) -> None:
        """Raise GscError unless every field is inside the limits of bitstream/SPEC.md."""
        checks = [
            (0 <= self.patch_log2 <= 7, "patch_log2 must be 0..7"),
            (0 <= self.pos_bits <= 8, "pos_bits must be 0..8"),
            (1 <= self.scale_den <= 64, "scale_den must be 1..64"),
            (-16 * self.scale_den <= self.scale_min <= 1024, "scale_min must be -16*scale_den..1024"),
            (1 <= self.scale_levels <= MAX_LEVELS, f"scale_levels must be 1..{MAX_LEVELS}"),
            (1 <= self.angle_levels <= MAX_LEVELS, f"angle_levels must be 1..{MAX_LEVELS}"),
            (all(1 <= s < 1 << 24 for s in self.color_step), "color_step must be 1..2^24-1"),
            (all(abs(m) < 1 << 24 for m in self.color_min), "color_min must be within +-2^24"),
            (all(1 <= n <= MAX_LEVELS for n in self.color_levels), f"color_levels must be 1..{MAX_LEVELS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GscError(f"invalid layer parameters: {message} ({self})")
        # the largest decodable scale must stay finite and modest in float32
        if (self.scale_min + self.scale_levels) / self.scale_den > 24:
            raise GscError("invalid layer parameters: scales above 2^24 pixels")


@dataclass
class LayerSymbols:
    """The integer symbols of one layer, in coding order (see bitstream/SPEC.md)."""

    counts: np.ndarray  # [rows * cols] splats per patch, raster order
    off_x: np.ndarray  # [n] in [0, 2**pos_bits)
    off_y: np.ndarray  # [n]
    major: np.ndarray  # [n] in [0, scale_levels)
    minor_gap: np.ndarray  # [n] major - minor index, in [0, scale_levels)
    angle: np.ndarray  # [m] for the splats with minor_gap > 0, in [0, angle_levels)
    color: np.ndarray  # [n, 3] in [0, color_levels[c])

    def __len__(self) -> int:
        return len(self.off_x)

    def equals(self, other: LayerSymbols) -> bool:
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in self.__dataclass_fields__)


@dataclass(frozen=True)
class Steps:
    """Quantizer steps chosen from quality (before ranges are fitted to an image)."""

    pos_step: float  # target offset step, pixels
    scale_den: int
    angle_levels: int
    color_step: tuple[float, float, float]  # Y, Cb, Cr


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
    pos_bits = int(np.clip(round(math.log2(patch_size / steps.pos_step)), 0, 8))
    scales, _ = canonical_shape(splats.scales, splats.angles)
    den = steps.scale_den
    log_idx = np.rint(np.log2(scales) * den).astype(np.int64) if len(splats) else np.zeros((0, 2), np.int64)
    lo = int(log_idx.min()) if len(splats) else 0
    hi = int(log_idx[:, 0].max()) if len(splats) else 0
    lo = max(lo, -16 * den)
    color_step = tuple(max(1, round(s * COLOR_UNIT)) for s in steps.color_step)
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


def dequantize_layer(params: LayerParams, symbols: LayerSymbols, width: int, height: int):
    """(means, scales, angles, colors) as float32 arrays from one layer's symbols."""
    rows, cols = params.grid(width, height)
    p = params.patch_size
    step = p / (1 << params.pos_bits)
    occupied = np.flatnonzero(symbols.counts)  # not arange(rows * cols): grids can hold 2^26 patches
    patch = np.repeat(occupied, symbols.counts[occupied])
    x = (patch % cols) * p + (symbols.off_x + 0.5) * step
    y = (patch // cols) * p + (symbols.off_y + 0.5) * step
    major = symbols.major + params.scale_min
    minor = major - symbols.minor_gap
    scales = np.exp2(np.stack([major, minor], 1) / params.scale_den)
    angles = np.zeros(len(symbols))
    angles[symbols.minor_gap > 0] = symbols.angle * (math.pi / params.angle_levels)
    colors = np.empty((len(symbols), 3))
    for c in range(3):
        colors[:, c] = (symbols.color[:, c] + params.color_min[c]) * (params.color_step[c] / COLOR_UNIT)
    f32 = np.float32
    return np.stack([x, y], 1).astype(f32), scales.astype(f32), angles.astype(f32), colors.astype(f32)
