"""How to encode one image: quality -> splat budget and patch size, effort -> refinement steps.

Quantizer steps for a quality are the quantizer's policy (`gscodec.quant.policy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EFFORT_ITERATIONS = (0, 40, 80, 150, 300, 450, 600, 900, 1300, 2000)
# The default: the predictor + 40 refinement steps (up to 160 above quality 50, `HIGH_QUALITY`),
# coarser scale and colour steps (`SHORT_STEP_FACTORS`). On Kodak (2026-12-06, 24 images, after
# the geometry's and the colours' rate-distortion choice) BD-rate -24.0 % against the
# optimisation encoder that was the default before the predictor (detail placement + 300 steps,
# bench/results/kodak/gscodec.json at 455bd94), and above JPEG at every rate of JPEG's curve
# (0.22-1.57 bpp); 1.0-2.2 s an image at quality 50 on 2-core machines (median of kodim01-06;
# 1.18-1.84x AVIF's time in the same runs). Effort 4 (the default before) saves about 8 % of the
# bits in 1.8-5.5 times the time (bench/README.md).
DEFAULT_EFFORT = 1
MAX_EFFORT = len(EFFORT_ITERATIONS) - 1
RELOCATIONS = 12  # times weak splats are moved during refinement (in its first 3/4)
INITS = ("detail", "predictor")
# the trained predictor's start, refined: on Kodak at effort 4 BD-rate -7.7 % (+0.28 dB) against
# detail placement + the same refinement (bench/results/kodak/gscodec-predictor-e4.json against
# gscodec-detail-e4.json), in the same time
DEFAULT_INIT = "predictor"
# conjugate-gradient steps of the final colour solve, warm-started from refined colours
# (30 before; see `gscodec.encoder.optimize.RELOCATION_SOLVE` for the measurement)
COLOR_ITERATIONS = 10
# The finish moves the colours onto the quantizer's grid in this many shares, each colour down
# or up by rate and distortion and each share made up for by the colours still free
# (`Encoder.quantize_colors`), where the quantizer used to round them. BD-rate against rounding
# on Sun-Hays crops (768 x 512, effort 1, qualities 20 / 50 / 80, each refinement finished
# both ways): 1 share -2.11 / -2.15 % (6 crops, seeds 83 / 84), 4 shares -2.81 % (seed 83, 10
# CG steps a share), -2.58 % (seed 84, 2 steps); 8 shares -3.16 % (seed 83) for 3x the time.
# Effort 0 (seed 84): 1 share -2.28 %, 4 shares -2.60 % but 0.19 s a finish against 0.13 s.
COLOR_ROUNDS = 4
COLOR_ROUNDS_EFFORT0 = 1
# Quantization-aware finish (`pipeline.finish`): after positions are snapped to the
# quantizer's grid, this many Adam steps on the scales, angles and colours; then scales and
# angles are snapped and the colours solved. A fifth of the refinement's steps, 15 to 100.
# On 6 training crops (512 x 384) at qualities 20 / 50 / 80, polishing after the positions'
# snap and again after the scales' (a tenth of the steps each; 10 + 10 at effort 1, 30 + 30 at
# effort 4) gave +0.08 / +0.10 / +0.19 dB at the same rate at effort 1, +0.12 / +0.19 / +0.47 dB
# at effort 4, against snapping without them. Those steps all spent after the positions' snap
# instead (scales and angles then snapped together), on 12 training crops of Kodak's size
# (768 x 512, the same qualities; BD-rate against the two polishes, the same time): effort 1
# -2.2 % and -2.6 % (two sets of 6), effort 4 +0.1 % (the first 6). The first polish alone,
# half the steps: +0.9 % / +1.0 % at effort 1, +0.9 % at effort 4; three times its steps at
# effort 1: -4.8 %, 0.4 s more a crop. At least 15 (20 before, +1.5 % BD-rate at effort 1 on 6
# crops of Kodak's size, 5 fewer of its 60 render passes), to bring the default nearer 2 s.
POLISH_FRACTION, POLISH_MIN, POLISH_MAX = 0.2, 15, 100
# Refinements of at most SHORT_STEPS steps (efforts 1 and 2) take SHORT_LR_SCALE times the Adam
# rates (`gscodec.encoder.optimize.LRS`, tuned for 150 steps; they fall tenfold over a run). On 6
# Sun-Hays crops of Kodak's size at effort 1 (qualities 20 / 50 / 80), BD-rate against the
# rates as they were: x0.7 +2.9 %, x1.5 -2.6 %, x2 -3.8 %, x3 -3.4 %, x4 0.0 %; on 6 other
# crops x2 -4.5 %, x3 -5.5 %. At effort 2 (the first 6 crops, qualities 20 / 50 / 80 / 100):
# x1.5 -3.3 %, x2 -4.7 %, in the same time. Longer refinements were not measured and keep theirs.
SHORT_STEPS, SHORT_LR_SCALE = 80, 2.0
# Above quality HIGH_QUALITY, the default effort's refinement and polish steps grow linearly
# to HIGH_QUALITY_STEPS times at quality 100 (160 + 60 there), and no effort refines less than
# that: the splats are dense there and 40 steps leave most of the fit undone. On Sun-Hays
# crops 1-6 (768 x 512) at qualities 65 / 80 / 100, BD-rate against no growth: x2 -10.4 %
# (2.75 -> 4.24 s an encode), x3 -15.4 % (5.58 s); x2 steps with x3 polish -11.7 % (4.61 s).
# With the faster kernels of 2026-12-04, against x2: x3 -5.2 % (4.01 -> 5.26 s an encode),
# x4 -8.2 % (6.41 s). On Kodak x4 took the default above JPEG at every rate of JPEG's curve
# (+0.19 dB at 1.5 bpp, where x2 was -0.34 dB; bench/README.md). Quality 50 and below are
# unchanged.
HIGH_QUALITY, HIGH_QUALITY_STEPS = 50.0, 4.0
# Short refinements leave a fit whose errors outweigh fine quantizer steps: they code scales
# and colours 2**0.5 times coarser than the policy's (`gscodec.quant.policy`, tuned at effort
# 4). `python -m training.tune_plan --effort 1 --images 8 --crop 768x512 --seed 1 --step-factors
# ...` (BD-rate against the policy's steps; qualities 50 / 65 / 80 / 100, then 10 / 25 / 40):
# scale +0.5 -2.1 %; scale and chroma -3.6 %, then -2.8 %; scale, luma and chroma -4.5 %,
# then -3.5 %; scale +1 -2.9 %; luma and chroma alone -1.8 % (10 / 25 / 40). On 8 crops of
# 512 x 384 (seed 0, qualities 50 / 65 / 80 / 100): scale, luma and chroma -3.6 %; scale and
# chroma -3.0 %, with position 2**0.5 finer -2.8 %. At effort 2 (qualities 20 / 50 / 80 / 100)
# -3.9 %. At effort 4 (20 / 50 / 80) -2.7 % on crops, but +0.6 % on Kodak (each image refined
# once, finished with both steps): not taken there.
SHORT_STEP_FACTORS = (0.0, 0.5, 0.0, 0.5, 0.5)
# at effort 0 (no refinement) the solve dominates an encode: on kodim05 at quality 50 with the
# predictor, 8 steps gave 20.67 dB in 0.84 s, 30 steps 20.85 dB in 1.88 s (2 busy cores)
COLOR_ITERATIONS_EFFORT0 = 8
# Rate-distortion pruning after refinement (`pipeline.prune`; 0 turns it off). BD-rate against
# no pruning on 8 training crops (512 x 384) at qualities 20 / 50 / 80 with the predictor's
# start: strength 0.5 / 1 / 2 / 3 / 4 at effort 1 -3.8 / -5.6 / -7.8 / -7.9 / -6.3 %; strength
# 2 at effort 4 -3.1 % (11.0 -> 10.1 s an encode there); strength 2 with no refinement or
# polishing (effort 1's quantizer steps) -10.1 %. On Kodak at the default: -4.8 %
# (bench/README.md, "Rate-distortion pruning").
PRUNE = 2.0
# Rounds of moves on the grid at the end of the finish (`pipeline.finish`): each centre may move
# a cell along an axis and each shape a step in major, minor or angle, chosen by rate and
# distortion as the first choice was (`pipeline.choose_centres`, `choose_shapes`), the colours
# solved again after each round. The first choice costs each splat against splats that will move
# too; the rounds settle them. On Sun-Hays crops (768 x 512, qualities 20 / 50 / 80), BD-rate
# against no rounds, and a finish's time: effort 1 (6 crops, seed 105) 1 round -3.5 %, 2 -5.0 %,
# 3 -5.6 % (0.92 -> 1.03 / 1.23 / 1.44 s, refinement 1.72 s); effort 0 (4 crops, seed 106) 1 round
# -10.5 %, 2 -14.9 %, 3 -16.9 % (0.40 -> 0.49 / 0.69 / 0.91 s); effort 4 (4 crops, seed 107)
# 1 round -2.8 %, 2 -3.9 %. Effort 0, the quick one, takes one round.
GRID_ROUNDS, GRID_ROUNDS_EFFORT0 = 2, 1
# Layers drop their chroma where it costs more bits than it returns (`pipeline.quantize_colors`).
# On Sun-Hays crops (768 x 512, 4 crops, seed 139, qualities 20 / 50 / 80, both ways alternately in
# one process) an encode took 2.81 -> 2.89 s at effort 1 and 0.63 -> 0.73 s at effort 0, where it
# saves 2.1-2.3 % (BD-rate); the quick effort keeps its time, as with its grid rounds.
CHROMA_BY_RATE_EFFORT0 = False


@dataclass(frozen=True)
class Plan:
    """The splat budget, layer layout and refinement steps for one image."""

    n_splats: int
    patch_size: int
    iterations: int
    color_iterations: int = COLOR_ITERATIONS
    polish_steps: int = 0  # Adam steps after the centres' snap to the quantizer's grid (`pipeline.finish`)
    prune: float = PRUNE  # strength of the rate-distortion pruning (`pipeline.prune`)
    relocations: int = RELOCATIONS  # moves of weak splats during refinement (`Encoder.refine`)
    lr_scale: float = 1.0  # times the refinement's Adam rates (`SHORT_LR_SCALE`)
    # log2 factors on the quantizer steps (position, scale, angle, luma, chroma), `quant.policy.adapt`
    step_factors: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    # shares of the colours' move onto the quantizer's grid (`Encoder.quantize_colors`; 0: the
    # quantizer rounds them)
    color_rounds: int = COLOR_ROUNDS
    # centres, then scales and angles onto the quantizer's grid by rate and distortion
    # (`pipeline.choose_centres`, `pipeline.choose_shapes`; False: the quantizer rounds them)
    centres_by_rate: bool = True
    shapes_by_rate: bool = True
    # rounds of moves on the grid after that: each centre a cell, each shape a step, by rate and
    # distortion, the colours solved again (`pipeline.finish`)
    grid_rounds: int = GRID_ROUNDS
    # layers whose chroma costs more bits than it returns code none (`pipeline.quantize_colors`)
    chroma_by_rate: bool = True


def plan_for(quality: float, effort: int, height: int, width: int) -> Plan:
    """The splat budget grows geometrically with quality (0.35 % to 8 % of the pixels)."""
    t = min(max(quality, 0.0), 100.0) / 100.0
    density = math.exp(math.log(0.0035) + t * (math.log(0.08) - math.log(0.0035)))
    pixels = height * width
    n = max(1, round(pixels * density))
    patch = patch_for(n, pixels)
    iterations = EFFORT_ITERATIONS[int(np.clip(effort, 0, MAX_EFFORT))]
    if not iterations:
        return Plan(n, patch, 0, COLOR_ITERATIONS_EFFORT0, color_rounds=COLOR_ROUNDS_EFFORT0,
                    grid_rounds=GRID_ROUNDS_EFFORT0, chroma_by_rate=CHROMA_BY_RATE_EFFORT0)
    polish = _polish_steps(iterations)
    short = iterations <= SHORT_STEPS  # before the growth: a short refinement stays one
    if quality > HIGH_QUALITY:
        grow = 1 + (min(quality, 100.0) - HIGH_QUALITY) / (100.0 - HIGH_QUALITY) * (HIGH_QUALITY_STEPS - 1)
        default = EFFORT_ITERATIONS[DEFAULT_EFFORT]
        iterations = max(iterations, round(default * grow))
        polish = max(polish, round(_polish_steps(default) * grow))
    if not short:
        return Plan(n, patch, iterations, COLOR_ITERATIONS, polish)
    return Plan(n, patch, iterations, COLOR_ITERATIONS, polish, lr_scale=SHORT_LR_SCALE,
                step_factors=SHORT_STEP_FACTORS)


def _polish_steps(iterations: int) -> int:
    return int(np.clip(round(POLISH_FRACTION * iterations), POLISH_MIN, POLISH_MAX))


def patch_for(n_splats: int, pixels: int) -> int:
    """Patches of about one splat each: the count map then costs about a bit per splat."""
    side = math.sqrt(pixels / n_splats)
    return int(np.clip(2 ** round(math.log2(max(side, 1.0))), 2, 64))
