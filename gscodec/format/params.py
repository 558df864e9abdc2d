"""A layer's integer parameters and symbols, and their dequantization (SPEC 4.1, 5, 6).

Each layer carries its own integer parameters (`LayerParams`): patch size, position
precision, log-scale step and range, angle levels, and per colour channel a step and
a range. Its splats are integer symbols (`LayerSymbols`): a per-patch splat count plus
each splat's offset inside its patch, in patch raster order and, within a patch, sorted
by offset, so the order of splats is fixed by their positions and costs no bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import GscError
from .constants import COLOR_UNIT, MAX_LEVELS


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
