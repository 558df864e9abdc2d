"""Running the stages: render what earlier stages placed, predict, keep what Stage Control allows.

Shared by the encoder's initializer (`gscodec.predictor.initializer`) and by training
(training/predictor.py), so that both see exactly the same stage inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..format.color import YCBCR_TO_RGB
from ..render.backends import render_splats
from .network import StagedPredictor, candidates, stage_control


@dataclass
class StageSplats:
    """One stage's splats for one image (float32 tensors)."""

    means: torch.Tensor  # [N, 2]
    scales: torch.Tensor  # [N, 2]
    angles: torch.Tensor  # [N]
    colors: torch.Tensor  # [N, 3]

    def detach(self) -> StageSplats:
        return StageSplats(self.means.detach(), self.scales.detach(), self.angles.detach(), self.colors.detach())


def render(stages: list[StageSplats], height: int, width: int) -> torch.Tensor:
    """[3, H, W] sum of the splats of ``stages`` (differentiable)."""
    if not stages:
        return torch.zeros(3, height, width)
    cat = [torch.cat([getattr(s, k) for s in stages]) for k in ("means", "scales", "angles", "colors")]
    return render_splats(*cat, height, width).permute(2, 0, 1)


def rgb_error(render_: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, H, W] squared RGB error (sum over channels) of [B, 3, H, W] YCbCr images."""
    m = torch.from_numpy(YCBCR_TO_RGB).to(target)
    diff = torch.einsum("bchw,rc->brhw", render_ - target, m)
    return diff.square().sum(1)


def predict_stage(model: StagedPredictor, image: torch.Tensor, current: torch.Tensor, stage: int,
                  threshold: float | None, budget: int | None = None) -> tuple[list[StageSplats], torch.Tensor]:
    """Stage ``stage``'s kept candidates for each image of the batch, and the summary of its
    features (for `StagedPredictor.step_factors`): ``image`` and ``current`` (the render of
    earlier stages) are [B, 3, H, W], H and W multiples of the stage's patch. ``threshold``
    None keeps every candidate; else Stage Control with at most ``budget``."""
    found, summary = stage_candidates(model, image, current, stage)
    return controlled(found, image, current, model.config.patch_sizes[stage], threshold, budget), summary


def stage_candidates(model: StagedPredictor, image: torch.Tensor, current: torch.Tensor,
                     stage: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Stage ``stage``'s candidates, one per patch (`network.candidates`), and its feature summary."""
    raw, mean_residual, summary = model(image, image - current, stage)
    return candidates(raw, mean_residual, model.config.patch_sizes[stage]), summary


def controlled(found: tuple[torch.Tensor, ...], image: torch.Tensor, current: torch.Tensor, patch: int,
               threshold: float | None, budget: int | None = None) -> list[StageSplats]:
    """Per image, the candidates ``found`` that Stage Control keeps (all if ``threshold`` is None)."""
    means, scales, angles, colors = found
    if threshold is None:
        keep = torch.ones(means.shape[:2], dtype=torch.bool)
    else:
        with torch.no_grad():
            keep = stage_control(rgb_error(current, image), patch, threshold, budget).reshape(len(image), -1)
    return [StageSplats(means[b][keep[b]], scales[b][keep[b]], angles[b][keep[b]], colors[b][keep[b]])
            for b in range(len(image))]
