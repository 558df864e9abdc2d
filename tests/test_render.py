"""The rendering function (bitstream/SPEC.md, section Rendering) and its two CPU backends.

A dense float64 oracle written here from the spec, independent of gscodec.render,
checks the torch reference; numba is held to torch (forward, 8-bit output, gradients).
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch

from gscodec.format.constants import Q_CUT
from gscodec.render import reference as render_mod  # noqa: E402
from gscodec.render.backends import render_splats, to_uint8_rgb

TOL_F32 = {"rtol": 1e-4, "atol": 1e-5}  # forward, float32 backends against each other
TOL_GRAD = {"rtol": 2e-3, "atol": 2e-4}  # gradients, numba (float32 sums) vs torch (float32)


def dense_oracle(means, scales, angles, colors, height, width, *, scale=1.0, origin=(0, 0), background=None):
    """[H, W, C] float64 by the definition: every pixel against every splat, no boxes, no chunks."""
    m, s, a, c = (np.asarray(x, np.float64) for x in (means, scales, angles, colors))
    cos, sin = np.cos(a), np.sin(a)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # [N, 2, 2]
    sigma = rot @ (np.eye(2) * (s**2)[:, None, :]) @ np.swapaxes(rot, 1, 2)
    if scale < 1:
        det0 = np.linalg.det(sigma)
        sigma = sigma + np.eye(2) * (1 / scale**2 - 1) / 12
        c = c * np.sqrt(det0 / np.linalg.det(sigma))[:, None]
    sigma = sigma * scale**2
    centre = m * scale - np.array([origin[1], origin[0]])
    inv = np.linalg.inv(sigma)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    d = np.stack([xs, ys], -1)[None] - centre[:, None, None, :]  # [N, H, W, 2]
    q = np.einsum("nhwi,nij,nhwj->nhw", d, inv, d)
    w = np.where(q <= Q_CUT, np.exp(-0.5 * q), 0.0)
    out = np.einsum("nhw,nc->hwc", w, c)
    return out + (0 if background is None else np.asarray(background, np.float64))


def random_splats(n: int, height: int, width: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([width + 4, height + 4]) - 2
    scales = torch.exp(torch.rand(n, 2, generator=g, dtype=torch.float64) * 2.5 - 0.7)
    angles = torch.rand(n, generator=g, dtype=torch.float64) * 6.3
    colors = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3
    return [t.to(dtype) for t in (means, scales, angles, colors)]


@pytest.mark.parametrize("scale,origin", [(1.0, (0, 0)), (0.5, (0, 0)), (0.3, (1, 2)), (1.7, (0, 0)), (2.0, (5, 3))])
def test_torch_matches_dense_oracle(scale: float, origin: tuple[int, int]) -> None:
    h, w = 11, 14
    args = random_splats(25, h, w, seed=1, dtype=torch.float64)
    bg = torch.tensor([0.4, -0.1, 0.05], dtype=torch.float64)
    oh, ow = max(1, round(h * scale)) - origin[0], max(1, round(w * scale)) - origin[1]
    got = render_splats(*args, oh, ow, scale=scale, origin=origin, background=bg, backend="torch")
    want = dense_oracle(*(a.numpy() for a in args), oh, ow, scale=scale, origin=origin, background=bg.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_cut_is_at_q_cut() -> None:
    """A splat's weight is exp(-q/2) up to q = 2 ln 255 (weight 1/255), zero beyond."""
    assert Q_CUT == pytest.approx(2 * math.log(255))
    sigma = 1.0
    r = math.sqrt(Q_CUT) * sigma  # the cut radius
    means = torch.tensor([[0.5, 0.5], [0.5, 20.5]], dtype=torch.float64)  # x offsets of pixels: j
    out = render_splats(means, torch.full((2, 2), sigma, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                        torch.ones(2, 1, dtype=torch.float64), 21, 12, backend="torch")[:, :, 0]
    row = out[0].numpy()
    for j in range(12):
        want = math.exp(-0.5 * j * j) if j <= r else 0.0
        assert row[j] == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize("scale,origin", [(1.0, (0, 0)), (0.5, (1, 1)), (1.5, (2, 0))])
def test_numba_matches_torch(scale: float, origin: tuple[int, int]) -> None:
    h, w = 40, 56
    args = random_splats(300, h, w, seed=2)
    bg = torch.tensor([0.5, 0.0, 0.0])
    oh, ow = round(h * scale) - origin[0], round(w * scale) - origin[1]
    a = render_splats(*args, oh, ow, scale=scale, origin=origin, background=bg, backend="torch")
    b = render_splats(*args, oh, ow, scale=scale, origin=origin, background=bg, backend="numba")
    torch.testing.assert_close(b, a, **TOL_F32)
    diff = (to_uint8_rgb(a).int() - to_uint8_rgb(b).int()).abs()
    assert diff.max() <= 1


def test_numba_gradients_match_torch() -> None:
    h, w = 24, 30
    base = random_splats(60, h, w, seed=3)
    target = torch.rand(h, w, 3)
    grads = {}
    for backend in ("torch", "numba"):
        params = [t.clone().requires_grad_(True) for t in base]
        out = render_splats(*params, h, w, backend=backend)
        ((out - target) ** 2).sum().backward()
        grads[backend] = [p.grad for p in params]
    for name, gt, gn in zip(("means", "scales", "angles", "colors"), grads["torch"], grads["numba"], strict=True):
        torch.testing.assert_close(gn, gt, **TOL_GRAD, msg=name)


def test_gradcheck_torch_path() -> None:
    args = [t.requires_grad_(True) for t in random_splats(4, 6, 7, seed=4, dtype=torch.float64)]
    for s in (1.0, 0.6):
        assert torch.autograd.gradcheck(lambda *p, s=s: render_splats(*p, 6, 7, scale=s, backend="torch"), args)


def test_no_dense_n_h_w_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 splats on a 256x256 image: peak memory far below an [N, H, W] tensor (1.3 GB)."""
    monkeypatch.setattr(render_mod, "CHUNK_PAIRS", 1 << 16)  # force several chunks
    args = random_splats(5000, 256, 256, seed=5)
    tracemalloc.start()  # numpy allocations (numba path); torch's are bounded by chunking below
    try:
        with torch.no_grad():
            render_splats(*args, 256, 256, backend="numba")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    calls = []
    original = render_mod._enumerate_pairs

    def spy(*a):
        out = original(*a)
        calls.append(len(out[0]))
        return out

    monkeypatch.setattr(render_mod, "_enumerate_pairs", spy)
    with torch.no_grad():
        a = render_splats(*args, 256, 256, backend="torch")
    assert len(calls) > 1 and max(calls) < 4 * (1 << 16) + 10_000  # a chunk: about CHUNK_PAIRS pairs
    b = render_splats(*args, 256, 256, backend="numba")
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_many_splats_per_pixel_no_cap() -> None:
    """1,000 identical splats on one pixel add up: no per-pixel or per-tile cap (AIR drops beyond 256)."""
    n = 1000
    means = torch.full((n, 2), 8.5)
    scales = torch.full((n, 2), 3.0)
    colors = torch.full((n, 3), 0.001)
    for backend in ("torch", "numba"):
        out = render_splats(means, scales, torch.zeros(n), colors, 16, 16, backend=backend)
        assert out[8, 8, 0].item() == pytest.approx(1.0, rel=1e-4)


def test_huge_splat_covers_image() -> None:
    means = torch.tensor([[10.0, -30.0]])
    scales = torch.tensor([[5000.0, 3000.0]])
    colors = torch.tensor([[0.5, 0.1, -0.1]])
    for backend in ("torch", "numba"):
        out = render_splats(means, scales, torch.tensor([0.3]), colors, 20, 30, backend=backend)
        torch.testing.assert_close(out, colors.expand(20, 30, 3), rtol=1e-3, atol=0)  # weight 1 - O(1e-4)


def test_splats_outside_contribute_nothing() -> None:
    means = torch.tensor([[-50.0, 5.0], [5.0, 200.0], [1e6, -1e6], [-7.0, -7.0]])
    scales = torch.tensor([[2.0, 2.0], [3.0, 1.0], [10.0, 10.0], [1.0, 1.0]])
    bg = torch.tensor([0.25, 0.0, 0.0])
    for backend in ("torch", "numba"):
        out = render_splats(means, scales, torch.zeros(4), torch.ones(4, 3), 12, 10, background=bg, backend=backend)
        torch.testing.assert_close(out, bg.expand(12, 10, 3), rtol=0, atol=0)


def test_zero_splats_and_order_independence() -> None:
    empty = render_splats(torch.zeros(0, 2), torch.ones(0, 2), torch.zeros(0), torch.zeros(0, 3), 3, 4)
    assert empty.shape == (3, 4, 3) and not empty.any()
    args = random_splats(50, 20, 20, seed=6)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    for backend in ("torch", "numba"):
        a = render_splats(*args, 20, 20, backend=backend)
        b = render_splats(*(t[perm] for t in args), 20, 20, backend=backend)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_to_uint8_rgb() -> None:
    """BT.601 full-range YCbCr -> RGB, x255, clamp to [0, 255], round half to even."""
    ycc = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [-1.0, 0.0, 0.0],
                         [2.5 / 255, 0.0, 0.0], [3.5 / 255, 0.0, 0.0], [0.5, 0.0, 0.5]]], dtype=torch.float64)
    rgb = to_uint8_rgb(ycc)[0].tolist()
    assert rgb[:4] == [[0, 0, 0], [255, 255, 255], [255, 255, 255], [0, 0, 0]]
    assert rgb[4] == [2, 2, 2] and rgb[5] == [4, 4, 4]  # half to even
    r = 0.5 + 1.402 * 0.5
    g = 0.5 - 0.714136286 * 0.5
    assert rgb[6] == [255, round(g * 255), 128] and r > 1


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        render_splats(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1), torch.zeros(1, 3), 2, 2, backend="gpu")
