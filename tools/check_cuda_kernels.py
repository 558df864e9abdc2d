"""Compile every cuda/*.cu with nvcc: a CI check that the kernels build (no GPU needed).

    python tools/check_cuda_kernels.py [--arch sm_90] [--nvcc PATH]

Each file is compiled as a CUDA object (``nvcc -arch=sm_90 -c``) for 3 colour channels (the
codec's) and for 1 (other values of -DCHANNELS, which gscodec.render_cuda passes at run
time, only resize arrays). Exits 1 with the compiler's messages if any compile fails, 0
when all build, and 0 with a "skipped" line when nvcc is not installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent.parent / "cuda"
CHANNELS = (3, 1)


def compile_one(nvcc: str, source: Path, arch: str, channels: int, out_dir: Path) -> tuple[str, int, str]:
    """(label, return code, compiler output) of one nvcc run."""
    label = f"{source.name} (CHANNELS={channels})"
    obj = out_dir / f"{source.stem}_c{channels}.o"
    cmd = [nvcc, f"-arch={arch}", "-c", str(source), "-o", str(obj), f"-I{source.parent}", f"-DCHANNELS={channels}"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return label, 1, "nvcc timed out after 300 s"
    return label, run.returncode, (run.stdout + run.stderr).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sm_90", help="nvcc -arch value (default sm_90)")
    parser.add_argument("--nvcc", default=None, help="the nvcc to use (default: nvcc on PATH)")
    args = parser.parse_args(argv)
    nvcc = args.nvcc or shutil.which("nvcc")
    if not nvcc:
        print("check_cuda_kernels: skipped, nvcc not found on PATH")
        return 0
    sources = sorted(CUDA_DIR.glob("*.cu"))
    if not sources:
        print(f"check_cuda_kernels: no .cu files in {CUDA_DIR}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="gscodec-cuda-") as tmp, ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(compile_one, nvcc, s, args.arch, c, Path(tmp)) for s in sources for c in CHANNELS]
        results = [j.result() for j in jobs]
    failed = 0
    for label, code, output in results:
        print(f"{'ok  ' if code == 0 else 'FAIL'} {label}")
        if code != 0:
            failed += 1
            print(output, file=sys.stderr)
    print(f"check_cuda_kernels: {len(results) - failed}/{len(results)} compiled with {nvcc} -arch={args.arch}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
