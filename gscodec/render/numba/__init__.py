"""Compiled CPU renderers (numba): the encoder's forward/backward kernels and the decoder's
fused uint8 path, on shared machinery (bands of rows, vector lanes, a thread pool)."""
