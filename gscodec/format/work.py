"""The bound on decoding work (SPEC 4.5): what a stream may ask a renderer to do.

The limits of SPEC 4.3 bound what a decoder allocates, not how long it renders: a
310-byte stream can declare 2^22 splats that each cover an 8192 x 8192 image (2^48
splat-pixel evaluations, days of CPU). So after dequantization and before rendering,
every decoder computes the stream's *work* at the requested output scale, an upper
bound on the (splat, pixel) pairs its boxes hold, and rejects the stream if

    work > WORK_PER_PIXEL * max(output pixels, source pixels) + WORK_SLACK.

Per splat, with l1, l2 its variances along its axes on the output grid (SPEC 7) and
Sxx = l1 cos^2 + l2 sin^2, Syy = l1 sin^2 + l2 cos^2 (float64):
``min(W', 2 ceil(sqrt(Q_CUT Sxx)) + 1) * min(H', 2 ceil(sqrt(Q_CUT Syy)) + 1)``, where W', H'
is the output size; the work is the sum over splats. Counting the source pixels too
keeps thumbnails of dense streams legal (each splat covers at least a pixel).
"""

from __future__ import annotations

import numpy as np

from ..errors import GscError
from ..splats import Splats
from .constants import MIN_VARIANCE_RATIO, Q_CUT

# The reference encoder's streams on Kodak ask for at most 30.2 pairs per pixel (effort 4,
# quality 0, kodim05: a few splats grown to cover the image; bench/results/kodak/work.json),
# smooth synthetic images about 16. 128 leaves a factor of 4 while a maximal legal decode
# (2^26 pixels) stays within 2^33 pairs (tens of seconds on 2 cores, not days). The encoder
# refuses to write a stream beyond it (`gscodec.quant.stream.encode_splats`).
WORK_PER_PIXEL = 128
WORK_SLACK = 1 << 20  # small images: about 4 ms of rendering

MIN_SCALE = 2.0**-16  # output scales a decoder accepts (with an output within SPEC 4.3's limits)
MAX_SCALE = 2.0**16


def render_work(splats: Splats, height: int, width: int, scale: float) -> int:
    """The work of rendering ``splats`` at ``scale`` to ``height`` x ``width`` pixels (see above)."""
    if not len(splats):
        return 0
    s1, s2 = splats.scales[:, 0].astype(np.float64), splats.scales[:, 1].astype(np.float64)
    v1, v2 = s1 * s1, s2 * s2
    v1 = np.maximum(v1, v2 * MIN_VARIANCE_RATIO)
    v2 = np.maximum(v2, v1 * MIN_VARIANCE_RATIO)
    if scale < 1.0:
        extra = (1.0 / scale**2 - 1.0) / 12.0
        v1, v2 = v1 + extra, v2 + extra
    l1, l2 = v1 * scale * scale, v2 * scale * scale
    angles = splats.angles.astype(np.float64)
    cc, ss = np.cos(angles) ** 2, np.sin(angles) ** 2
    nx = np.minimum(width, 2 * np.ceil(np.sqrt(Q_CUT * (l1 * cc + l2 * ss))) + 1)
    ny = np.minimum(height, 2 * np.ceil(np.sqrt(Q_CUT * (l1 * ss + l2 * cc))) + 1)
    return int(np.sum(nx * ny))


def work_limit(splats: Splats, height: int, width: int) -> int:
    """The most work a stream may ask for when rendered to ``height`` x ``width`` pixels."""
    return WORK_PER_PIXEL * max(height * width, splats.height * splats.width) + WORK_SLACK


def check_work(splats: Splats, height: int, width: int, scale: float) -> None:
    """GscError when rendering ``splats`` at ``scale`` would exceed the work bound."""
    work, limit = render_work(splats, height, width, scale), work_limit(splats, height, width)
    if work > limit:
        pixels = max(height * width, splats.height * splats.width)
        raise GscError(
            f"the stream asks for {work:.3g} splat-pixel evaluations at scale {scale:g}, more than the "
            f"decoding work limit of {WORK_PER_PIXEL} per pixel ({limit:.3g} for {pixels} pixels): "
            "a corrupt or malicious stream"
        )
