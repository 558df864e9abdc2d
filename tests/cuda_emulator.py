"""The CUDA kernels of cuda/ on the CPU: the very source text CuPy compiles
(`gscodec.render.cuda.kernel_source`), built with g++ against tests/cuda_emulator.h.

`install(monkeypatch)` routes `gscodec.render_cuda`'s kernel launches to the emulation,
so `render_splats(..., backend="cuda")` runs its whole CUDA path (binning, forward,
backward, the autograd op) on CPU tensors. Slow (a fiber per CUDA thread, on one
core): for small test images only.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gscodec.render import cuda as render_cuda

HEADER = Path(__file__).with_name("cuda_emulator.h")
_KERNEL = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)')
_CTYPES = {"int": ctypes.c_int, "float": ctypes.c_float, "long long": ctypes.c_longlong}


def available() -> bool:
    return shutil.which("g++") is not None


def _params(text: str) -> list[tuple[str, str]]:
    """[(type, name)] of a kernel's parameter list."""
    out = []
    for param in " ".join(text.split()).split(","):
        kind, name = param.strip().rsplit(" ", 1)
        while name.startswith("*"):
            kind, name = kind + "*", name[1:]
        out.append((kind.replace(" *", "*"), name))
    return out


@functools.cache
def _library(name: str, channels: int) -> tuple[ctypes.CDLL, dict[str, list[tuple[str, str]]]]:
    """cuda/<name>.cu built for the CPU, with an ``emu_<kernel>(grid, block, ...)`` launcher per kernel."""
    source = render_cuda.kernel_source(name)
    kernels = {k: _params(p) for k, p in _KERNEL.findall(source)}
    launchers = []
    for kernel, params in kernels.items():
        decl = ", ".join(f"{t} {n}" for t, n in params)
        args = ", ".join(n for _, n in params)
        launchers.append(f'extern "C" void emu_{kernel}(int grid, int block, {decl}) '
                         f"{{ emu::run_grid(grid, block, [&] {{ {kernel}({args}); }}); }}")
    folder = Path(tempfile.mkdtemp(prefix="gscodec-cuda-emu-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the loaded library needs no file
    cpp, lib = folder / f"{name}.cpp", folder / f"{name}_c{channels}.so"
    cpp.write_text(source + "\n" + "\n".join(launchers) + "\n")
    cmd = ["g++", "-std=c++17", "-O1", "-ffp-contract=off", "-fPIC", "-shared",
           f"-DCHANNELS={channels}", "-include", str(HEADER), str(cpp), "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib)), kernels


class EmulatedKernel:
    """Stands in for a cupy RawKernel: called as kernel(n_blocks, n_threads, *args)."""

    def __init__(self, name: str, function: str, channels: int) -> None:
        lib, kernels = _library(name, channels)
        self.params = kernels[function]
        self.fn = getattr(lib, f"emu_{function}")
        self.fn.restype = None
        self.fn.argtypes = [ctypes.c_int, ctypes.c_int] + [
            ctypes.c_void_p if t.endswith("*") else _CTYPES[t.replace("const ", "")] for t, _ in self.params]

    def __call__(self, n_blocks: int, n_threads: int, *args: object) -> None:
        assert len(args) == len(self.params), (len(args), self.params)
        converted = []
        for (kind, name), a in zip(self.params, args, strict=True):
            if isinstance(a, torch.Tensor):
                assert kind.endswith("*") and a.device.type == "cpu", name
                assert a.is_contiguous(), f"{name}: a kernel must get contiguous memory (writes would be lost)"
                converted.append(a.data_ptr())
            else:
                assert not kind.endswith("*"), name
                converted.append(float(np.float32(a)) if kind == "float" else int(a))
        self.fn(n_blocks, n_threads, *converted)


def _launch(kernel: EmulatedKernel, n_blocks: int, n_threads: int, *args: object) -> None:
    if n_blocks:
        kernel(n_blocks, n_threads, *args)


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route render_cuda's launches to the CPU emulation (tensors stay on the CPU)."""
    monkeypatch.setattr(render_cuda, "_kernel", lambda name, function, channels=3: EmulatedKernel(
        name, function, channels))
    monkeypatch.setattr(render_cuda, "_launch", _launch)
