"""Shared test helpers."""

from __future__ import annotations

import numpy as np

from gscodec import Splats
from gscodec.format.container import check_size
from gscodec.render.backends import render_rgb8


def render_reference(splats: Splats, /, *, scale: float = 1.0, backend: str = "torch") -> np.ndarray:
    """[H, W, 3] uint8 through `render_splats(backend=...)` and `to_uint8_rgb` on the CPU ("torch":
    the spec's reference decode; "numba": the encoder's kernels)."""
    h, w = max(1, round(splats.height * scale)), max(1, round(splats.width * scale))
    check_size(w, h)
    return render_rgb8(splats, h, w, scale=scale, backend=backend)
