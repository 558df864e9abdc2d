"""Colour conversion between 8-bit-range RGB and the coding colour space.

The coding space is YCbCr with BT.601 full-range coefficients (as in JPEG/JFIF),
scaled to Y in [0, 1] and Cb, Cr in [-0.5, 0.5]. It is a linear map, so rendering
in YCbCr and converting afterwards equals rendering in RGB.
"""

from __future__ import annotations

import torch

# rows: Y, Cb, Cr; columns: R, G, B  (inputs and outputs in [0, 1])
RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ],
    dtype=torch.float64,
)
YCBCR_TO_RGB = torch.linalg.inv(RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3] RGB in [0, 1] -> [..., 3] YCbCr (Y in [0, 1], chroma centred on 0)."""
    return rgb @ RGB_TO_YCBCR.to(rgb).T


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """[..., 3] YCbCr -> [..., 3] RGB in [0, 1] (not clamped)."""
    return ycc @ YCBCR_TO_RGB.to(ycc).T
