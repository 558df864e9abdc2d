"""Embeddings of splat streams (after GaussianVision, arXiv 2509.22615): `embed` reads a
.gsc stream's splats, never its pixels, and returns a vector in the space of an RGB model's
image embeddings.

Modules: `api` (the public functions), `tokens` (a splat's features), `network` (the
splat stem: Perceiver resampler into a ViT), `vit` (the ViT in CLIP's layout), `clip`
(reading a user's local CLIP checkpoint; text through open_clip), `model` (weights,
SHA-256). Needs torch.

Named ``embedding``, not ``embed``: a subpackage named like the public function
`gscodec.embed` would replace it as an attribute of gscodec once imported.
"""

from .api import embed, embed_pixels, embed_text

__all__ = ["embed", "embed_pixels", "embed_text"]
