"""Compile every CUDA kernel without a GPU: a CI check that the kernels build.

    python tools/check_cuda_kernels.py [--arch 90] [--nvcc PATH] [--require]

Two compilers, each when it is installed:

- NVRTC, the runtime compiler CuPy uses at first use: the exact source text and options
  of `gscodec.render.cuda` (``common.cuh`` pasted in), loaded through ctypes from the
  ``nvidia-cuda-nvrtc`` wheel (the ``dev`` extra) or the system.
- nvcc, the toolkit compiler: each ``cuda/*.cu`` as a CUDA object.

Both build for 3 colour channels (the codec's) and for 1 (other -DCHANNELS values only
resize arrays). Exits 1 with the compiler's messages if any compile fails, 0 when all
build; a missing compiler is a "skipped" line, or a failure with ``--require`` (CI).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gscodec.render.cuda import KERNELS, compile_options, kernel_source, source_dir  # noqa: E402

CHANNELS = (3, 1)


def compile_nvcc(nvcc: str, source: Path, arch: str, channels: int, out_dir: Path) -> tuple[str, int, str]:
    """(label, return code, compiler output) of one nvcc run."""
    label = f"nvcc  {source.name} (CHANNELS={channels})"
    obj = out_dir / f"{source.stem}_c{channels}.o"
    cmd = [nvcc, f"-arch=sm_{arch}", "-c", str(source), "-o", str(obj), f"-I{source.parent}",
           f"-DCHANNELS={channels}"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return label, 1, "nvcc timed out after 300 s"
    return label, run.returncode, (run.stdout + run.stderr).strip()


def find_nvrtc() -> str | None:
    """The NVRTC library: from the nvidia-cuda-nvrtc wheel if installed, else the system's."""
    try:
        import nvidia.cuda_nvrtc as wheel  # the wheel's namespace package

        for folder in wheel.__path__:
            for lib in sorted(Path(folder, "lib").glob("libnvrtc.so*")):
                return str(lib)
    except ImportError:
        pass
    return ctypes.util.find_library("nvrtc")


def compile_nvrtc(lib: ctypes.CDLL, name: str, arch: str, channels: int) -> tuple[str, int, str]:
    """(label, NVRTC result code, compile log) for kernel ``name`` as render_cuda builds it."""
    label = f"nvrtc {name}.cu (CHANNELS={channels})"
    prog = ctypes.c_void_p()
    code = lib.nvrtcCreateProgram(ctypes.byref(prog), kernel_source(name).encode(), f"{name}.cu".encode(),
                                  0, None, None)
    if code:
        return label, code, "nvrtcCreateProgram failed"
    options = [f"--gpu-architecture=compute_{arch}", *compile_options(channels)]
    argv = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
    code = lib.nvrtcCompileProgram(prog, len(options), argv)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return label, code, log.value.decode(errors="replace").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90", help="compute capability, e.g. 90 for Hopper (default)")
    parser.add_argument("--nvcc", default=None, help="the nvcc to use (default: nvcc on PATH)")
    parser.add_argument("--require", action="store_true", help="fail when nvcc or NVRTC is missing")
    args = parser.parse_args(argv)

    results, missing = [], []
    nvrtc = find_nvrtc()
    if nvrtc:
        lib = ctypes.CDLL(nvrtc)
        results += [compile_nvrtc(lib, name, args.arch, c) for name in KERNELS for c in CHANNELS]
    else:
        missing.append("NVRTC (pip install nvidia-cuda-nvrtc-cu12)")
    nvcc = args.nvcc or shutil.which("nvcc")
    if nvcc:
        sources = [source_dir() / f"{name}.cu" for name in KERNELS]
        with tempfile.TemporaryDirectory(prefix="gscodec-cuda-") as tmp, ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(compile_nvcc, nvcc, s, args.arch, c, Path(tmp)) for s in sources for c in CHANNELS]
            results += [j.result() for j in jobs]
    else:
        missing.append("nvcc")

    failed = 0
    for label, code, output in results:
        print(f"{'ok  ' if code == 0 else 'FAIL'} {label}")
        if code != 0:
            failed += 1
            print(output, file=sys.stderr)
    for what in missing:
        print(f"check_cuda_kernels: {'FAIL' if args.require else 'skipped'}: {what} not found")
    print(f"check_cuda_kernels: {len(results) - failed}/{len(results)} compiled for compute capability {args.arch}"
          f" (NVRTC: {nvrtc or 'none'}; nvcc: {nvcc or 'none'})")
    return 1 if failed or (missing and args.require) else 0


if __name__ == "__main__":
    sys.exit(main())
