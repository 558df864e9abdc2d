"""Colour conversion between 8-bit-range RGB and the coding colour space (SPEC 7).

The coding space is YCbCr with BT.601 full-range coefficients (as in JPEG/JFIF),
scaled to Y in [0, 1] and Cb, Cr in [-0.5, 0.5]. It is a linear map, so rendering
in YCbCr and converting afterwards equals rendering in RGB.
"""

from __future__ import annotations

import numpy as np

# rows: Y, Cb, Cr; columns: R, G, B  (inputs and outputs in [0, 1])
RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ],
    dtype=np.float64,
)
# Its inverse, rows R, G, B; columns Y, Cb, Cr. The decoders use exactly these float64
# values (written out, since two matrix inversions can differ in the last bit).
YCBCR_TO_RGB = np.array(
    [
        [1.0, 4.697822952128307e-10, 1.4020000001585382],
        [1.0, -0.3441362864820193, -0.7141362865382221],
        [1.0, 1.7720000002147411, 1.3204691428560344e-09],
    ],
    dtype=np.float64,
)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] RGB in [0, 1] -> [..., 3] YCbCr (Y in [0, 1], chroma centred on 0), float64."""
    return np.asarray(rgb, np.float64) @ RGB_TO_YCBCR.T


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """[..., 3] YCbCr -> [..., 3] RGB in [0, 1] (not clamped), float64."""
    return np.asarray(ycc, np.float64) @ YCBCR_TO_RGB.T
