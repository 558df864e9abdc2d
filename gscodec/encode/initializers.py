"""Where an encode starts: initializers turn an image into a first set of splats.

An initializer is any callable ``(encoder, plan) -> SplatTensors`` (the `Initializer`
protocol): it sees the target through the `Encoder` (``encoder.target``, [H, W, 3] YCbCr
with the background removed) and the `Plan` (splat budget, patch size). Refinement and
quantization follow whichever one ran. Today there is one, ``detail``; the trained
staged predictor will be another.
"""

from __future__ import annotations

from typing import Protocol

from ..splats import SplatTensors
from .optimize import Encoder, importance
from .plan import Plan


class Initializer(Protocol):
    def __call__(self, encoder: Encoder, plan: Plan) -> SplatTensors: ...


def detail(encoder: Encoder, plan: Plan) -> SplatTensors:
    """``plan.n_splats`` splats sampled where the image has detail (local gradient energy),
    sized to the local splat density, colours solved exactly."""
    s = encoder.place(importance(encoder.target), plan.n_splats, plan.n_splats)
    return SplatTensors(s.means, s.scales, s.angles, encoder.solve_colors(s, 40))


INITIALIZERS: dict[str, Initializer] = {"detail": detail}
DEFAULT_INITIALIZER = "detail"
