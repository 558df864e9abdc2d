"""`Splats`: validation, tensors() / from_tensors, select, equals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gscodec import GscError, Splats


def make(n: int = 5, **kw: object) -> Splats:
    rng = np.random.default_rng(n)
    args = dict(width=9, height=7, means=rng.uniform(0, 9, (n, 2)), scales=rng.uniform(0.5, 3, (n, 2)),
                angles=rng.uniform(0, 3, n), colors=rng.normal(size=(n, 3)))
    args.update(kw)
    return Splats(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw,match", [
    ({"means": np.zeros((5, 3))}, "means"),
    ({"means": np.zeros(5)}, "means"),
    ({"scales": np.ones((4, 2))}, "scales"),
    ({"angles": np.zeros((5, 1))}, "angles"),
    ({"colors": np.zeros((5, 4))}, "colors"),
    ({"background": np.zeros(4)}, "background"),
    ({"means": np.full((5, 2), np.nan)}, "NaN"),
    ({"colors": np.full((5, 3), np.inf)}, "NaN or infinite"),
    ({"scales": np.zeros((5, 2))}, "positive"),
    ({"scales": -np.ones((5, 2))}, "positive"),
    ({"width": 0}, "at least 1x1"),
    ({"height": -3}, "at least 1x1"),
    ({"patch_sizes": ()}, "patch_sizes"),
    ({"patch_sizes": (0,)}, "patch_sizes"),
    ({"layer": np.full(5, 2)}, "layer"),
    ({"layer": np.zeros(4, np.int64)}, "layer"),
])
def test_validation(kw: dict, match: str) -> None:
    with pytest.raises(GscError, match=match):
        make(**kw)


def test_arrays_are_normalised() -> None:
    s = make(means=np.zeros((5, 2), np.float64).tolist())
    assert s.means.dtype == np.float32 and s.means.flags.c_contiguous
    assert s.layer.dtype == np.int64 and (s.layer == 0).all()
    assert len(s) == 5 and "5 splats" in repr(s)
    empty = make(0)
    assert len(empty) == 0 and empty.means.shape == (0, 2)


def test_tensors_round_trip() -> None:
    s = make(6, background=np.array([0.1, 0.2, 0.3]), patch_sizes=(4, 8), layer=np.array([0, 1, 1, 0, 1, 0]))
    t = s.tensors()
    assert t.means.shape == (6, 2) and t.colors.dtype == torch.float32
    assert s.tensors(dtype=torch.float64).scales.dtype == torch.float64
    back = Splats.from_tensors(t, width=9, height=7, background=s.background, layer=s.layer, patch_sizes=(4, 8))
    assert back.equals(s)
    grad = s.tensors().means.requires_grad_(True) * 2  # from_tensors detaches
    t2 = type(t)(grad, t.scales, t.angles, t.colors)
    assert Splats.from_tensors(t2, width=9, height=7).means.shape == (6, 2)


def test_select_and_equals() -> None:
    s = make(6, patch_sizes=(4, 8), layer=np.array([0, 1, 1, 0, 1, 0]))
    part = s.select(s.layer == 1)
    assert len(part) == 3 and part.patch_sizes == (4, 8) and (part.layer == 1).all()
    np.testing.assert_array_equal(part.means, s.means[[1, 2, 4]])
    by_index = s.select(np.array([1, 2, 4]))
    assert by_index.equals(part)
    assert not part.equals(s)
    assert s.select(np.zeros(6, bool)).means.shape == (0, 2)
