"""The staged predictor (after AIR, arXiv 2605.20820): one splat per patch per stage.

Stage s sees the image and the residual left by stages < s (stage 0: the image itself)
and predicts, for every patch of side ``patch_sizes[s]``, one candidate splat: 8 raw
values turned into a centre (the patch centre plus up to one patch either way), two
axis scales, an angle and a signed YCbCr colour. Stage Control (`stage_control`) then
keeps a stage's candidates only where the patch is still badly reconstructed.

Unlike AIR (a pretrained ViT-B per stage), the network is small and shared by the
stages so that it trains from scratch on 2 CPU cores and runs in well under a second:
a stride-4 trunk (pixel unshuffle, 3x3 convolutions, residual blocks) on
[image, residual], a learned stage embedding added to its features, features pooled to
the stage's patch grid, and a 1x1 head. Colours are predicted on top of the patch's mean
residual, which is already a good first guess.

The image-adaptive quantizer (`StagedPredictor.step_factors`, after AIR's) reads the
features of the last stage, summarised over the image, and the quality, and scales the
policy's quantizer steps per attribute (`QUANT_ATTRIBUTES`) by a factor between 1/2 and 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

RAW = 8  # per candidate: dx, dy, log-scale x2, angle, colour x3
MIN_SCALE = 0.3  # pixels: the encoder's smallest axis
# what the image-adaptive quantizer scales (`gscodec.quant.policy.adapt`), and how many
# symbols of each a splat codes (its rate proxy in training: one bit per symbol per halving)
QUANT_ATTRIBUTES = ("position", "scale", "angle", "luma", "chroma")
SYMBOLS_PER_SPLAT = (2, 2, 1, 1, 2)


@dataclass(frozen=True)
class PredictorConfig:
    """The architecture; stored with the weights."""

    channels: int = 32
    blocks: int = 2
    stages: int = 4
    patch_sizes: tuple[int, ...] = (16, 8, 8, 4)

    def __post_init__(self) -> None:
        if len(self.patch_sizes) != self.stages or any(p % 4 or p & (p - 1) for p in self.patch_sizes):
            raise ValueError(f"one patch size per stage, powers of two >= 4: {self.patch_sizes}")


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class StagedPredictor(nn.Module):
    """[B, 3, H, W] image and residual (YCbCr, background removed) -> raw candidates per patch."""

    def __init__(self, config: PredictorConfig = PredictorConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(6 * 16, c, 1), nn.GELU(),
                                  nn.Conv2d(c, c, 3, padding=1))
        self.stage_embedding = nn.Embedding(config.stages, c)
        self.body = nn.Sequential(*(_Block(c) for _ in range(config.blocks)))
        self.head = nn.Sequential(nn.Conv2d(c + 3, c, 1), nn.GELU(), nn.Conv2d(c, RAW, 1))
        # image-adaptive quantizer: [feature mean, feature std, quality] -> log2 step factors
        self.quantizer = nn.Sequential(nn.Linear(2 * c + 1, c), nn.GELU(), nn.Linear(c, len(QUANT_ATTRIBUTES)))
        with torch.no_grad():  # start from "splat at the patch centre, half a patch wide, mean residual colour"
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()
            self.quantizer[-1].weight.zero_()  # and from the policy's steps
            self.quantizer[-1].bias.zero_()

    def forward(self, image: torch.Tensor, residual: torch.Tensor, stage: int):
        """Stage ``stage`` on [B, 3, H, W] inputs (H, W multiples of its patch P): raw candidates
        [B, 8, H / P, W / P], the patches' mean residual [B, 3, H / P, W / P] and a summary of the
        features [B, 2 * channels] (their mean and standard deviation over the image)."""
        p = self.config.patch_sizes[stage]
        x = self.stem(torch.cat([image, residual], 1))
        x = x + self.stage_embedding.weight[stage][None, :, None, None]
        x = self.body(x)
        summary = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
        x = F.avg_pool2d(x, p // 4) if p > 4 else x
        mean_residual = F.avg_pool2d(residual, p)
        return self.head(torch.cat([F.gelu(x), mean_residual], 1)), mean_residual, summary

    def step_factors(self, summary: torch.Tensor, quality: float) -> torch.Tensor:
        """[B, len(QUANT_ATTRIBUTES)] log2 factors in [-1, 1] for the quantizer steps of the
        images whose last stage gave ``summary``, at ``quality`` (0-100)."""
        t = torch.full((len(summary), 1), min(max(quality, 0.0), 100.0) / 100.0, dtype=summary.dtype)
        return torch.tanh(self.quantizer(torch.cat([summary, t], 1)))


def candidates(raw: torch.Tensor, mean_residual: torch.Tensor, patch: int):
    """Splat parameters from raw values [B, 8, R, C]: (means [B, R*C, 2], scales [B, R*C, 2],
    angles [B, R*C], colors [B, R*C, 3]); candidate k is patch (k // C, k % C), raster order."""
    b, _, rows, cols = raw.shape
    raw = raw.permute(0, 2, 3, 1).reshape(b, rows * cols, RAW)
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=raw.dtype), torch.arange(cols, dtype=raw.dtype),
                            indexing="ij")
    centre = (torch.stack([xs, ys], -1).reshape(1, -1, 2) + 0.5) * patch
    means = centre + patch * torch.tanh(raw[..., 0:2])
    scales = MIN_SCALE + 0.5 * patch * torch.exp(raw[..., 2:4].clamp(-6.0, 2.0))
    angles = math.pi * raw[..., 4]
    colors = mean_residual.permute(0, 2, 3, 1).reshape(b, rows * cols, 3) + raw[..., 5:8]
    return means, scales, angles, colors


def stage_control(error: torch.Tensor, patch: int, threshold: float, budget: int | None = None) -> torch.Tensor:
    """Which patches still need a splat: [B, R, C] bool, True where the mean of ``error``
    ([B, H, W], the squared RGB error of the current render) over the patch exceeds
    ``threshold``; with a ``budget``, at most that many per image, the worst patches first."""
    patch_error = F.avg_pool2d(error[:, None], patch)[:, 0]
    keep = patch_error > threshold
    if budget is not None and budget < keep[0].numel():
        flat = patch_error.flatten(1)
        worst = torch.zeros_like(flat, dtype=torch.bool)
        worst.scatter_(1, torch.topk(flat, max(budget, 0), dim=1).indices, True)
        keep &= worst.view_as(keep)
    return keep
