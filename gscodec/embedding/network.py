"""The splat encoder (after GaussianVision, arXiv 2509.22615): splats -> one embedding.

    splat features [B, N, FEATURES] --linear--> tokens [B, N, d]   (+ one background token)
    learned latents [M, d] --Perceiver resampler (cross-attention to tokens and latents,
    then an MLP; ``resampler_layers`` times)--> [B, M, d] --norm, linear--> [B, M, width]
    --> a ViT's blocks with a class token (`VisionTransformer.embed_tokens`) --> [B, D]

The ViT is an RGB model's (a CLIP checkpoint's visual tower, or the teacher trained here),
so the stem learns to speak its input language; stage 1 of training trains the stem alone
on the teacher's embeddings (the ViT frozen), stage 2 also unfreezes the first blocks and
the projection (`trainable`).

Invariance: nothing sees the splats' order (the tokens carry no index; attention sums over
them), so a permutation changes the output by float rounding only. Cost: the cross-attention
is O(M x N) per layer (M latents, N splats) and everything else O(N) or independent of N,
so 100,000 splats cost ~100 MB of attention scores at M = 64, and one splat works too.
Padding (`mask`, True = padded) lets a batch hold streams of different sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .tokens import FEATURES
from .vit import VisionTransformer, VitConfig


@dataclass(frozen=True)
class EmbedConfig:
    stem_dim: int = 128
    latents: int = 64
    resampler_layers: int = 2
    resampler_heads: int = 4
    vit: VitConfig = field(default_factory=VitConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EmbedConfig:
        return cls(**{**data, "vit": VitConfig(**data["vit"])})


class ResamplerLayer(nn.Module):
    """Latents attend to the tokens and to themselves (Flamingo's Perceiver resampler)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_latents = nn.LayerNorm(dim)
        self.norm_tokens = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        q = self.norm_latents(latents)
        kv = torch.cat([self.norm_tokens(tokens), q], 1)
        if pad is not None:
            pad = torch.cat([pad, pad.new_zeros(pad.shape[0], q.shape[1])], 1)
        latents = latents + self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]
        return latents + self.mlp(self.norm_mlp(latents))


class SplatEncoder(nn.Module):
    """Splat features -> embedding through a Perceiver stem and a ViT's blocks."""

    def __init__(self, config: EmbedConfig) -> None:
        super().__init__()
        self.config = config
        d = config.stem_dim
        self.token = nn.Linear(FEATURES, d)
        self.background = nn.Linear(3, d)
        self.latents = nn.Parameter(0.02 * torch.randn(config.latents, d))
        self.resampler = nn.ModuleList(ResamplerLayer(d, config.resampler_heads)
                                       for _ in range(config.resampler_layers))
        self.to_vit = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.vit.width))
        self.vit = VisionTransformer(config.vit)

    def stem(self, features: torch.Tensor, background: torch.Tensor, pad: torch.Tensor | None = None
             ) -> torch.Tensor:
        """[B, N, FEATURES], [B, 3], [B, N] (True = padding) -> [B, M, width] tokens for the ViT."""
        tokens = torch.cat([self.token(features), self.background(background)[:, None]], 1)
        if pad is not None:
            pad = torch.cat([pad, pad.new_zeros(pad.shape[0], 1)], 1)
        latents = self.latents.expand(features.shape[0], -1, -1)
        for layer in self.resampler:
            latents = layer(latents, tokens, pad)
        return self.to_vit(latents)

    def forward(self, features: torch.Tensor, background: torch.Tensor, pad: torch.Tensor | None = None
                ) -> torch.Tensor:
        """-> [B, output_dim] embeddings (not normalised)."""
        return self.vit.embed_tokens(self.stem(features, background, pad))

    def trainable(self, stage: int) -> list[nn.Parameter]:
        """Stage 1: the stem. Stage 2: the stem, the first two blocks and the projection."""
        vit = self.vit
        self.requires_grad_(False)
        parts: list[nn.Module | nn.Parameter] = [self.token, self.background, self.latents, self.resampler,
                                                 self.to_vit]
        if stage == 2:
            parts += [*vit.transformer.resblocks[:2], vit.ln_post, vit.proj]
        params = []
        for part in parts:
            for p in ([part] if isinstance(part, nn.Parameter) else part.parameters()):
                p.requires_grad_(True)
                params.append(p)
        return params
