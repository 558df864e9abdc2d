"""Where an encode starts: initializers turn an image into a first set of splats.

An initializer is any callable ``(encoder, plan, quality) -> Start`` (the `Initializer`
protocol): it sees the target through the `Encoder` (``encoder.target``, [H, W, 3] YCbCr
with the background removed), the `Plan` and the quality, and returns splats grouped in
layers. Refinement and quantization follow whichever one ran.

- ``detail``: splats sampled where the image has detail, one layer (the optimisation
  encoder's start, which needs refinement to be good);
- ``predictor``: the trained staged predictor (`gscodec.predictor`), one layer per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..quant.policy import Steps
from ..splats import SplatTensors
from .optimize import Encoder, importance
from .plan import Plan


@dataclass(frozen=True)
class Start:
    """Splats to start from, the layer each belongs to and, if the initializer chooses them,
    the quantizer steps for this image (else the policy's for the quality)."""

    splats: SplatTensors
    layer: torch.Tensor  # [N] int64, index into patch_sizes
    patch_sizes: tuple[int, ...]
    steps: Steps | None = None


class Initializer(Protocol):
    def __call__(self, encoder: Encoder, plan: Plan, quality: float) -> Start: ...


def detail(encoder: Encoder, plan: Plan, quality: float) -> Start:
    """``plan.n_splats`` splats sampled where the image has detail (local gradient energy),
    sized to the local splat density, colours solved exactly; one layer."""
    s = encoder.place(importance(encoder.target), plan.n_splats, plan.n_splats)
    s = SplatTensors(s.means, s.scales, s.angles, encoder.solve_colors(s, 40))
    return Start(s, torch.zeros(len(s.means), dtype=torch.int64), (plan.patch_size,))


def predictor(encoder: Encoder, plan: Plan, quality: float) -> Start:
    """The staged predictor's splats, one layer per stage, and its quantizer steps for the image
    (its network runs on the CPU)."""
    from ..predictor.initializer import predict, quantizer_steps, stage_plan
    from ..predictor.model import load

    model = load()
    first = model.config.patch_sizes[0]
    stage0 = -(-encoder.h // first) * -(-encoder.w // first)
    stages, summary = predict(encoder.target.cpu().float(), stage_plan(plan.n_splats, stage0), model)
    cat = [torch.cat([getattr(st, k) for st in stages]).to(encoder.device) for k in ("means", "scales", "angles",
                                                                                     "colors")]
    layer = torch.cat([torch.full((len(st.means),), i, dtype=torch.int64) for i, st in enumerate(stages)])
    sizes = model.config.patch_sizes[: len(stages)]
    steps = quantizer_steps(summary, quality, model, refined=plan.iterations > 0)
    return Start(SplatTensors(*cat), layer, tuple(sizes), steps)


INITIALIZERS: dict[str, Initializer] = {"detail": detail, "predictor": predictor}
