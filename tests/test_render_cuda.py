"""The CUDA backend (gscodec.render.cuda, cuda/*.cu) held to the torch reference.

The kernel tests (class TestCudaKernels) run twice: on a GPU (marked ``gpu``; skipped
without CuPy and a device; run them with ``pytest -m gpu``) and on the CPU through
tests/cuda_emulator.py, which builds the same kernel source with g++ and runs each CUDA
thread as a fiber: that checks the kernels' logic and the Python glue everywhere, the
GPU run checks the rest. The encoder/decoder tests (TestCudaCodec) need a GPU. The
kernel build check and the import checks run everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cuda_emulator
import numpy as np
import pytest
import torch
from conftest import smooth_image
from test_encoder import synthetic
from test_render import TOL_F32, TOL_GRAD, random_splats

import gscodec
from gscodec import metrics
from gscodec.encoder.initializers import detail
from gscodec.encoder.optimize import Encoder
from gscodec.encoder.plan import Plan
from gscodec.render.backends import render_splats, to_uint8_rgb
from gscodec.render.cuda import has_cuda
from gscodec.splats import SplatTensors

ROOT = Path(__file__).resolve().parent.parent


def test_cuda_kernels_compile() -> None:
    """Every kernel builds with NVRTC (exactly as CuPy compiles it at run time) and with nvcc
    (tools/check_cuda_kernels.py): no GPU needed. In CI (CI=true) a missing compiler fails."""
    argv = [sys.executable, str(ROOT / "tools" / "check_cuda_kernels.py")]
    if os.environ.get("CI") == "true":
        argv.append("--require")
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    if "skipped" in run.stdout:
        pytest.skip(run.stdout.strip().splitlines()[-2])


def test_import_does_not_import_cupy() -> None:
    code = "import sys, gscodec, gscodec.render.cuda as r; r.has_cuda; assert 'cupy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert isinstance(has_cuda(), bool)


@pytest.fixture(params=[
    pytest.param("emulated", marks=pytest.mark.skipif(not cuda_emulator.available(), reason="needs g++")),
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not has_cuda(), reason="needs CuPy and a GPU")]),
])
def render_cuda(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """render_splats(backend="cuda"): on the GPU (arguments copied there), or on CPU tensors
    with the kernels emulated."""
    if request.param == "emulated":
        cuda_emulator.install(monkeypatch)
    device = "cuda" if request.param == "gpu" else "cpu"

    def render(means, scales, angles, colors, height, width, **kwargs):
        args = [t.to(device) for t in (means, scales, angles, colors)]
        if kwargs.get("background") is not None:
            kwargs["background"] = kwargs["background"].to(device)
        return render_splats(*args, height, width, backend="cuda", **kwargs)

    render.emulated = request.param == "emulated"
    return render


class TestCudaKernels:
    @pytest.mark.parametrize("scale,origin", [(1.0, (0, 0)), (0.5, (1, 1)), (0.3, (0, 2)), (1.5, (2, 0)), (3, (7, 5))])
    def test_forward_matches_torch(self, render_cuda, scale: float, origin: tuple[int, int]) -> None:
        h, w = 70, 90  # several tiles, partial edge tiles
        args = random_splats(400, h, w, seed=2)
        bg = torch.tensor([0.5, 0.0, 0.0])
        oh, ow = round(h * scale) - origin[0], round(w * scale) - origin[1]
        want = render_splats(*args, oh, ow, scale=scale, origin=origin, background=bg, backend="torch")
        got = render_cuda(*args, oh, ow, scale=scale, origin=origin, background=bg).cpu()
        torch.testing.assert_close(got, want, **TOL_F32)
        assert (to_uint8_rgb(got).int() - to_uint8_rgb(want).int()).abs().max() <= 1

    def test_gradients_match_torch(self, render_cuda) -> None:
        h, w = 40, 50
        base = random_splats(150, h, w, seed=3)
        target = torch.rand(h, w, 3)
        grads = {}
        for name in ("torch", "cuda"):
            params = [t.clone().requires_grad_(True) for t in base]
            if name == "torch":
                out = render_splats(*params, h, w, scale=0.8, backend="torch")
            else:
                out = render_cuda(*params, h, w, scale=0.8).cpu()
            ((out - target) ** 2).sum().backward()
            grads[name] = [p.grad for p in params]
        for name, gt, gc in zip(("means", "scales", "angles", "colors"), grads["torch"], grads["cuda"], strict=True):
            torch.testing.assert_close(gc, gt, **TOL_GRAD, msg=name)

    def test_many_splats_in_one_tile_no_cap(self, render_cuda) -> None:
        """2,000 splats inside one 16x16 tile all count (AIR/GaussianImage keep 256)."""
        n = 2000
        g = torch.Generator().manual_seed(7)
        means = 4.0 + 8.0 * torch.rand(n, 2, generator=g)
        scales = 0.5 + torch.rand(n, 2, generator=g)
        colors = torch.full((n, 3), 1e-3)
        angles = torch.rand(n, generator=g)
        want = render_splats(means, scales, angles, colors, 16, 16, backend="torch")
        got = render_cuda(means, scales, angles, colors, 16, 16).cpu()
        torch.testing.assert_close(got, want, **TOL_F32)
        one = render_cuda(torch.full((n, 2), 8.5), torch.full((n, 2), 3.0), torch.zeros(n), colors, 16, 16)
        assert one[8, 8, 0].item() == pytest.approx(2.0, rel=1e-4)

    def test_many_splats_gradients_no_cap(self, render_cuda) -> None:
        n = 600  # > every batch size of the kernels, all in one tile
        g = torch.Generator().manual_seed(8)
        base = [4.0 + 8.0 * torch.rand(n, 2, generator=g), 0.5 + torch.rand(n, 2, generator=g),
                torch.rand(n, generator=g), torch.randn(n, 3, generator=g) * 0.01]
        grads = {}
        for name in ("torch", "cuda"):
            params = [t.clone().requires_grad_(True) for t in base]
            out = render_splats(*params, 16, 16, backend="torch") if name == "torch" else render_cuda(*params, 16, 16)
            (out.cpu() ** 2).sum().backward()
            grads[name] = [p.grad for p in params]
        for gt, gc in zip(grads["torch"], grads["cuda"], strict=True):
            torch.testing.assert_close(gc, gt, **TOL_GRAD)

    def test_huge_splat_covers_image(self, render_cuda) -> None:
        colors = torch.tensor([[0.5, 0.1, -0.1]])
        args = (torch.tensor([[10.0, -30.0]]), torch.tensor([[5000.0, 3000.0]]), torch.tensor([0.3]), colors)
        out = render_cuda(*args, 200, 300).cpu()
        torch.testing.assert_close(out, render_splats(*args, 200, 300, backend="torch"), **TOL_F32)
        assert (out[..., 0] > 0.498).all()  # one splat covers all 60,000 pixels with weight > 0.996

    def test_elongated_splats(self, render_cuda) -> None:
        """Long thin diagonal splats: the tile test culls the box's empty tiles, never a hit."""
        h, w = 96, 128
        means, scales, angles, colors = random_splats(80, h, w, seed=9)
        scales = torch.stack([scales[:, 0] * 20, torch.full_like(scales[:, 1], 0.4)], 1)
        want = render_splats(means, scales, angles, colors, h, w, backend="torch")
        got = render_cuda(means, scales, angles, colors, h, w).cpu()
        torch.testing.assert_close(got, want, **TOL_F32)

    def test_outside_and_empty(self, render_cuda) -> None:
        means = torch.tensor([[-50.0, 5.0], [5.0, 200.0], [1e6, -1e6], [-7.0, -7.0]])
        out = render_cuda(means, torch.ones(4, 2) * 2, torch.zeros(4), torch.ones(4, 3), 12, 10)
        assert not out.any()
        empty = render_cuda(torch.zeros(0, 2), torch.ones(0, 2), torch.zeros(0), torch.zeros(0, 3), 3, 4)
        assert empty.shape == (3, 4, 3) and not empty.any()

    def test_deterministic(self, render_cuda) -> None:
        if render_cuda.emulated:
            pytest.skip("the emulation runs threads one at a time: only a GPU can show run-to-run order")
        args = random_splats(3000, 64, 64, seed=10)
        runs = []
        for _ in range(2):
            params = [t.clone().requires_grad_(True) for t in args]
            out = render_cuda(*params, 64, 64)
            out.square().sum().backward()
            runs.append([out.detach().cpu()] + [p.grad for p in params])
        for a, b in zip(*runs, strict=True):
            assert torch.equal(a, b)  # bitwise: fixed summation order, no atomics

    @pytest.mark.parametrize("channels", [1, 4])
    def test_other_channel_counts(self, render_cuda, channels: int) -> None:
        means, scales, angles, _ = random_splats(50, 20, 24, seed=11)
        colors = torch.randn(50, channels, generator=torch.Generator().manual_seed(1))
        want = render_splats(means, scales, angles, colors, 20, 24, backend="torch")
        got = render_cuda(means, scales, angles, colors, 20, 24).cpu()
        torch.testing.assert_close(got, want, **TOL_F32)


@pytest.mark.skipif(not cuda_emulator.available(), reason="needs g++")
def test_encoder_through_the_cuda_op_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The encoder's steps with backend="cuda" (kernels emulated on the CPU) follow the numba
    path: colour solves (3 channels and the 1-channel preconditioner), refinement gradients.
    The numba path's colour operator goes through the renderer here, as CUDA's does: stored
    weights (tests/test_operator.py) give exact squared sums, a slightly different
    preconditioner, so 5 steps of a solve land elsewhere (200 agree within 1e-6)."""
    from gscodec.render import operator

    cuda_emulator.install(monkeypatch)
    monkeypatch.setattr(operator, "MAX_WEIGHTS", 0)
    results = {}
    for backend in ("numba", "cuda"):
        enc, truth = synthetic(backend)
        start = SplatTensors(truth.means, truth.scales, truth.angles, torch.zeros_like(truth.colors))
        colors = enc.solve_colors(start, 5)
        s = enc.refine(SplatTensors(truth.means, truth.scales, truth.angles, colors), 3)
        results[backend] = colors, enc.loss(s).item()
    torch.testing.assert_close(results["cuda"][0], results["numba"][0], rtol=1e-4, atol=1e-5)
    assert results["cuda"][1] == pytest.approx(results["numba"][1], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda(), reason="needs CuPy and a CUDA device")
class TestCudaCodec:
    """The encoder and decoder with device="cuda" against the CPU."""

    def test_encoder_steps_match_cpu(self) -> None:
        """Colour solve and refinement on the GPU follow the numba path (tests/test_encoder.py)."""
        enc_cpu, truth = synthetic("numba")
        enc_gpu = Encoder(enc_cpu.target.cuda(), seed=1)
        start = SplatTensors(truth.means.cuda(), truth.scales.cuda(), truth.angles.cuda(),
                             torch.zeros_like(truth.colors).cuda())
        colors = enc_gpu.solve_colors(start, 200)
        torch.testing.assert_close(colors.cpu(), truth.colors, rtol=0, atol=1e-3)
        losses = []
        for enc in (enc_cpu, enc_gpu):
            s = enc.refine(detail(enc, Plan(40, 8, 0), 50).splats, 30)
            losses.append(enc.loss(s).item())
            assert s.means.device == enc.device
        assert losses[1] == pytest.approx(losses[0], rel=2e-2)

    def test_encode_on_gpu_decodes_alike(self) -> None:
        image = smooth_image(48, 64)
        noise = np.random.default_rng(0).integers(-12, 13, image.shape)
        image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
        psnr = {}
        for device in ("cpu", "cuda"):
            data = gscodec.encode(image, quality=60, effort=2, device=device)
            out = gscodec.decode(data)
            np.testing.assert_allclose(gscodec.decode(data, device="cuda"), out, rtol=0, atol=1)
            psnr[device] = metrics.psnr(out, image)
        assert abs(psnr["cuda"] - psnr["cpu"]) < 0.3, psnr
        assert gscodec.decode(data, device="auto").shape == image.shape

    @pytest.mark.parametrize("scale", [1.0, 0.37, 2.0])
    def test_decode_on_gpu_within_one(self, scale: float) -> None:
        data = gscodec.encode(smooth_image(40, 56), quality=80, effort=1)
        np.testing.assert_allclose(gscodec.decode(data, scale=scale, device="cuda"),
                                   gscodec.decode(data, scale=scale), rtol=0, atol=1)
