"""`Splats`: the decoded form of a .gsc stream, a set of 2D Gaussians.

A splat k has a centre ``means[k] = (x, y)`` in source pixel units (pixel (i, j)
is centred at (j + 0.5, i + 0.5)), a shape ``scales[k] = (s1, s2)`` (standard
deviations in pixels along its own axes) rotated by ``angles[k]`` radians
(axis 1 from the x axis towards +y), and a colour ``colors[k] = (Y, Cb, Cr)``:
signed amplitudes in the coding colour space (see `gscodec.color`). The image is
``background + sum_k colors[k] * gaussian_k`` (bitstream/SPEC.md, section Rendering).

Splats belong to layers; a layer is a grid of patches of side ``patch_sizes[l]``.
A splat set with no splats may have no layers (``patch_sizes == ()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import GscError

if TYPE_CHECKING:  # torch is imported only when tensors are asked for
    import torch


@dataclass(frozen=True)
class SplatTensors:
    """The splat parameters as torch tensors (float32 unless converted)."""

    means: torch.Tensor  # [N, 2] (x, y) pixels
    scales: torch.Tensor  # [N, 2] standard deviations, pixels
    angles: torch.Tensor  # [N] radians
    colors: torch.Tensor  # [N, 3] YCbCr amplitudes


@dataclass(frozen=True, eq=False)
class Splats:
    """An image as a set of 2D Gaussian splats (numpy arrays, float32)."""

    width: int
    height: int
    means: np.ndarray  # [N, 2]
    scales: np.ndarray  # [N, 2]
    angles: np.ndarray  # [N]
    colors: np.ndarray  # [N, 3]
    background: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))  # [3]
    layer: np.ndarray | None = None  # [N] layer index of each splat; None: all in layer 0
    patch_sizes: tuple[int, ...] = (8,)  # patch side of each layer, pixels

    def __post_init__(self) -> None:
        def arr(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> None:
            value = np.ascontiguousarray(np.asarray(getattr(self, name), dtype=dtype))
            if value.shape != shape:
                raise GscError(f"Splats.{name} must have shape {shape}, got {value.shape}")
            if dtype is np.float32 and not np.isfinite(value).all():
                raise GscError(f"Splats.{name} holds NaN or infinite values")
            object.__setattr__(self, name, value)

        if int(self.width) < 1 or int(self.height) < 1:
            raise GscError(f"image size must be at least 1x1, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        n = int(np.shape(self.means)[0]) if np.ndim(self.means) == 2 else -1
        if n < 0:
            raise GscError(f"Splats.means must have shape (N, 2), got {np.shape(self.means)}")
        arr("means", (n, 2))
        arr("scales", (n, 2))
        arr("angles", (n,))
        arr("colors", (n, 3))
        arr("background", (3,))
        if (self.scales <= 0).any():
            raise GscError("Splats.scales must be positive")
        sizes = tuple(int(p) for p in self.patch_sizes)
        if (n and not sizes) or any(p < 1 for p in sizes):
            raise GscError(f"patch_sizes must be positive, got {self.patch_sizes}")
        object.__setattr__(self, "patch_sizes", sizes)
        layer = np.zeros(n, np.int64) if self.layer is None else self.layer
        object.__setattr__(self, "layer", layer)
        arr("layer", (n,), np.int64)
        if n and (self.layer.min() < 0 or self.layer.max() >= len(sizes)):
            raise GscError(f"Splats.layer must index patch_sizes (0..{len(sizes) - 1})")

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def __repr__(self) -> str:
        return (
            f"Splats({len(self)} splats, {self.width}x{self.height}, "
            f"layers with patch sizes {self.patch_sizes})"
        )

    def tensors(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SplatTensors:
        """The parameters as torch tensors on ``device`` (float32 unless ``dtype`` says otherwise)."""
        import torch

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, device=device).to(dtype or torch.float32)

        return SplatTensors(t(self.means), t(self.scales), t(self.angles), t(self.colors))

    @classmethod
    def from_tensors(cls, tensors: SplatTensors, *, width: int, height: int, **kwargs: Any) -> Splats:
        """Build from torch tensors (detached, moved to CPU, float32)."""

        def a(x: torch.Tensor) -> np.ndarray:
            return x.detach().cpu().float().numpy()

        return cls(width, height, a(tensors.means), a(tensors.scales), a(tensors.angles), a(tensors.colors), **kwargs)

    def select(self, keep: np.ndarray) -> Splats:
        """The splats where ``keep`` (a boolean mask or index array) selects."""
        return Splats(
            self.width, self.height, self.means[keep], self.scales[keep], self.angles[keep],
            self.colors[keep], self.background, self.layer[keep], self.patch_sizes,
        )

    def equals(self, other: Splats) -> bool:
        """Exact equality of every field, splats compared in stored order."""
        return (
            (self.width, self.height, self.patch_sizes) == (other.width, other.height, other.patch_sizes)
            and all(
                np.array_equal(getattr(self, f), getattr(other, f))
                for f in ("means", "scales", "angles", "colors", "background", "layer")
            )
        )
