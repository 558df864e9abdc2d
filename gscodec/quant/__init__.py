"""The quantizer: policy (quality -> steps), fitting a layer's parameters to an image,
quantizing splats to symbols, and `encode_splats` (a splat set -> .gsc bytes)."""
