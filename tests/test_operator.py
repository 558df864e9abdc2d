"""The colour operator (gscodec.render.operator): W c, W^T y and W^T D W c for fixed geometry,
stored once on the CPU (the renderer's pixels and weights) or through the renderer."""

from __future__ import annotations

import pytest
import torch
from test_render import random_splats

from gscodec.render import operator
from gscodec.render.backends import render_splats
from gscodec.render.operator import color_operator

H, W = 24, 40


def weight_matrix(means, scales, angles, origin=(0, 0)) -> torch.Tensor:
    """[H * W, N]: every splat's weights, from the reference renderer (a unit colour per splat)."""
    eye = torch.eye(len(means))
    return render_splats(means, scales, angles, eye, H, W, origin=origin, backend="torch").view(H * W, -1)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("origin", [(0, 0), (5, -7)])
def test_products_are_the_weight_matrix(backend: str, origin: tuple[int, int]) -> None:
    means, scales, angles, colors = random_splats(50, H, W, seed=7)
    op = color_operator(means, scales, angles, H, W, origin=origin, backend=backend)
    assert (op.stored is not None) == (backend == "numba")
    wm = weight_matrix(means, scales, angles, origin)
    g = torch.Generator().manual_seed(1)
    image, d = torch.randn(H, W, 3, generator=g), torch.rand(H, W, generator=g)
    torch.testing.assert_close(op.apply(colors).view(H * W, 3), wm @ colors, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op.adjoint(image), wm.T @ image.view(-1, 3), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(op.normal(colors, d), wm.T @ (d.view(-1, 1) * (wm @ colors)), atol=1e-4, rtol=1e-4)
    if backend == "numba":  # stored: the exact squared weights (rendered: a half-covariance render)
        torch.testing.assert_close(op.squared_sums(d), (wm.square() * d.view(-1, 1)).sum(0), atol=1e-5, rtol=1e-5)


def test_stored_image_is_the_render_bit_for_bit() -> None:
    means, scales, angles, colors = random_splats(200, 61, 83, seed=3)
    op = color_operator(means, scales, angles, 61, 83)
    assert torch.equal(op.apply(colors), render_splats(means, scales, angles, colors, 61, 83))
    five = torch.randn(200, 5)  # channels beyond 3 go in zero-padded groups of 3
    torch.testing.assert_close(op.apply(five), render_splats(means, scales, angles, five, 61, 83))


def test_beyond_the_weight_budget_products_go_through_the_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    means, scales, angles, colors = random_splats(50, H, W, seed=7)
    stored = color_operator(means, scales, angles, H, W)
    monkeypatch.setattr(operator, "MAX_WEIGHTS", 10)
    rendered = color_operator(means, scales, angles, H, W)
    assert stored.stored is not None and rendered.stored is None
    image = torch.randn(H, W, 2)
    torch.testing.assert_close(rendered.adjoint(image), stored.adjoint(image), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rendered.normal(colors), stored.normal(colors), atol=1e-4, rtol=1e-4)


def test_no_splats() -> None:
    empty = torch.zeros(0, 2), torch.ones(0, 2), torch.zeros(0)
    op = color_operator(*empty, H, W)
    assert op.apply(torch.zeros(0, 3)).shape == (H, W, 3)
    assert op.adjoint(torch.ones(H, W, 3)).shape == (0, 3)
    assert op.squared_sums().shape == (0,)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_replaced_sums_are_the_weight_matrices(backend: str) -> None:
    """`ColorOperator.replaced`: each splat's replacement's weights W' against an image, sum W'^2
    and sum W W', from the weight matrices. The CPU's pass is exact; renders (products of
    Gaussians, squared weights from half covariances) lose the weights their footprint cut
    leaves out; a splat replaced by itself gives its own adjoint and squared sums on both."""
    means, scales, angles, _ = random_splats(50, H, W, seed=8)
    g = torch.Generator().manual_seed(9)
    other = (means + 0.6 * torch.randn(50, 2, generator=g), scales * torch.exp(0.3 * torch.randn(50, 2, generator=g)),
             angles + 0.4 * torch.randn(50, generator=g))
    image = torch.randn(H, W, 3, generator=g)
    op = color_operator(means, scales, angles, H, W, backend=backend)
    now, then = weight_matrix(means, scales, angles), weight_matrix(*other)
    (pulled, squared, cross), = op.replaced([other], image)
    torch.testing.assert_close(pulled, then.T @ image.view(-1, 3), rtol=1e-4, atol=1e-4)
    loose = dict(rtol=1e-4, atol=1e-5) if backend == "numba" else dict(rtol=0.05, atol=0.05)
    torch.testing.assert_close(squared, then.square().sum(0), **loose)
    torch.testing.assert_close(cross, (now * then).sum(0), **loose)
    (pulled, squared, cross), = op.replaced([(means, scales, angles)], image)
    torch.testing.assert_close(pulled, op.adjoint(image), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(squared, op.squared_sums(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(cross, squared, rtol=1e-4, atol=1e-6)
