"""Inpainting on splat streams (after arXiv 2509.01964): `inpaint` fills a hole with new
splats and keeps every splat away from it unchanged.

Modules: `fill` (the public function), `network` (the model: U-Net with AdaLN on a global
feature vector, per-patch splat heads), `problem` (what the network sees, shared with
training), `masks` (reading a user's mask, drawing random ones), `model` (weights,
SHA-256, the DINOv2 extractor through timm). Needs torch.

Named ``inpainting``, not ``inpaint``: a subpackage named like the public function
`gscodec.inpaint` would replace it as an attribute of gscodec once imported.
"""

from .fill import inpaint, inpaint_stream

__all__ = ["inpaint", "inpaint_stream"]
