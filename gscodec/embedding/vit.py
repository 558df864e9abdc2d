"""A ViT image tower in the layout of CLIP's (OpenAI's and open_clip's ``visual.*`` keys).

Parameter names follow CLIP's state dicts (``conv1``, ``class_embedding``,
``positional_embedding``, ``ln_pre``, ``transformer.resblocks.{i}.{ln_1, attn, ln_2,
mlp.c_fc, mlp.c_proj}``, ``ln_post``, ``proj``), so a CLIP checkpoint's visual tower
loads as it is (`gscodec.embedding.clip`) and the teacher trained here is the same module.

Two entries share the blocks:
- `embed_pixels`: the RGB path (a conv patch stem and a grid position embedding), what a
  teacher sees;
- `embed_tokens`: any [B, T, width] tokens, e.g. the splat stem's resampled latents. They
  get no position embedding (the resampler's latents are learned queries and carry their
  own identity; `patch_tokens` is the RGB path's tokens with theirs); the class token gets
  its usual one.

Both end like CLIP: layer norm of the class token, then the projection to ``output_dim``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# CLIP's pixel normalisation (RGB in [0, 1]); the teacher trained here uses it too
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VitConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    patch_size: int = 16
    image_size: int = 224
    output_dim: int = 512
    mlp_ratio: float = 4.0
    quick_gelu: bool = False  # OpenAI's CLIP weights were trained with x * sigmoid(1.702 x)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def prepare_pixels(rgb: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> [B, 3, size, size], resized whole (antialiased, the aspect
    not kept: every pixel of the view counts) and normalised as CLIP's were."""
    x = F.interpolate(rgb, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(PIXEL_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / torch.tensor(PIXEL_STD, dtype=x.dtype).view(1, 3, 1, 1)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm attention and MLP, CLIP's names."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, config: VitConfig) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(config.width, config.heads, config.mlp_ratio, config.quick_gelu)
            for _ in range(config.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    """CLIP's visual tower; `embed_pixels` for images, `embed_tokens` for other token sets."""

    def __init__(self, config: VitConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        scale = w ** -0.5
        self.conv1 = nn.Conv2d(3, w, config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(config.grid ** 2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(config)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, config.output_dim))

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] normalised pixels (S = image_size) -> [B, grid², width]: the patch
        embeddings with their position embedding, what the blocks read after the class token."""
        return self.conv1(images).flatten(2).transpose(1, 2) + self.positional_embedding[1:]

    def embed_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] normalised pixels -> [B, output_dim]."""
        return self.embed_tokens(self.patch_tokens(images))

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, width] tokens (any T) -> [B, output_dim]."""
        cls = (self.class_embedding + self.positional_embedding[0]).expand(x.shape[0], 1, -1)
        x = self.transformer(self.ln_pre(torch.cat([cls.to(x.dtype), x], dim=1)))
        return self.ln_post(x[:, 0]) @ self.proj
