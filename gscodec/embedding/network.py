"""The splat encoder (after GaussianVision, arXiv 2509.22615): splats -> one embedding.

    splat features [B, N, FEATURES] --linear or MLP--> tokens [B, N, d]   (+ one background token)
    learned latents [M, d] --Perceiver resampler (cross-attention to tokens and latents,
    then an MLP; ``resampler_layers`` times)--> [B, M, d] --norm, linear--> [B, M, width]
    --> a ViT's blocks with a class token (`VisionTransformer.embed_tokens`) --> [B, D]

The ViT is an RGB model's (a CLIP checkpoint's visual tower, or the teacher trained here),
so the stem learns to speak its input language; stage 1 of training trains the stem alone
on the teacher's embeddings (the ViT frozen), stage 2 also unfreezes the first blocks and
the projection (`trainable`).

Locality (``locality=True``, an addition of ours): with M = g x g latents, latent m stands for
the cell of a g x g grid over the image (row-major, as a ViT's patches), and each head's
cross-attention logits get a bias -r_h d^2, d the distance in cells from a splat's centre to
the cell's centre, r_h learned per head and layer (initialised from sharp to wide). A latent
thus starts out reading the splats over its own patch, as the RGB stem does, instead of
having to find them through the position features (measured: bench/README.md, embeddings).

Footprints (``footprint_grid`` G > 0, an addition of ours): each splat's token, mapped to a few
channels, is also splatted onto a G x G grid by the splat's own Gaussian (`tokens.footprints`:
with colours for the channels this is the stream's decode at G x G), and each latent starts
from its (G / g)^2 cells (a linear map, initialised to zero, so a model trained without them
starts out unchanged). The resampler's attention picks splats; the footprints say which
pixels each covers and how much, which attention alone does not see (measured: bench/README.md,
embeddings).

Invariance: nothing sees the splats' order (the tokens carry no index; attention sums over
them), so a permutation changes the output by float rounding only. Cost: the cross-attention
is O(M x N) per layer (M latents, N splats) and everything else O(N) or independent of N,
so 100,000 splats cost ~100 MB of attention scores at M = 64 (the locality bias adds four
numbers per splat and head, not a tensor of the scores' size), and one splat works too. The
footprints add a G x G grid of a few channels per stream and (splat, cell) weights made in
bounded chunks (`tokens.MAX_PAIRS`).
Padding (`mask`, True = padded) lets a batch hold streams of different sizes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .tokens import FEATURES, Footprint, splat_onto_grid
from .vit import VisionTransformer, VitConfig


@dataclass(frozen=True)
class EmbedConfig:
    stem_dim: int = 128
    latents: int = 64
    resampler_layers: int = 2
    resampler_heads: int = 4
    locality: bool = False  # False: the models trained before the bias existed
    token_mlp: bool = False  # a splat's token from its features by an MLP, not a linear map (same)
    footprint_grid: int = 0  # G; 0: no footprints (the models trained before they existed)
    footprint_dim: int = 8  # channels splatted per cell
    vit: VitConfig = field(default_factory=VitConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EmbedConfig:
        return cls(**{**data, "vit": VitConfig(**data["vit"])})


class ResamplerLayer(nn.Module):
    """Latents attend to the tokens and to themselves (Flamingo's Perceiver resampler)."""

    def __init__(self, dim: int, heads: int, locality: bool) -> None:
        super().__init__()
        # per head, log r of the locality bias -r d^2: r from 1 (a cell's neighbours at -1) to 0.03
        self.reach = nn.Parameter(torch.linspace(0.0, math.log(0.03), heads)) if locality else None
        self.norm_latents = nn.LayerNorm(dim)
        self.norm_tokens = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor | None,
                places: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``places``: the locality bias's terms (`SplatEncoder.places`), for a layer that has one."""
        q_in = self.norm_latents(latents)
        kv = torch.cat([self.norm_tokens(tokens), q_in], 1)
        B, M, T, H = q_in.shape[0], q_in.shape[1], tokens.shape[1], self.attn.num_heads
        E = q_in.shape[2] // H
        # nn.MultiheadAttention's own weights, applied here so that the bias can ride in the
        # dot products: -r d^2 = r (2 c.u - |u|^2 - |c|^2) is the product of [2c, -1, -|c|^2]
        # (per latent, times r) and [u, |u|^2, 1] (per splat; zeros where there is no place),
        # so no [B, heads, M, T] bias is ever made
        w_q, w_k, w_v = self.attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.attn.in_proj_bias.chunk(3)

        def split(x: torch.Tensor) -> torch.Tensor:  # [B, L, H * E] -> [B, H, L, E]
            return x.unflatten(2, (H, E)).transpose(1, 2)

        q = split(F.linear(q_in, w_q, b_q)) * E ** -0.5
        k, v = split(F.linear(kv, w_k, b_k)), split(F.linear(kv, w_v, b_v))
        if places is not None and self.reach is not None:
            keys, queries = places  # [B, T, 4], [M, 4]
            q = torch.cat([q, (self.reach.exp()[:, None, None] * queries).expand(B, H, M, 4)], 3)
            keys = torch.cat([keys, keys.new_zeros(B, M, 4)], 1)  # the latents have no place
            k = torch.cat([k, keys[:, None].expand(B, H, T + M, 4)], 3)
            v = F.pad(v, (0, 4))  # equal sizes keep torch's fused attention kernel (measured 1.3x faster)
        attend = None if pad is None else ~torch.cat([pad, pad.new_zeros(B, M)], 1)[:, None, None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, scale=1.0)[..., :E]
        latents = latents + self.attn.out_proj(out.transpose(1, 2).flatten(2))
        return latents + self.mlp(self.norm_mlp(latents))


class SplatEncoder(nn.Module):
    """Splat features -> embedding through a Perceiver stem and a ViT's blocks."""

    def __init__(self, config: EmbedConfig) -> None:
        super().__init__()
        self.config = config
        d = config.stem_dim
        # an MLP lets a token mix a splat's colour with its shape and place (a pixel patch's
        # embedding sees colour times footprint); a linear map only adds them
        self.token = (nn.Sequential(nn.Linear(FEATURES, d), nn.GELU(), nn.Linear(d, d)) if config.token_mlp
                      else nn.Linear(FEATURES, d))
        self.background = nn.Linear(3, d)
        self.latents = nn.Parameter(0.02 * torch.randn(config.latents, d))
        self.resampler = nn.ModuleList(ResamplerLayer(d, config.resampler_heads, config.locality)
                                       for _ in range(config.resampler_layers))
        self.grid = math.isqrt(config.latents)
        if config.locality and self.grid ** 2 != config.latents:
            raise ValueError(f"a locality bias needs a square number of latents, not {config.latents}")
        G = config.footprint_grid
        if G and (self.grid ** 2 != config.latents or G % self.grid):
            raise ValueError(f"a footprint grid needs a square number of latents g^2 with g dividing {G}")
        if G:
            self.to_footprint = nn.Linear(d, config.footprint_dim)
            self.from_grid = nn.Linear((G // self.grid) ** 2 * config.footprint_dim, d)
            nn.init.zeros_(self.from_grid.weight)
            nn.init.zeros_(self.from_grid.bias)
        self.to_vit = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.vit.width))
        self.vit = VisionTransformer(config.vit)

    def stem(self, features: torch.Tensor, background: torch.Tensor, pad: torch.Tensor | None = None,
             footprints: Sequence[Iterable[Footprint]] | None = None) -> torch.Tensor:
        """[B, N, FEATURES], [B, 3], [B, N] (True = padding) -> [B, M, width] tokens for the ViT.
        ``footprints``: a model with a footprint grid needs the splats' (per stream, the chunks
        of `tokens.footprints`)."""
        splat_tokens = self.token(features)
        tokens = torch.cat([splat_tokens, self.background(background)[:, None]], 1)
        if pad is not None:
            pad = torch.cat([pad, pad.new_zeros(pad.shape[0], 1)], 1)
        latents = self.latents.expand(features.shape[0], -1, -1)
        if self.config.footprint_grid:
            if footprints is None:
                raise ValueError("this model reads the splats' footprints too (tokens.footprints)")
            latents = latents + self.splatted(splat_tokens, footprints)
        places = self.places(features) if self.config.locality else None
        for layer in self.resampler:
            latents = layer(latents, tokens, pad, places)
        return self.to_vit(latents)

    def splatted(self, tokens: torch.Tensor, footprints: Sequence[Iterable[Footprint]]) -> torch.Tensor:
        """[B, N, d] splat tokens -> [B, M, d]: their channels splatted onto the G x G grid, each
        latent reading its (G / g)^2 cells."""
        B = tokens.shape[0]
        G, g, c = self.config.footprint_grid, self.grid, self.config.footprint_dim
        k = G // g
        channels = self.to_footprint(tokens)
        cells = torch.stack([splat_onto_grid(channels[b], footprints[b], G) for b in range(B)])  # [B, G G, c]
        cells = cells.reshape(B, g, k, g, k, c).permute(0, 1, 3, 2, 4, 5).reshape(B, g * g, k * k * c)
        return self.from_grid(cells)

    def places(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The locality bias's terms: per token [u, |u|^2, 1] ([B, N + 1, 4]; zeros for the
        background token) and per latent [2c, -1, -|c|^2] ([M, 4]), u a splat's centre (the
        features' first two entries, x / W - 0.5 and y / H - 0.5) and c a latent's cell centre,
        both in cells, so that their product is minus the squared distance."""
        g = self.grid
        centres = ((torch.arange(g, dtype=features.dtype) + 0.5) / g - 0.5) * g
        c = torch.stack(torch.meshgrid(centres, centres, indexing="ij")[::-1], -1).reshape(-1, 2)  # (x, y)
        u = features[..., :2] * g
        keys = torch.cat([u, (u * u).sum(-1, keepdim=True), torch.ones_like(u[..., :1])], -1)
        keys = torch.cat([keys, keys.new_zeros(keys.shape[0], 1, 4)], 1)
        queries = torch.cat([2 * c, -torch.ones_like(c[:, :1]), -(c * c).sum(-1, keepdim=True)], -1)
        return keys, queries

    def forward(self, features: torch.Tensor, background: torch.Tensor, pad: torch.Tensor | None = None,
                footprints: Sequence[Iterable[Footprint]] | None = None) -> torch.Tensor:
        """-> [B, output_dim] embeddings (not normalised)."""
        return self.vit.embed_tokens(self.stem(features, background, pad, footprints))

    def trainable(self, stage: int) -> list[nn.Parameter]:
        """Stage 1: the stem. Stage 2: the stem, the first two blocks and the projection."""
        vit = self.vit
        self.requires_grad_(False)
        parts: list[nn.Module | nn.Parameter] = [self.token, self.background, self.latents, self.resampler,
                                                 self.to_vit]
        if self.config.footprint_grid:
            parts += [self.to_footprint, self.from_grid]
        if stage == 2:
            parts += [*vit.transformer.resblocks[:2], vit.ln_post, vit.proj]
        params = []
        for part in parts:
            for p in ([part] if isinstance(part, nn.Parameter) else part.parameters()):
                p.requires_grad_(True)
                params.append(p)
        return params
