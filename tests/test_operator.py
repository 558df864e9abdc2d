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
