"""The predictor as the encoder's initializer: an image -> splats in one pass per stage.

Stage 0 places a splat in every patch of the image; each later stage adds splats where
Stage Control finds the patches worst reconstructed, up to its budget (`stage_plan`: the
encoder's splat budget for the quality, minus stage 0's, shared by the later stages).
Each stage becomes one layer of the stream, so ``decode(..., layers=k)`` shows the
first k stages. The network's quantizer head then picks this image's quantizer steps
(`quantizer_steps`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..quant.policy import Steps, adapt, steps_for_quality
from .model import load
from .network import StagedPredictor
from .rollout import StageSplats, controlled, predict_stage, render, stage_candidates


@dataclass(frozen=True)
class StagePlan:
    """Per stage after the first, the most splats it may add (Stage Control's budget, worst
    patches first), and the threshold below which a patch gets none (squared RGB error per
    pixel, summed over channels, of values in [0, 1])."""

    budgets: tuple[int, ...]
    threshold: float = 1e-4

    @property
    def stages(self) -> int:
        return 1 + len(self.budgets)


# how the budget beyond stage 0 is shared by stages 1, 2, 3 (patches 8, 8, 4). Measured with
# `python -m training.tune_plan --shares ...` (16 training images, effort 0, qualities 20/50/80):
# 0.6,0.2,0.2 -1.2 %, 0.5,0.3,0.2 +0.6 %, 0.3,0.3,0.4 -0.1 %, 0.2,0.3,0.5 +0.2 % BD-rate against
# these: flat within the noise of 16 images, so the first choice stays.
STAGE_SHARES = (0.4, 0.3, 0.3)


def stage_plan(n_splats: int, stage0: int, stages: int = 4) -> StagePlan:
    """A plan for about ``n_splats`` splats in all when stage 0 places ``stage0``: the rest is
    shared by the later stages (a stage whose share is under 1 % of the total is skipped)."""
    rest = max(0, n_splats - stage0)
    budgets = [round(rest * share) for share in STAGE_SHARES[: stages - 1]]
    while budgets and budgets[-1] < 0.01 * n_splats:
        budgets.pop()
    return StagePlan(tuple(budgets))


@dataclass
class _Unplanned:
    """What the predictor gives an image whatever the plan: stage 0 keeps every candidate, so
    stage 1 sees the same residual at every quality and splat budget."""

    model: StagedPredictor
    image: torch.Tensor  # [1, 3, H, W], the padded target they belong to
    first: StageSplats  # stage 0's splats, those of patches wholly in the padding dropped
    first_summary: torch.Tensor
    current: torch.Tensor  # stage 0's render
    second: tuple[tuple[torch.Tensor, ...], torch.Tensor] | None = None  # stage 1's candidates, summary


# Within `sharing_stages`: the last image's `_Unplanned` (a list of at most one), else None
_shared: ContextVar[list[_Unplanned] | None] = ContextVar("_shared", default=None)


@contextmanager
def sharing_stages() -> Iterator[None]:
    """Within it, predictions for the same image share the stages that no plan changes
    (`_Unplanned`): rate control encodes one image at several qualities (quick encodes, then
    the refinement's start). A PSNR search at 26 dB spent 0.20 s of CPU time per prediction on
    kodim09, 0.34 s without. Outside it nothing is kept, so no image outlives its encode."""
    token = _shared.set([])
    try:
        yield
    finally:
        _shared.reset(token)


def _unplanned(model: StagedPredictor, image: torch.Tensor, inside: torch.Tensor) -> _Unplanned:
    shared = _shared.get()
    if shared and shared[0].model is model and torch.equal(shared[0].image, image):  # False for other shapes
        return shared[0]
    (first,), summary = predict_stage(model, image, torch.zeros_like(image), 0, None)
    keep = (F.avg_pool2d(inside, model.config.patch_sizes[0]) > 0).reshape(-1)
    first = StageSplats(first.means[keep], first.scales[keep], first.angles[keep], first.colors[keep])
    current = render([first], *image.shape[2:])[None] * inside  # the padding never counts as error
    found = _Unplanned(model, image, first, summary, current)
    if shared is not None:
        shared[:] = [found]
    return found


@torch.no_grad()
def predict(target: torch.Tensor, plan: StagePlan,
            model: StagedPredictor | None = None) -> tuple[list[StageSplats], torch.Tensor]:
    """Per stage, the splats the predictor keeps for ``target`` ([H, W, 3] YCbCr, background
    removed, float32 on the CPU), in source pixels; and the last stage's feature summary
    [1, 2 * channels] (for `quantizer_steps`)."""
    model = model or load()
    h, w = target.shape[:2]
    step = max(model.config.patch_sizes)
    ph, pw = -(-h // step) * step, -(-w // step) * step
    # channels last, as `model.load` keeps the weights (the stages' sums and products keep it)
    image = F.pad(target.permute(2, 0, 1)[None], (0, pw - w, 0, ph - h)).contiguous(memory_format=torch.channels_last)
    inside = F.pad(torch.ones(1, 1, h, w), (0, pw - w, 0, ph - h))
    start = _unplanned(model, image, inside)
    stages, current, summary = [start.first], start.current, start.first_summary
    for stage in range(1, plan.stages):
        if stage == 1:
            if start.second is None:
                start.second = stage_candidates(model, image, current, 1)
            found, summary = start.second
        else:
            found, summary = stage_candidates(model, image, current, stage)
        (new,) = controlled(found, image, current, model.config.patch_sizes[stage], plan.threshold,
                            plan.budgets[stage - 1])
        stages.append(new)
        current = (current + render([new], ph, pw)[None]) * inside  # the padding never counts as error
    return stages, summary


# False: the policy's steps for every image (the adaptive quantizer's ablation in bench.predictor)
ADAPTIVE_STEPS = True
# log2 factors on the policy's steps (position, scale, angle, luma, chroma) for splats coded as
# the predictor placed them (effort 0): its shapes are too rough to be worth fine scale and
# angle steps. `python -m training.tune_plan --step-factors ...` (16 training images,
# qualities 20/50/80), BD-rate against the policy's steps: each attribute alone 2x coarser:
# position +1.7 %, scale -4.5 %, angle -2.6 %, luma -0.7 %, chroma +13.0 % (2x finer: +4.2,
# +5.8, +2.8, +2.6, +0.4 %); together: 0,1,1,0,0 -7.0 %, 0,2,1,0,0 -8.2 %, 0,1,2,0,0 -8.8 %,
# 0,1,1,1,0 -8.2 %. Chroma 2x coarser than the policy's since the policy's chroma became as fine
# as luma (2026-12-02), which is where it was when these were measured; 1x would cost +3.7 %.
UNREFINED_STEP_FACTORS = (0.0, 1.0, 2.0, 0.0, 1.0)


@torch.no_grad()
def quantizer_steps(summary: torch.Tensor, quality: float, model: StagedPredictor | None = None,
                    refined: bool = True) -> Steps:
    """The policy's steps for ``quality`` (for splats that are not ``refined``, with
    UNREFINED_STEP_FACTORS), scaled for this image by the network's quantizer head."""
    steps = steps_for_quality(quality)
    if not refined:
        steps = adapt(steps, UNREFINED_STEP_FACTORS)
    if not ADAPTIVE_STEPS:
        return steps
    model = model or load()
    return adapt(steps, model.step_factors(summary, quality)[0].tolist())
