"""The quantizer policy: quality -> quantizer steps.

This is the one place where quality turns into steps (the encoder's splat budget is
`gscodec.encoder.plan`); the format stores whatever integers it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..format.constants import MAX_LEVELS


@dataclass(frozen=True)
class Steps:
    """Quantizer steps chosen from quality (before ranges are fitted to an image)."""

    pos_step: float  # target offset step, pixels
    scale_den: int
    angle_levels: int
    color_step: tuple[float, float, float]  # Y, Cb, Cr


def steps_for_quality(quality: float) -> Steps:
    """Quantizer steps for ``quality`` in [0, 100].

    Finer steps as quality rises; chroma as fine as luma. The chroma ratio was 2 (measured
    then on one training crop at quality 50 as the better trade); re-measured with
    rate-distortion pruning and the quantization-aware finish, by
    `python -m training.tune_plan --effort 4 --images 8 --crop --step-factors ...` (every
    image refined once and finished with each candidate's steps), chroma as fine as luma gave
    BD-rate -2.6 % over qualities 20/50/80 and -3.5 % over 10/35/65 against twice as
    coarse; 4x finer chroma, finer position and luma, or coarser luma with finer chroma all
    did worse (bench/README.md, "Quantizer steps after pruning"). Unrefined splats keep
    chroma twice as coarse (`gscodec.predictor.initializer.UNREFINED_STEP_FACTORS`): at
    effort 0 the finer chroma cost +3.7 %. An earlier re-tuning of every step and the splat
    budget (`--effort 4` without pruning) found scale and luma 2x coarser at -3.7 % BD-rate
    on training crops, but -0.4 % on Kodak: not adopted. Short refinements (efforts 1 and 2)
    code scales and colours 2**0.5 times coarser (`gscodec.encoder.plan.SHORT_STEP_FACTORS`).
    """
    t = min(max(quality, 0.0), 100.0) / 100.0
    y_step = 2.0 ** (-5.5 - 2.0 * t)
    return Steps(
        pos_step=0.5 if t >= 0.35 else 1.0,
        scale_den=4 if t < 0.5 else 6,
        angle_levels=32 if t < 0.5 else 64,
        color_step=(y_step, y_step, y_step),
    )


def adapt(steps: Steps, log2_factors: Sequence[float]) -> Steps:
    """``steps`` scaled per attribute by 2**factor, in the order position, scale, angle, luma,
    chroma (the image-adaptive quantizer's output, `gscodec.predictor.network.QUANT_ATTRIBUTES`),
    rounded to what the format stores: a log-scale step of 1/scale_den, angle levels, colour
    steps in the format's units (rounded again by `fit_params`)."""
    position, scale, angle, luma, chroma = (2.0 ** float(f) for f in log2_factors)
    y, cb, cr = steps.color_step
    return Steps(
        pos_step=steps.pos_step * position,
        scale_den=min(max(round(steps.scale_den / scale), 1), 64),
        angle_levels=min(max(round(steps.angle_levels / angle), 1), MAX_LEVELS),
        color_step=(y * luma, cb * chroma, cr * chroma),
    )
