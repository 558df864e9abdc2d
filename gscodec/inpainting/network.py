"""The inpainting network (after arXiv 2509.01964): splats for the patches around a hole.

Input, per pixel of the window around the hole ([B, IN_CHANNELS, H, W], YCbCr with the
stream's background removed, zero outside the image): the decoded image with the hole
zeroed, the residual the kept splats leave (decoded - render of kept splats, zero in the
hole), the hole, the region the removed splats covered, and a map of the pixels inside
the image. Output, per patch of side ``patch`` (4, 8 or 16: the stream's density), one
candidate splat through the predictor's head parametrisation
(`gscodec.predictor.network.candidates`: centre within a patch of the patch centre,
scales, angle, colour on top of the patch's mean known residual).

- Encoder: a small U-Net (stride 4, 8, 16 and back to 4, skip connections), residual
  blocks with AdaLN: each block normalises its input over the channels, then scales and
  shifts it and gates its output by values a linear map computes from a global feature
  vector (``x + gate * f((1 + scale) * norm(x) + shift)``; the map starts at zero scale
  and shift and gate 1, so an untrained conditioning changes nothing).
- Global features: a feature extractor (`SmallExtractor`, trained here from scratch and
  shipped with the model, or a user's local DINOv2 checkpoint through timm,
  `TimmExtractor`) reads the masked image; a small MLP (`aligner`) maps its vector towards
  the vector of the clean image (the alignment loss of the paper, in training).
- Overlap: every splat is rendered over the whole image (the codec's renderer sums all
  splats, there is no per-patch rasterisation), centres may move up to one patch off their
  patch centre and supports span several patches, so neighbouring patches' splats overlap
  and training on the rendered sum makes them blend: no patch border is drawn anywhere.
  Large windows run in overlapping tiles (`trunk_tiled`) whose margins cover the trunk's
  receptive field, so tiles give the features of a single pass.

Norms act per pixel (over channels only), so features do not depend on the window size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..predictor.network import RAW

IN_CHANNELS = 9  # known image (3), known residual (3), hole, region, inside
PATCH_SIZES = (4, 8, 16)
ALIGN = 16  # windows and tiles start on multiples of this (the coarsest stride and patch)


@dataclass(frozen=True)
class InpaintConfig:
    """The architecture; stored with the weights."""

    channels: int = 32
    blocks: int = 2  # AdaLN blocks per level of the U-Net
    feature_dim: int = 64  # the global feature vector (the extractor's output)
    extractor: str = "small"  # "small" or "timm:<timm model name>"
    extractor_size: int = 64  # side of the image the extractor reads
    extractor_kwargs: dict = field(default_factory=dict)  # timm.create_model overrides (tests' tiny ViTs)
    extractor_sha256: str = ""  # a timm checkpoint's SHA-256 (the file itself is the user's)

    def __post_init__(self) -> None:
        if self.extractor != "small" and not self.extractor.startswith("timm:"):
            raise ValueError(f"extractor must be 'small' or 'timm:<model>', got {self.extractor!r}")


def channel_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise [B, C, H, W] over C at every pixel (a layer norm of each pixel's features)."""
    mean = x.mean(1, keepdim=True)
    var = (x - mean).square().mean(1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


class AdaBlock(nn.Module):
    """Residual block conditioned by AdaLN: x + gate * conv(gelu(conv((1 + scale) * norm(x) + shift)))."""

    def __init__(self, c: int, cond: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.modulation = nn.Linear(cond, 3 * c)
        with torch.no_grad():  # scale 0, shift 0, gate 1: a plain residual block until trained
            self.modulation.weight.zero_()
            self.modulation.bias.zero_()
            self.modulation.bias[2 * c:] = 1.0

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift, gate = self.modulation(F.silu(cond))[..., None, None].chunk(3, 1)
        h = channel_norm(x) * (1 + scale) + shift
        return x + gate * self.conv2(F.gelu(self.conv1(h)))


class SmallExtractor(nn.Module):
    """[B, 3, S, S] RGB in [0, 1] (hole zeroed) and [B, 1, S, S] hole -> [B, dim]: four stride-2
    convolutions and a mean; trained with the rest (a from-scratch stand-in for DINOv2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        widths = (4, 16, 32, 64, 64)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(widths[-1], dim)

    def forward(self, rgb: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([rgb - 0.5, hole], 1)).mean((2, 3)))


class TimmExtractor(nn.Module):
    """A frozen timm ViT (a DINOv2 checkpoint of the user's) as the feature extractor: the masked
    RGB image, ImageNet-normalised with the hole at the mean, resized to ``size``; its pooled
    output (the class token for DINOv2). Built by `gscodec.inpainting.model.load_timm_extractor`."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> TimmExtractor:  # always frozen, always eval
        return self

    def forward(self, rgb: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.MEAN, dtype=rgb.dtype)[:, None, None]
        std = torch.tensor(self.STD, dtype=rgb.dtype)[:, None, None]
        with torch.no_grad():
            return self.vit((rgb - mean) / std * (1 - hole))


class InpaintNet(nn.Module):
    """The whole model: extractor, aligner, U-Net trunk with AdaLN, per-patch head."""

    def __init__(self, config: InpaintConfig = InpaintConfig(), extractor: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        c, d = config.channels, config.feature_dim
        if extractor is None:
            if config.extractor != "small":
                raise ValueError(f"the {config.extractor} extractor must be given (load it from its checkpoint)")
            extractor = SmallExtractor(d)
        self.extractor = extractor
        self.aligner = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        with torch.no_grad():  # starts as the identity map (plus nothing)
            self.aligner[-1].weight.mul_(0.1)
            self.aligner[-1].bias.zero_()
        self.stem = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(IN_CHANNELS * 16, c, 1), nn.GELU(),
                                  nn.Conv2d(c, c, 3, padding=1))
        n = config.blocks
        self.enc0 = nn.ModuleList(AdaBlock(c, d) for _ in range(n))
        self.down1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.enc1 = nn.ModuleList(AdaBlock(2 * c, d) for _ in range(n))
        self.down2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)
        self.mid = nn.ModuleList(AdaBlock(2 * c, d) for _ in range(n))
        self.up2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.dec1 = AdaBlock(2 * c, d)
        self.up1 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.dec0 = AdaBlock(c, d)
        self.patch_embedding = nn.Embedding(len(PATCH_SIZES), c)
        nn.init.zeros_(self.patch_embedding.weight)
        self.head = nn.Sequential(nn.Conv2d(c + 3, c, 1), nn.GELU(), nn.Conv2d(c, RAW, 1))
        with torch.no_grad():  # start from "splat at the patch centre, half a patch wide, mean residual colour"
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()

    def global_vector(self, rgb: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """[B, feature_dim] extractor output for [B, 3, h, w] RGB in [0, 1] (hole zeroed) and
        [B, 1, h, w] hole, read at ``extractor_size`` (area-resampled)."""
        s = self.config.extractor_size
        rgb = F.interpolate(rgb, size=(s, s), mode="area")
        hole = F.interpolate(hole, size=(s, s), mode="area")
        return self.extractor(rgb, hole)

    def align(self, features: torch.Tensor) -> torch.Tensor:
        """The masked image's vector mapped towards the clean image's (residual MLP)."""
        return features + self.aligner(features)

    def trunk(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """[B, IN_CHANNELS, H, W] (H, W multiples of 16) and [B, feature_dim] -> [B, C, H/4, W/4]."""
        x0 = self.stem(inputs)
        for block in self.enc0:
            x0 = block(x0, cond)
        x1 = self.down1(F.gelu(x0))
        for block in self.enc1:
            x1 = block(x1, cond)
        x2 = self.down2(F.gelu(x1))
        for block in self.mid:
            x2 = block(x2, cond)
        y1 = self.dec1(x1 + self.up2(F.interpolate(F.gelu(x2), scale_factor=2.0, mode="nearest")), cond)
        return self.dec0(x0 + self.up1(F.interpolate(F.gelu(y1), scale_factor=2.0, mode="nearest")), cond)

    def heads(self, features: torch.Tensor, inputs: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw candidates [B, RAW, H/p, W/p] and each patch's mean known residual [B, 3, H/p, W/p]
        (the colour the head adds to) from trunk ``features`` at patch side ``patch``."""
        if patch not in PATCH_SIZES:
            raise ValueError(f"patch must be one of {PATCH_SIZES}, got {patch}")
        x = F.avg_pool2d(features, patch // 4) if patch > 4 else features
        x = x + self.patch_embedding.weight[PATCH_SIZES.index(patch)][None, :, None, None]
        known = (1 - inputs[:, 6:7]) * inputs[:, 8:9]
        base = F.avg_pool2d(inputs[:, 3:6] * known, patch) / F.avg_pool2d(known, patch).clamp(min=1e-3)
        return self.head(torch.cat([F.gelu(x), base], 1)), base

    def forward(self, inputs: torch.Tensor, cond: torch.Tensor, patch: int):
        return self.heads(self.trunk(inputs, cond), inputs, patch)


def receptive_radius(config: InpaintConfig) -> int:
    """How far (input pixels) a trunk feature can see, bounded from above: each 3x3
    convolution at stride s adds s, each nearest upsampling from stride s up to s, the
    stem's unshuffle 3 pixels (measured reach: 115 and 179 pixels for 1 and 2 blocks;
    this gives 135 and 191)."""
    n = config.blocks
    at4 = 4 * (1 + 2 * n + 1 + 2 + 1)  # stem conv, enc0, down1 (reads stride 4), dec0, up1
    at8 = 8 * (2 * n + 1 + 2 + 1 + 1)  # enc1, down2 (reads stride 8), dec1, up2, upsampling to stride 4
    at16 = 16 * (2 * n + 1)  # mid, upsampling to stride 8
    return 3 + at4 + at8 + at16


def trunk_tiled(model: InpaintNet, inputs: torch.Tensor, cond: torch.Tensor, tile: int) -> torch.Tensor:
    """`InpaintNet.trunk` on a large [1, C, H, W] window, in tiles of ``tile`` pixels (a multiple
    of 16) with a margin of the receptive field: the same features as one pass, in less memory."""
    _, _, h, w = inputs.shape
    if h <= tile and w <= tile:
        return model.trunk(inputs, cond)
    halo = math.ceil(receptive_radius(model.config) / ALIGN) * ALIGN
    out = inputs.new_zeros(1, model.config.channels, h // 4, w // 4)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0 = max(0, y - halo), max(0, x - halo)
            y1, x1 = min(h, y + tile + halo), min(w, x + tile + halo)
            f = model.trunk(inputs[:, :, y0:y1, x0:x1], cond)
            ty, tx = min(tile, h - y), min(tile, w - x)
            out[:, :, y // 4:(y + ty) // 4, x // 4:(x + tx) // 4] = \
                f[:, :, (y - y0) // 4:(y - y0 + ty) // 4, (x - x0) // 4:(x - x0 + tx) // 4]
    return out
