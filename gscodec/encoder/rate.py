"""Rate control: the encode that lands on a target rate (``target_bpp``) or PSNR
(``target_psnr``).

Refinement is most of an encode's time and its result does not depend on the quantizer's
steps, so the search spends one refinement where it can (at most three) and tunes the rest
after them:

1. Quick encodes (effort 0 without pruning, the geometry rounded, `quick_encode`) find the
   quality whose quick encode, plus what refinement at the user's effort typically adds
   (`EFFORT_CHANGE`), measures the target (a secant search in quality, `solve`), to within
   what the prior's miss of single images blurs anyway (`QUICK_RATE_TOLERANCE`).
2. That quality is refined once at the user's effort (`pipeline.refine_image`); the refined
   splats are then finished (`pipeline.finish`) with steps scaled by 2**shift, the shift
   searched so that the finished encode measures the target: each try costs the finish only
   (about a fifth of an encode at effort 4). For a rate, position and colour steps move
   together (the most reach); for a PSNR, colour steps and the rate-distortion pruning's
   strength (`PSNR_PRUNES`): colour steps are integers in 1/65536 units and the pruning
   drops splats one by one, so PSNR follows both smoothly, while the position step is a
   power of two of the patch (`pos_bits`) and jumps an octave at a time (kodim02, quality
   29, effort 4: position and colour steps 2**0.25 and 2**0.5 coarser gave 31.32 and 29.99
   dB, colour steps alone 31.32 and 31.16 dB). Colour steps far from the usual ones buy PSNR
   with too many bits (kodim02 at 33 dB: 1.36 octaves coarser landed at 0.645 bpp, where
   refining the right quality gave 0.459; on 3 training crops, 1.5 octaves coarser saves
   11-12 % of the rate for 0.2-1.2 dB, half an octave 4 % for 0.02-0.19 dB), so the PSNR
   search shifts at most half an octave, together with the pruning's strength, 1 to 4 (the
   plan's is 2), which costs little and reaches further (`PSNR_PRUNES`); coarser than that,
   the pruning alone goes on, to 16 (`MAX_PSNR_COARSER`). It aims its refinement
   `headroom` above the target, and each shift after the usual steps' finish where the
   removal costs of the splats that shift drops or keeps say it lands (`PruningModel`),
   rather than on a secant: PSNR bends with the shift by image and quality, the costs follow it.
3. If no shift within the measure's range (`max_shift`, `max_coarser`) reaches the target
   (the prior was off by more than the steps can make up), the quality is aimed again with
   the prior corrected by this image's own miss, on a line through the quick encodes already
   made (`quick_line`; a quick encode costs a fifth to a half of the refinement it would
   aim), refined there and finished as in 2.
4. If that misses too, a third quality is aimed on the secant through the two refinements'
   own measures (`third_quality`), refined and finished. The closest finish is kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..errors import GscError
from ..format.codec import decode_splats
from ..metrics import psnr
from ..predictor.initializer import sharing_stages
from ..quant.policy import adapt
from ..quant.stream import encode_splats
from ..render.numba.decode import render_rgb
from . import pipeline
from .pipeline import Progress, Refined
from .plan import DEFAULT_INIT, plan_for

log = logging.getLogger(__name__)

RATE_TOLERANCE = 0.03  # a final encode within 3 % of the target rate is kept
PSNR_TOLERANCE = 0.1  # dB: a final encode this close to the target PSNR is kept
EXACT_PSNR = 200.0  # dB: what the PSNR search counts an exact decode (a flat image, say) as
# The step shift of the finish (`encode_refined`) is kept within +-MAX_SHIFT octaves for a
# rate, +-MAX_PSNR_SHIFT for a PSNR (see the module's docstring; `MAX_PSNR_COARSER`)
MAX_SHIFT = 1.5
MAX_PSNR_SHIFT = 0.5
# A coarser PSNR shift goes on past MAX_PSNR_SHIFT with the pruning alone. To 1 octave (strength
# 8, 2**(2 x 1.0) times the plan's 2): on 6 Sun-Hays crops at the default (qualities 20 / 50 / 80;
# each image refined once, then finished at each strength), strength 8 takes 2.34 / 2.60 / 1.44 dB
# off strength 2's, at 0.55 / 0.16 / -0.09 dB below the line of the image's own curve through it
# (strength 4: 0.80 / 0.93 / 0.39 dB off, 0.11 / 0.02 / -0.10 below). So one refinement reaches
# about 2 dB down (`Measure.reach`), where it reached 1 dB, and fewer searches refine again.
# Further, to 1.5 octaves (strength 16): PSNR searches at 27 / 30 / 33 dB on 12 Sun-Hays crops
# (seed 25), each pair of reaches in one process: 1.0 -> 1.25 octaves refined once, twice, three
# times 30 / 5 / 1 -> 33 / 2 / 1 of 36 searches, 2.15 -> 2.02x one encode; 1.25 -> 1.5: 33 / 2 / 1
# -> 34 / 2 / 0, 2.21 -> 2.09x, and two searches at quality 0 land that did not. Where the longer
# reach spared a refinement, the harder-pruned encode of the higher quality took 2-8 % fewer bits
# at equal PSNR than the lower quality's (rate corrected by the typical 0.25 of log rate per dB):
# the pruning is cheaper there than a lower quality. (Measured with the model's earlier grid, 129
# points, and `Measure.reach` kept at 2 dB, as it still is.)
MAX_PSNR_COARSER = 1.5
# A PSNR shift also scales the rate-distortion pruning's strength (`pipeline.prune`), 2**PSNR_PRUNES
# times per octave of coarser colour steps: strengths 1 to 4 about the plan's 2, where pruning
# is nearly free. On 6 Sun-Hays crops at the default (qualities 20 / 50 / 80; each image refined
# once, then finished at each strength), how far below the line of the image's own curve
# (refinements 8 quality points either side) each strength lands: 1.41 0.02 / 0.06 / 0.08 dB,
# 2.83 0.03 / -0.01 / -0.06, 4 0.12 / 0.02 / -0.12, 1 0.05 / 0.12 / 0.14; colour steps half
# an octave coarser 0.18 / 0.14 / 0.20 dB below it (bench/README.md, "a PSNR shift that prunes").
PSNR_PRUNES = 2.0
# Which steps a shift scales, as log2 factors per octave in `adapt`'s order (position, scale,
# angle, luma, chroma): a rate search moves position and colour steps, a PSNR search colour steps
# (and the pruning, `PSNR_PRUNES`)
POSITION_AND_COLOUR = (1.0, 0.0, 0.0, 1.0, 1.0)
COLOUR = (0.0, 0.0, 0.0, 1.0, 1.0)
# A PSNR shift's pruning adds about this share of the squared error that the removal costs of
# the splats it drops predict (`PruningModel`; the finish's polish makes up for the rest, and
# the colour steps, shifted with the pruning, are folded in). On 8 Sun-Hays crops (768 x 512,
# seed 22) at qualities 15 / 35 / 55 / 75, each refined once and finished at shifts from 1
# octave coarser to 0.5 finer: 0.66 by least squares, the prediction correlating 0.95 with the
# squared error added (0.84 at the coarsest). The share grows at high qualities on the finer
# side (to 1.6 at quality 90 on 8 other crops, seed 23), where the colour steps weigh more;
# each search corrects it by its own finishes. Searches simulated on those finishes (targets
# 0.3 +- 0.6 dB below the usual finish, the prior's miss): 2.87 finishes a refinement where the
# shift was needed on the secant, 2.18 with this model (seed 22), 2.87 and 2.35 (seed 23), and
# 0.66 the best start of 0.6-1.0 on both.
PRUNED_ERROR_SHARE = 0.66
QUICK_ENCODES = 6  # at most, per quality search
# A search finishes its refinement several times: those finishes move the colours onto the grid
# in one share, not `plan.COLOR_ROUNDS`' four. On all of Kodak (`python -m bench.rate --targets
# 0.25 0.5 1.0 --psnr-targets 26 29 32`), time against one encode at the quality chosen, mean:
# four shares 1.77 / 1.69 / 1.53x at 0.25 / 0.5 / 1 bpp and 2.15 / 2.00 / 1.77x at 26 / 29 /
# 32 dB; one share 1.64 / 1.49 / 1.43x and 1.93 / 1.86 / 1.71x, landing as often (all 24 rates
# within 3 %, every PSNR in reach within 0.1 dB). One share costs 0.4 % BD-rate on training crops.
SEARCH_COLOR_ROUNDS = 1
# How close the quick search comes before refining (log rate, dB). The prior misses single
# images by more (sd 0.074 in log rate; `quick_encode`): a quick miss anywhere within 0.06 (sd
# 0.035) adds 0.008 to that spread, far less than the finish's steps reach (about +-0.2). For
# a PSNR, a looser quick search saved no time: 0.3 dB, PSNR searches at 26 / 29 / 32 dB on 8
# Sun-Hays crops (17 in the quality range's reach), 2.91x one encode against 2.76x with 0.1 dB.
QUICK_RATE_TOLERANCE, QUICK_PSNR_TOLERANCE = 0.06, PSNR_TOLERANCE
FINISHES = 4  # at most, per refinement, and JUMP_FINISHES more across a jump of the position step
JUMP_FINISHES = 2
# more finishes where the refinement's quality is at the end of the range the target lies past
# (quality 0 with the usual steps above the target, 100 below it): no other refinement can be
# aimed there. kodim02 at 26 dB (quality 0 gives 28.43 dB): the pruning's shifts 2.47 / 1.45 /
# 1.78 octaves gave 24.35 / 26.47 / 25.87 dB, the budget spent 0.13 dB away
EDGE_FINISHES = 2
# A refinement whose usual steps miss by more than this many times what the shift typically
# reaches that way (`Measure.reach`) is not shifted when another refinement can
# be aimed: that one, aimed with the miss, will be closer, and the finishes would cost a fifth
# to a third of an encode each
BEYOND_REACH = 2.0
# What refinement at each effort adds to the search's quick encode (`quick_encode`) of the same
# quality, at the qualities EFFORT_CHANGE_QUALITIES: the log of the ratio of file sizes, and dB
# of PSNR-RGB. Means over 8 training images (centre crops of Kodak's size, 768 x 512, from
# Sun-Hays80), measured by `python -m training.effort_priors --efforts 1 2 3 4 --crop 768x512
# --only sun_hays80 --out training/runs/effort_priors.json` on 2026-12-07, in format 2.0, after
# the finish gained its rounds of moves on the grid (`plan.GRID_ROUNDS`) and its chroma drops
# (`plan.Plan.chroma_by_rate`; neither is in the quick encodes). Between images they spread by
# 0.022-0.077 in log rate (sd; 0.12-0.19 when quick encodes were pruned) and 0.38-1.82 dB.
# Above quality 50 effort 2 is effort 1 (`plan.HIGH_QUALITY`), hence their equal rows there.
# Efforts above 4 use effort 4's.
EFFORT_CHANGE_QUALITIES = (10.0, 30.0, 50.0, 70.0, 90.0)
EFFORT_CHANGE = {
    1: ((-0.177, -0.190, -0.218, -0.059, 0.031), (1.14, 1.75, 2.35, 4.39, 6.34)),
    2: ((-0.089, -0.105, -0.139, -0.059, 0.031), (1.58, 2.17, 2.99, 4.39, 6.34)),
    3: ((0.032, -0.012, -0.032, 0.019, 0.098), (1.81, 2.44, 3.44, 4.77, 6.49)),
    4: ((0.129, 0.073, 0.032, 0.086, 0.144), (2.30, 2.84, 3.94, 5.46, 7.22)),
}


def effort_change(effort: int, quality: float) -> tuple[float, float]:
    """(log rate ratio, dB) that refinement at ``effort`` typically adds to the quick encode at
    ``quality`` (`EFFORT_CHANGE`, interpolated)."""
    if effort <= 0:
        return 0.0, 0.0
    log_rate, db = EFFORT_CHANGE[min(effort, max(EFFORT_CHANGE))]
    return (float(np.interp(quality, EFFORT_CHANGE_QUALITIES, log_rate)),
            float(np.interp(quality, EFFORT_CHANGE_QUALITIES, db)))


class PruningModel:
    """The PSNR of one refinement's finishes at each shift of a PSNR search, predicted from the
    removal costs of its splats (`pipeline.Refined.removal_costs`): a shift ``finer`` octaves
    finer prunes at 2**(-finer x ``prunes``) times the plan's strength, so it drops (or keeps)
    the splats whose costs lie between the two thresholds (`pipeline.prune_threshold`), and
    adds ``share`` of their costs to the squared error of the finish at the usual steps."""

    def __init__(self, costs: np.ndarray, total: float, strength: float, prunes: float, usual: float,
                 samples: int) -> None:
        self.sorted = np.sort(costs)
        self.dropping = np.cumsum(self.sorted)  # the costs of the splats up to each, summed
        self.total, self.strength, self.prunes = total, strength, prunes
        self.usual = usual
        self.error = samples * 10 ** (-usual / 10)  # the usual finish's squared error (units of `costs`)
        self.dropped = self._dropped(0.0)

    @classmethod
    def of(cls, refined: Refined, prunes: float, usual: float) -> PruningModel | None:
        """The model of ``refined`` whose usual finish measured ``usual`` dB; None where a shift
        prunes nothing or nothing is left to predict (an exact decode)."""
        if refined.plan.prune <= 0 or not len(refined.splats.means) or usual >= EXACT_PSNR:
            return None
        costs, total = refined.removal_costs()
        return cls(costs.cpu().double().numpy(), total, refined.plan.prune, prunes, usual,
                   3 * refined.encoder.h * refined.encoder.w)

    def _dropped(self, finer: float) -> float:
        threshold = pipeline.prune_threshold(self.strength * 2.0 ** (-finer * self.prunes), self.total,
                                             len(self.sorted))
        i = int(np.searchsorted(self.sorted, threshold))
        return float(self.dropping[i - 1]) if i else 0.0

    def added(self, finer: float) -> float:
        """The removal costs a shift ``finer`` octaves finer drops beyond the usual (negative:
        keeps)."""
        return self._dropped(finer) - self.dropped

    def psnr(self, finer: float, share: float) -> float:
        return self.usual - 10 * math.log10(max(1 + share * self.added(finer) / self.error, 1e-9))

    def share(self, finer: float, measured: float) -> float | None:
        """The share that a finish at ``finer`` measuring ``measured`` dB says (None where it
        says nothing: no cost moved, or the measure moved the other way)."""
        added = self.added(finer)
        share = (10 ** ((self.usual - measured) / 10) - 1) * self.error / added if added else 0.0
        return share if share > 0 else None

    def solve(self, miss: Callable[[float], float], target: float, tolerance: float, lo: float, hi: float,
              budget: int) -> dict[float, float]:
        """As `solve` (the usual steps already tried, and missed: ``miss(0)`` is cached), each
        try aimed where the model, its share corrected by the try closest to the target so far,
        meets ``target``; within the tries that bracket it."""
        tried = {0.0: miss(0.0)}
        share = PRUNED_ERROR_SHARE
        while len(tried) < budget:
            low = max((x for x, y in tried.items() if y < 0), default=lo)  # the root is finer than these
            high = min((x for x, y in tried.items() if y > 0), default=hi)
            # steps of 0.004 octave at most (the whole range in 512): about 0.01 dB, where PSNR
            # moves 2-3 dB an octave (a grid 4 times coarser left the tolerance between two
            # points on steep costs)
            candidates = [x for x in np.linspace(low, high, 513).tolist() if x not in tried]
            if not candidates:
                break
            x = min(candidates, key=lambda c: abs(self.psnr(c, share) - target))
            tried[x] = miss(x)
            if abs(tried[x]) <= tolerance:
                break
            closest = min((c for c in tried if c), key=lambda c: abs(tried[c]))
            share = self.share(closest, tried[closest] + target) or share
        return tried


class Measure:
    """What a search measures of an encode's bytes, in additive units that grow with quality
    and with finer steps, and how fast it typically grows (to aim the first tries)."""

    def __init__(self, of: Callable[[bytes], float], per_quality: float, shifted: tuple[float, ...],
                 per_shift: float, prior: int, quick_tolerance: float, max_shift: float = MAX_SHIFT,
                 headroom: float = 0.0, prunes: float = 0.0, reach: tuple[float, float] | None = None,
                 max_coarser: float | None = None,
                 model: Callable[[Refined, float, float], PruningModel | None] | None = None) -> None:
        self.of = of
        self.per_quality = per_quality  # growth per quality point
        self.shifted = shifted  # which steps a shift scales (`POSITION_AND_COLOUR`, `COLOUR`)
        self.per_shift = per_shift  # change per octave of coarser steps (negative)
        self.prior = prior  # which of `effort_change`'s pair this measure follows
        # how close quick encodes plus the prior come to the target before refinement (the
        # prior's miss of single images is larger: the finish's shift and a second refinement
        # make up for both)
        self.quick_tolerance = quick_tolerance
        self.max_shift = max_shift  # octaves either way that the steps move
        # how far a coarser shift goes (default: max_shift); beyond max_shift only the pruning moves
        self.max_coarser = max_shift if max_coarser is None else max_coarser
        self.headroom = headroom  # how far above the target the refinement is aimed
        # octaves of rate-distortion pruning's strength per octave of coarser steps
        self.prunes = prunes
        # how far the shift typically moves the measure down and up (default: symmetric)
        self.reach = reach or (max_shift * abs(per_shift),) * 2
        # how a refinement's finishes measure at each shift, from the refinement and its prunes
        # and usual measure, to aim the shifts (`PruningModel`; None: the secant alone)
        self.model = model


def rate_measure(pixels: int) -> Measure:
    # 8 training crops at the default (`python -m training.tune_plan --effort 4 ...`): 0.214 bpp
    # at quality 20, 1.475 at 80; position and colour steps one octave coarser: about -14 %
    return Measure(lambda data: math.log(8 * len(data) / pixels), math.log(1.475 / 0.214) / 60,
                   POSITION_AND_COLOUR, -0.15, 0, QUICK_RATE_TOLERANCE)


def psnr_measure(rgb: np.ndarray) -> Measure:
    reference = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)

    def decoded_psnr(data: bytes) -> float:  # finite, so that misses and shifts stay numbers
        splats = decode_splats(data)
        return min(psnr(reference, render_rgb(splats, splats.height, splats.width)), EXACT_PSNR)

    # the same crops: 25.09 dB at quality 20, 32.73 at 80. A shift moves the colour steps and
    # the pruning's strength (`PSNR_PRUNES`): half an octave coarser, on 6 Sun-Hays crops at
    # the default (qualities 20 / 50 / 80), takes 1.14 / 1.24 / 0.85 dB (0.49-1.54), half an
    # octave finer gives 0.40 / 0.44 / 0.37 dB (0.12-0.77; the sums of the two measured
    # apart). The refinement is aimed 0.3 dB high: on 8 Sun-Hays crops (seed 9), 0.6 dB took
    # 2.72x one encode against 2.44x (bench/README.md, "the pruning goes on alone")
    return Measure(decoded_psnr, (32.73 - 25.09) / 60, COLOUR, -1.4, 1, QUICK_PSNR_TOLERANCE,
                   max_shift=MAX_PSNR_SHIFT, headroom=0.3, prunes=PSNR_PRUNES, reach=(2.0, 0.4),
                   max_coarser=MAX_PSNR_COARSER, model=PruningModel.of)


class Found(NamedTuple):
    """A finished encode of the search: its bytes, quality, log2 factors on the usual steps
    (`adapt`'s order; positive: coarser) and on the pruning's strength (positive: harder),
    measure, and the measure of its refinement at the usual steps."""

    data: bytes
    quality: float
    factors: tuple[float, ...]
    prune: float
    value: float
    usual: float


class Searched(NamedTuple):
    """What a search gives: the encode closest to the target (its bytes, quality, log2 factors
    on the usual steps and on the pruning's strength, measure) and what it took (quick encodes,
    refinements at the user's effort)."""

    data: bytes
    quality: float
    factors: tuple[float, ...]
    prune: float
    value: float
    quick_encodes: int
    refinements: int


def encode_to_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
    """.gsc bytes at about ``target_bpp`` bits per pixel (`search_rate`)."""
    return search_rate(rgb, target_bpp, effort, progress, seed, device, init).data


def search_rate(rgb: np.ndarray, target_bpp: float, effort: int, progress: Progress | None = None, seed: int = 0,
                device: str = "cpu", init: str = DEFAULT_INIT) -> Searched:
    """The encode at about ``target_bpp`` bits per pixel (`search`, on the log of the rate,
    landing within `RATE_TOLERANCE`); its ``value`` is the log of its rate."""
    if not (isinstance(target_bpp, (int, float)) and 0 < target_bpp < math.inf):
        raise GscError(f"target_bpp must be a positive number, got {target_bpp!r}")
    result = search(rgb, rate_measure(rgb.shape[0] * rgb.shape[1]), math.log(target_bpp), math.log1p(RATE_TOLERANCE),
                   effort, progress, seed, device, init)
    log.info("target %.4f bpp: quality %.2f with steps x2**%s gave %.4f bpp (%s)", target_bpp, result.quality,
             _rounded(result.factors), math.exp(result.value), _effort_taken(result))
    return result


def encode_to_psnr(rgb: np.ndarray, target_psnr: float, effort: int, progress: Progress | None = None, seed: int = 0,
                   device: str = "cpu", init: str = DEFAULT_INIT) -> bytes:
    """.gsc bytes whose decode has about ``target_psnr`` dB PSNR-RGB (`search_psnr`)."""
    return search_psnr(rgb, target_psnr, effort, progress, seed, device, init).data


def search_psnr(rgb: np.ndarray, target_psnr: float, effort: int, progress: Progress | None = None, seed: int = 0,
                device: str = "cpu", init: str = DEFAULT_INIT) -> Searched:
    """The encode whose 8-bit decode has about ``target_psnr`` dB PSNR-RGB against ``rgb``
    rounded to 8 bits (`search`, landing within `PSNR_TOLERANCE`); its ``value`` is that PSNR.
    A target beyond what quality 100 reaches gives about quality 100's encode."""
    if not (isinstance(target_psnr, (int, float)) and 0 < target_psnr < math.inf):
        raise GscError(f"target_psnr must be a positive number of dB, got {target_psnr!r}")
    result = search(rgb, psnr_measure(rgb), target_psnr, PSNR_TOLERANCE, effort, progress, seed, device, init)
    log.info("target %.2f dB: quality %.2f with steps x2**%s gave %.2f dB (%s)", target_psnr, result.quality,
             _rounded(result.factors), result.value, _effort_taken(result))
    return result


def _rounded(factors: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(f, 2) for f in factors)


def _effort_taken(result: Searched) -> str:
    return f"{result.quick_encodes} quick encodes, {result.refinements} refinements"


def quick_encode(rgb: np.ndarray, quality: float, effort: int, seed: int = 0, device: str = "cpu",
                 init: str = DEFAULT_INIT) -> bytes:
    """The search's quick encode at ``quality``: effort 0, which it returns at effort 0. For a
    search at a higher effort, without rate-distortion pruning (`pipeline.prune`): pruning
    without refinement drops far more splats, and a varying share of them from image to image,
    so the rate of an unpruned quick encode follows the refined encode's more closely. On 10
    training crops of Kodak's size (Sun-Hays80), log(effort-1 rate / quick rate) spread by
    0.074 (sd, about its mean at each of qualities 20 / 40 / 60 / 80) against 0.144 with
    pruning; PSNR spread the same (0.78 and 0.76 dB). Its geometry is rounded onto the grid,
    with no rounds on it (`pipeline.choose_centres` and `choose_shapes` took an effort-0 finish
    from 0.25 to 0.37 s on 768 x 512 training crops, a round 0.1 s more): the quick encode only
    predicts the refined one, through `EFFORT_CHANGE`."""
    plan = None if effort <= 0 else dataclasses.replace(plan_for(quality, 0, *rgb.shape[:2]), prune=0.0,
                                                         centres_by_rate=False, shapes_by_rate=False,
                                                         grid_rounds=0, chroma_by_rate=False)
    return pipeline.encode_image(rgb, quality, 0, None, seed, device, init, plan)


def encode_refined(refined: Refined, factors: tuple[float, ...], prune: float = 0.0) -> bytes:
    """.gsc bytes of ``refined`` finished (`pipeline.finish`) with steps 2**factors times the
    usual (log2 factors in `adapt`'s order) and pruning 2**prune times the plan's strength."""
    steps = pipeline.default_steps(refined)
    if any(factors):
        steps = adapt(steps, factors)
    strength = refined.plan.prune * 2.0**prune if prune else None
    splats, steps = pipeline.finish(refined, steps=steps, prune_strength=strength)
    return encode_splats(splats, steps=steps)


def solve(f: Callable[[float], float], x: float, slope: float, lo: float, hi: float, tolerance: float,
          budget: int) -> dict[float, float]:
    """Tries x in [lo, hi] for a root of ``f`` (increasing in x, about ``slope`` per unit),
    starting at ``x``: secant steps, regula falsi (Illinois) once the root is bracketed; stops
    within ``tolerance``, after ``budget`` tries, or when the root lies beyond a bound already
    tried. Returns every x tried and its f."""
    tried: dict[float, float] = {}
    below = above = None  # the nearest tries with f < 0 and f > 0
    side = 0  # Illinois: halve the weight of an end kept twice in a row
    while len(tried) < budget:
        x = float(np.clip(x, lo, hi))
        if x in tried:  # a bound again: the root lies beyond it
            break
        y = tried[x] = f(x)
        if abs(y) <= tolerance:
            break
        if y < 0:
            below, side = (x, y), (side - 1 if side < 0 else -1)
        else:
            above, side = (x, y), (side + 1 if side > 0 else 1)
        if below and above:
            (xa, ya), (xb, yb) = below, above
            ya, yb = (ya / 2, yb) if side >= 2 else (ya, yb / 2) if side <= -2 else (ya, yb)
            x = xa - ya * (xb - xa) / (yb - ya)
        else:
            last = sorted(tried.items(), key=lambda p: abs(p[1]))[:2]
            measured = (last[0][1] - last[1][1]) / (last[0][0] - last[1][0]) if len(last) == 2 else 0.0
            # the measured slope unless noise made it flat or negative, else the typical one
            step_slope = measured if measured > 0 else slope
            x = x - y / step_slope
    return tried


@sharing_stages()  # the predictor's stages that no quality changes run once per search
def search(rgb: np.ndarray, measure: Measure, target: float, tolerance: float, effort: int,
           progress: Progress | None = None, seed: int = 0, device: str = "cpu", init: str = DEFAULT_INIT,
           ) -> Searched:
    """The encode whose measure comes closest to ``target`` (see the module's docstring).
    At most `QUICK_ENCODES` quick encodes and three refinements at ``effort`` with `FINISHES`
    (and `JUMP_FINISHES`, or `EDGE_FINISHES` at the quality range's end) finishes each."""
    report = progress or (lambda _: None)
    quick: dict[float, tuple[bytes, float]] = {}  # quality -> its quick encode and measure

    def quick_measure(quality: float) -> float:
        if quality not in quick:
            data = quick_encode(rgb, quality, effort, seed, device, init)
            quick[quality] = data, measure.of(data)
        return quick[quality][1]

    def prior(quality: float) -> float:
        return effort_change(effort, quality)[measure.prior]

    def aim(quick_of: Callable[[float], float], offset: float, start: float, lo: float, hi: float,
            within: float) -> float:
        """The quality whose quick measure (``quick_of``) plus prior plus ``offset`` is closest to
        the target, found to ``within``; of equally close ones, the lowest (the smallest file)."""
        def miss(q: float) -> float:
            return quick_of(q) + prior(q) + offset - target
        tried = solve(miss, start, measure.per_quality, lo, hi, within, QUICK_ENCODES)
        return min(tried, key=lambda q: (abs(tried[q]), q))

    if effort == 0:  # the quick encode is the encode
        quality = aim(quick_measure, 0.0, 50.0, 0.0, 100.0, tolerance)
        report(1.0)
        return Searched(quick[quality][0], quality, (0.0,) * 5, 0.0, quick[quality][1], len(quick), 0)
    # the prior misses single images by more than the quick search's tolerance
    quality = aim(quick_measure, -measure.headroom, 50.0, 0.0, 100.0, max(tolerance, measure.quick_tolerance))

    def second_quality(usual: float) -> float:
        """Where a second refinement goes when the first measured ``usual`` at the usual steps:
        the prior corrected by this image's miss, so that the usual steps land there (the best
        shifted finish may lie on the other side of the target), aimed on a line through the
        quick measures already made, not with new quick encodes."""
        offset = usual - quick_measure(quality) - prior(quality)
        lo, hi = (max(0.0, quality - 25.0), quality) if usual > target else (quality, min(100.0, quality + 25.0))
        line = quick_line({q: m for q, (_, m) in quick.items()}, measure.per_quality)
        return aim(line, offset, quality + (target - usual) / measure.per_quality, lo, hi, tolerance / 10)

    def beyond_reach(usual: float) -> bool:
        """Whether the usual steps miss by more than `BEYOND_REACH` times what the shift
        typically reaches: another refinement, aimed with the miss, will then be closer."""
        down, up = measure.reach
        return abs(usual - target) > BEYOND_REACH * (down if usual > target else up)

    def third_quality(first: tuple[float, float], second: tuple[float, float]) -> float | None:
        """Where a third refinement goes after two (quality, measure at the usual steps): on the
        secant through them, between them if they bracket the target. The second was aimed as if
        this image's miss of the prior were the same at every quality, and moves 0.7-1.35 times
        as far as aimed (18 second refinements at PSNR targets on 10 training crops), up to 2.6
        times at low qualities (Kodak). None where the two do not rise with quality."""
        (q1, m1), (q2, m2) = first, second
        slope = (m2 - m1) / (q2 - q1)
        if not slope > 0:
            return None
        lo, hi = min(q1, q2), max(q1, q2)
        if (m1 - target) * (m2 - target) > 0:  # not bracketed: extrapolate, not far
            lo, hi = max(0.0, lo - 25.0), min(100.0, hi + 25.0)
        return float(np.clip(q2 + (target + measure.headroom - m2) / slope, lo, hi))

    def missed(found: Found) -> bool:
        return abs(found.value - target) > tolerance

    report(0.15)
    # the steps are not shifted far from the target, unless no other refinement can be aimed
    tries = [finished(rgb, measure, target, tolerance, quality, effort, seed, device, init,
                      lambda f: report(0.15 + 0.35 * f),
                      lambda usual: not beyond_reach(usual) or second_quality(usual) == quality)]
    if missed(tries[0]) and (again := second_quality(tries[0].usual)) != quality:
        def third_after(usual: float) -> float | None:
            third = third_quality((quality, tries[0].usual), (again, usual))
            return None if third in (None, quality, again) else third

        tries.append(finished(rgb, measure, target, tolerance, again, effort, seed, device, init,
                              lambda f: report(0.5 + 0.25 * f),
                              lambda usual: not beyond_reach(usual) or third_after(usual) is None))
        if missed(tries[1]) and (third := third_after(tries[1].usual)) is not None:
            tries.append(finished(rgb, measure, target, tolerance, third, effort, seed, device, init,
                                  lambda f: report(0.75 + 0.25 * f)))
    best = min(tries, key=lambda t: abs(t.value - target))
    report(1.0)
    return Searched(best.data, best.quality, best.factors, best.prune, best.value, len(quick), len(tries))


def quick_line(points: dict[float, float], typical: float) -> Callable[[float], float]:
    """A line through the quick measures ``points`` (quality -> measure): through the one
    nearest the quality asked, with the slope that fits them all (least squares), kept within
    half to twice the ``typical`` slope (quick measures of nearby qualities are noisy)."""
    qualities = np.array(sorted(points))
    values = np.array([points[q] for q in qualities])
    slope = typical
    if np.ptp(qualities) > 0:
        slope = float(np.clip(np.polyfit(qualities, values, 1)[0], typical / 2, 2 * typical))

    def line(quality: float) -> float:
        i = int(np.argmin(np.abs(qualities - quality)))
        return float(values[i] + slope * (quality - qualities[i]))
    return line


def finished(rgb: np.ndarray, measure: Measure, target: float, tolerance: float, quality: float, effort: int,
             seed: int, device: str, init: str, progress: Progress,
             worth_shifting: Callable[[float], bool] = lambda usual: True) -> Found:
    """The image refined at ``quality`` and ``effort``, finished with the step shift (`solve`)
    that brings its measure closest to ``target``; at the usual steps only if
    ``worth_shifting`` (of the measure there) says no."""
    plan = dataclasses.replace(plan_for(quality, effort, *rgb.shape[:2]), color_rounds=SEARCH_COLOR_ROUNDS)
    refined = pipeline.refine_image(rgb, quality, effort, lambda f: progress(0.8 * f), seed, device, init, plan)
    # (log2 factors on the steps, on the pruning's strength) -> bytes, measure
    encodes: dict[tuple[tuple[float, ...], float], tuple[bytes, float]] = {}

    def miss_at(shift: tuple[tuple[float, ...], float]) -> float:
        if shift not in encodes:
            data = encode_refined(refined, *shift)
            encodes[shift] = data, measure.of(data)
        return encodes[shift][1] - target

    def shifted(finer: float) -> tuple[tuple[float, ...], float]:
        """The log2 factors on the steps and on the pruning's strength ``finer`` octaves finer (the
        measure grows with it); the steps move at most `Measure.max_shift`."""
        steps = max(finer, -measure.max_shift)
        return tuple(-steps * f for f in measure.shifted), -finer * measure.prunes

    usual = miss_at(shifted(0.0))
    tried = {0.0: usual}
    if abs(usual) > tolerance and worth_shifting(usual + target):
        at_end = (quality <= 0.0 and usual > 0) or (quality >= 100.0 and usual < 0)
        budget = FINISHES + EDGE_FINISHES * at_end
        model = measure.model(refined, measure.prunes, usual + target) if measure.model else None
        if model:
            tried = model.solve(lambda x: miss_at(shifted(x)), target, tolerance, -measure.max_coarser,
                                measure.max_shift, budget)
        else:
            tried = solve(lambda x: miss_at(shifted(x)), 0.0, -measure.per_shift, -measure.max_coarser,
                          measure.max_shift, tolerance, budget)
    finer = min(tried, key=lambda x: (abs(tried[x]), x))  # of equally close ones, the coarser steps
    best = shifted(finer)
    below = [x for x in tried if tried[x] < -tolerance]
    above = [x for x in tried if tried[x] > tolerance]
    if measure.shifted[0] and below and above and abs(tried[finer]) > tolerance:
        # The target lies between two shifts, yet neither lands: the position step moves by
        # whole octaves (`quant.layer` rounds it to a power of two of the patch), and the
        # measure jumps where it does. Keep the position step of the closer end and move the
        # colour steps alone, at most the half octave to the jump.
        def colour_finer(c: float) -> tuple[tuple[float, ...], float]:
            return tuple(b - c * f for b, f in zip(best[0], COLOUR, strict=True)), best[1]
        more = solve(lambda c: miss_at(colour_finer(c)), 0.0, -measure.per_shift / 2, -0.5, 0.5, tolerance,
                     JUMP_FINISHES + 1)  # its first try is ``best`` again
        c = min(more, key=lambda x: (abs(more[x]), x))
        best = colour_finer(c)
    progress(1.0)
    return Found(encodes[best][0], quality, *best, encodes[best][1], encodes[shifted(0.0)][1])
