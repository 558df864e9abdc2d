"""CUDA backend of the rendering function (SPEC 7, `gscodec.render.backends`), through CuPy.

Same function as the CPU paths (bitstream/SPEC.md, section Rendering): per splat the
pixel box of `preprocess.footprint_sizes`, q evaluated in float32 in the CPU kernels' order,
inclusion q <= Q_CUT, float32 sums. The kernels live in the top-level ``cuda/`` folder,
one op per file, and are compiled at first use with ``cupy.RawModule`` (NVRTC; CuPy
caches the binaries on disk):

1. ``isect_tiles.cu``: tile binning. Per splat, the 16x16 tiles its box meets where
   q <= Q_CUT is possible (count, exclusive scan, fill keys ``tile << 32 | splat``),
   then a sort of the keys: every (tile, splat) pair is kept, no per-tile cap.
2. ``rasterize_fwd.cu``: one block per tile, one thread per pixel, splats summed in
   ascending index order (deterministic).
3. ``rasterize_bwd.cu``: per (tile, splat) block reductions into a buffer, then a
   per-splat sum: deterministic, no atomics.

Importing this module does not import CuPy; `has_cuda` probes without raising and
`cuda_status` says why CUDA is unavailable.
Tensors cross between torch and CuPy by DLPack (zero copy) and the kernels run on
torch's current stream.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch

from ..format.constants import Q_CUT_F32

log = logging.getLogger(__name__)

TILE = 16  # must match cuda/common.cuh
THREADS = 256  # threads per block of the per-splat kernels
QCUT_F32 = float(Q_CUT_F32)  # q <= QCUT_F32 in float32 is q <= Q_CUT (the numba kernels' test)


def has_cuda() -> bool:
    """Whether the CUDA backend can run: CuPy importable and a CUDA device visible to torch and
    CuPy. `cuda_status` says why not."""
    return cuda_status()[0]


@functools.cache
def cuda_status() -> tuple[bool, str]:
    """(available, reason): whether the CUDA backend can run and, when not, why (logged once)."""
    ok, reason = _probe()
    if not ok:
        log.info("CUDA backend unavailable: %s", reason)
    return ok, reason


def _probe() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA device (a CPU build, or no GPU or driver)"
    try:
        import cupy
    except ImportError as exc:
        return False, f"CuPy is not installed ({exc}): pip install gscodec[cuda]"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CuPy raises its own runtime errors; report them
        return False, f"CuPy cannot use CUDA: {type(exc).__name__}: {exc}"
    if count == 0:
        return False, "CuPy sees no CUDA device"
    return True, f"{count} CUDA device(s), CuPy {cupy.__version__}"


def source_dir() -> Path:
    """The folder of the .cu sources: ``gscodec/cuda`` in a wheel, ``<repo>/cuda`` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    candidates = (package / "cuda", package.parent / "cuda")
    for candidate in candidates:
        if (candidate / "rasterize_fwd.cu").is_file():
            return candidate
    raise FileNotFoundError(f"CUDA kernel sources not found in {candidates[0]} or {candidates[1]}")


KERNELS = ("isect_tiles", "rasterize_fwd", "rasterize_bwd")


def kernel_source(name: str) -> str:
    """The text of ``cuda/<name>.cu`` as NVRTC compiles it: ``common.cuh`` pasted in, not
    included (CuPy's disk cache is keyed on the source text, so a header change shows)."""
    folder = source_dir()
    code = (folder / f"{name}.cu").read_text()
    return code.replace('#include "common.cuh"', (folder / "common.cuh").read_text())


def compile_options(channels: int) -> tuple[str, ...]:
    return (f"-DCHANNELS={channels}",)


@functools.cache
def _module(name: str, channels: int):
    """``cuda/<name>.cu`` compiled for ``channels`` colour channels (a cupy.RawModule)."""
    import cupy

    return cupy.RawModule(code=kernel_source(name), options=compile_options(channels))


def _kernel(name: str, function: str, channels: int = 3):
    return _module(name, channels).get_function(function)


def _cp(t: torch.Tensor):
    """A CuPy view of a contiguous CUDA tensor (DLPack, no copy)."""
    import cupy

    return cupy.from_dlpack(t.contiguous())


def _launch(kernel, n_blocks: int, n_threads: int, *args) -> None:
    """Run ``kernel`` on torch's current stream of the first tensor's device.

    Tensors (contiguous, non-empty) become CuPy views, ints int32, floats float32.
    """
    if n_blocks == 0:
        return
    import cupy

    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), cupy.cuda.ExternalStream(stream.cuda_stream):
        conv = []  # DLPack exchange inside the stream context: no cross-stream synchronisation
        for a in args:
            if isinstance(a, torch.Tensor):
                conv.append(_cp(a))
            elif isinstance(a, float):
                conv.append(np.float32(a))
            else:
                conv.append(np.int32(a))
        kernel((n_blocks,), (n_threads,), tuple(conv))


def bin_tiles(means: torch.Tensor, conic: torch.Tensor, boxes: torch.Tensor, height: int, width: int):
    """(tile_start [T + 1] int32, tile_splats [M] int32, slot [M] int64, offsets [N + 1] int64).

    means [N, 2], conic [N, 3] float32, boxes [N, 4] int32 (x0, y0, nx, ny) on one CUDA device.
    Tile t holds splats tile_splats[tile_start[t]:tile_start[t + 1]] (ascending); the entry i of
    that list is the pair number slot[i] of the splat-major order, where splat k's pairs are
    offsets[k]..offsets[k + 1] (the backward pass reduces in that order).
    """
    n, dev = len(means), means.device
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    counts = torch.empty(n, dtype=torch.int32, device=dev)
    blocks = -(-n // THREADS)
    _launch(_kernel("isect_tiles", "isect_count"), blocks, THREADS, means, conic, boxes, n, QCUT_F32, counts)
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    offsets[1:] = torch.cumsum(counts, 0)
    m = int(offsets[-1])  # one host sync: the size of the pair list
    if m >= 2**31:
        raise ValueError(f"{m} (tile, splat) pairs exceed the CUDA renderer's limit of 2^31")
    keys = torch.empty(m, dtype=torch.int64, device=dev)
    _launch(_kernel("isect_tiles", "isect_fill"), blocks if m else 0, THREADS, means, conic, boxes, n, QCUT_F32,
            tiles_x, offsets, keys)
    keys, slot = torch.sort(keys)  # keys are distinct: the order is unique
    tile_splats = (keys & 0xFFFFFFFF).to(torch.int32)
    tiles = torch.arange(tiles_x * tiles_y + 1, dtype=torch.int64, device=dev)
    tile_start = torch.searchsorted(keys >> 32, tiles).to(torch.int32)
    return tile_start, tile_splats, slot, offsets


class CudaRasterize(torch.autograd.Function):
    """Sum of Gaussians at pixel centres on the GPU: the inputs of `backends._NumbaRasterize`.

    forward(means [N, 2], conic [N, 3], colors [N, C], boxes (x0, y0, nx, ny) each [N] int,
    height, width) -> [H * W, C] float32, all on one CUDA device. Backward gives means,
    conic and colors gradients (float32).
    """

    @staticmethod
    def forward(ctx, means, conic, colors, boxes, height, width):
        ctx.dtypes = (means.dtype, conic.dtype, colors.dtype)
        means, conic, colors = (t.detach().to(torch.float32).contiguous() for t in (means, conic, colors))
        boxes = torch.stack([b.to(device=means.device, dtype=torch.int32) for b in boxes], 1).contiguous()
        n, channels = colors.shape
        ctx.shape = (height, width, n, channels)
        out = torch.zeros(height * width, channels, dtype=torch.float32, device=means.device)
        bins = bin_tiles(means, conic, boxes, height, width) if n and channels else None
        ctx.has_pairs = bins is not None and len(bins[1]) > 0
        if ctx.has_pairs:
            tile_start, tile_splats, slot, offsets = bins
            _launch(_kernel("rasterize_fwd", "rasterize_fwd", channels), len(tile_start) - 1, TILE * TILE,
                    means, conic, colors, boxes, tile_start, tile_splats, height, width, -(-width // TILE),
                    QCUT_F32, out)
            ctx.save_for_backward(means, conic, colors, boxes, tile_start, tile_splats, slot, offsets)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        height, width, n, channels = ctx.shape
        dev = grad_out.device
        g_means = torch.zeros(n, 2, dtype=torch.float32, device=dev)
        g_conic = torch.zeros(n, 3, dtype=torch.float32, device=dev)
        g_colors = torch.zeros(n, channels, dtype=torch.float32, device=dev)
        if ctx.has_pairs:
            means, conic, colors, boxes, tile_start, tile_splats, slot, offsets = ctx.saved_tensors
            grad = grad_out.to(torch.float32).contiguous()
            partial = torch.empty(len(slot), 5 + channels, dtype=torch.float32, device=dev)
            _launch(_kernel("rasterize_bwd", "rasterize_bwd", channels), len(tile_start) - 1, TILE * TILE,
                    means, conic, colors, boxes, tile_start, tile_splats, slot, height, width, -(-width // TILE),
                    QCUT_F32, grad, partial)
            _launch(_kernel("rasterize_bwd", "rasterize_bwd_reduce", channels), -(-n // THREADS), THREADS,
                    offsets, partial, n, g_means, g_conic, g_colors)
        grads = (g.to(dt) for g, dt in zip((g_means, g_conic, g_colors), ctx.dtypes, strict=True))
        return *grads, None, None, None


def rasterize(means, conic, colors, boxes, height: int, width: int) -> torch.Tensor:
    """`CudaRasterize.apply`: [H * W, C] from means [N, 2], conic [N, 3], colors [N, C], boxes."""
    return CudaRasterize.apply(means, conic, colors, boxes, height, width)

