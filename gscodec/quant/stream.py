"""A splat set -> .gsc bytes: each layer quantized with the policy's steps, then coded."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import GscError, GscWarning
from ..format.codec import write_stream
from ..format.params import LayerParams, LayerSymbols, dequantize_layer
from ..format.work import WORK_PER_PIXEL, render_work, work_limit
from ..splats import Splats
from .layer import fit_params, quantize_background, quantize_layer
from .policy import Steps, steps_for_quality


def encode_splats(splats: Splats, /, *, quality: float = 50.0, steps: Steps | None = None) -> bytes:
    """Quantize and code ``splats``; ``quality`` (0-100) picks the quantizer steps.

    The format can hold at most 15 splats per patch, and centres inside the layer's patch
    grid: splats beyond either are dropped or moved, with a `gscodec.GscWarning` saying how
    many (turn it into an error with ``warnings.simplefilter("error", gscodec.GscWarning)``).
    """
    if not isinstance(splats, Splats):
        raise GscError(f"encode_splats expects a Splats, got {type(splats).__name__}")
    steps = steps or steps_for_quality(quality)
    layers = []
    for index, patch in enumerate(splats.patch_sizes):
        part = splats.select(splats.layer == index)
        params = fit_params(part, patch, steps)
        symbols, kept = quantize_layer(part, params)
        rows, cols = params.grid(splats.width, splats.height)
        x, y = part.means[:, 0], part.means[:, 1]
        moved = int(np.count_nonzero((x < 0) | (y < 0) | (x >= cols * patch) | (y >= rows * patch)))
        dropped = len(part) - len(kept)
        if moved or dropped:
            warnings.warn(
                f"layer {index}: {dropped} splats dropped (more than 15 in a {patch}-pixel patch) and "
                f"{moved} centres moved into the patch grid; the stream holds {len(kept)} of {len(part)} splats",
                GscWarning, stacklevel=2,
            )
        layers.append((params, symbols))
    _check_decodable(splats, layers)
    return write_stream(splats.width, splats.height, quantize_background(splats.background), layers)


def _check_decodable(splats: Splats, layers: list[tuple[LayerParams, LayerSymbols]]) -> None:
    """GscError rather than a file no decoder accepts: the splats as a decoder will see them
    (dequantized) must stay within the decoding work bound at scale 1 (SPEC 4.5). Other output
    scales are not checked here; on Kodak the largest ratio over scales 1/8..2 stays below 31
    of the 128 allowed (bench.work)."""
    w, h = splats.width, splats.height
    parts = [dequantize_layer(params, symbols, w, h) for params, symbols in layers]
    scales = np.concatenate([p[1] for p in parts]) if parts else np.ones((0, 2), np.float32)
    angles = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.float32)
    n = len(scales)
    decoded = Splats(w, h, np.zeros((n, 2)), scales, angles, np.zeros((n, 3)), patch_sizes=(1,))  # shapes only
    if render_work(decoded, h, w, 1.0) > work_limit(decoded, h, w):
        raise GscError(
            f"these {n} splats would ask a decoder for more rendering work than SPEC 4.5 allows "
            f"({WORK_PER_PIXEL} splat-pixel evaluations per pixel): too many splats too large to store"
        )
