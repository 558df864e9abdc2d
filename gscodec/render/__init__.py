"""Renderers of the splat model (bitstream/SPEC.md, section 7).

- `backends.render_splats`: the one differentiable entry (torch tensors), with the
  torch reference, the numba CPU kernels and the CUDA kernels behind it;
- `numba.decode.render_rgb`: the decoder's fused CPU path, splats straight to uint8
  RGB, with no torch at all;
- `cuda.has_cuda`: whether the CUDA backend can run, and why not.

Importing this package imports neither torch nor numba; each module loads what it uses.
"""
