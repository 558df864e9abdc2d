"""Rate control (gscodec.encoder.rate) on a model codec: quick encodes, refinements and
finishes replaced by closed forms, so that what the search does with its measurements is
checked exactly and fast (bench/rate.py measures it on real images)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gscodec.encoder import pipeline, rate

H = W = 100


def quick_bpp(quality: float) -> float:  # 0.1 to 2 bpp, geometric in quality
    return 0.1 * math.exp(quality / 100 * math.log(20))


class ModelCodec:
    """Quick encodes at ``quick_bpp``; a refinement multiplies that by ``gain``, and steps
    2**shift times coarser take 15 % of the rate per octave. Counts what was run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gain: float) -> None:
        self.gain = gain
        self.calls: list[str] = []
        monkeypatch.setattr(pipeline, "encode_image", self.encode_image)
        monkeypatch.setattr(pipeline, "refine_image", self.refine_image)
        monkeypatch.setattr(rate, "encode_refined", self.encode_refined)

    @staticmethod
    def bytes_for(bpp: float) -> bytes:
        return bytes(max(1, round(bpp * H * W / 8)))

    def encode_image(self, rgb, quality, effort, *args, **kwargs) -> bytes:
        assert effort == 0, "the search encodes at the user's effort through refine + finish"
        self.calls.append("quick")
        return self.bytes_for(quick_bpp(quality))

    def refine_image(self, rgb, quality, effort, progress=None, *args, **kwargs) -> float:
        self.calls.append("refine")
        return quality  # stands for the refined splats

    def encode_refined(self, refined: float, shift: float = 0.0) -> bytes:
        self.calls.append("finish")
        return self.bytes_for(quick_bpp(refined) * self.gain * math.exp(-0.15 * shift))


def bpp(data: bytes) -> float:
    return 8 * len(data) / (H * W)


@pytest.mark.parametrize("target", [0.5, 1.2, 3.0])  # 0.3 to 6 bpp at quality 0 to 100
def test_a_prior_off_by_a_little_is_made_up_by_the_steps(monkeypatch: pytest.MonkeyPatch, target: float) -> None:
    """Refinement multiplying the rate by 3 where the prior expects about 2.6: one
    refinement, the steps shifted to land within 3 %."""
    codec = ModelCodec(monkeypatch, gain=3.0)
    data = rate.encode_to_rate(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(bpp(data) / target - 1) <= rate.RATE_TOLERANCE
    assert codec.calls.count("refine") == 1
    assert 2 <= codec.calls.count("finish") <= rate.FINISHES
    assert codec.calls.count("quick") <= rate.QUICK_ENCODES


@pytest.mark.parametrize("target", [0.6, 1.2, 3.0])  # 0.45 to 9 bpp at quality 0 to 100
def test_a_prior_off_by_more_than_the_steps_reach_takes_a_second_refinement(
        monkeypatch: pytest.MonkeyPatch, target: float) -> None:
    """Refinement multiplying the rate by 4.5 (the prior: about 2.6; the steps reach
    +-1.5 octaves, about +-25 %): a second refinement, aimed with this image's miss, lands."""
    codec = ModelCodec(monkeypatch, gain=4.5)
    data = rate.encode_to_rate(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(bpp(data) / target - 1) <= rate.RATE_TOLERANCE
    assert codec.calls.count("refine") == 2
    assert codec.calls.count("finish") <= 2 * rate.FINISHES
    assert codec.calls.count("quick") <= 2 * rate.QUICK_ENCODES


def test_effort_0_returns_the_quick_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = ModelCodec(monkeypatch, gain=3.0)
    for target in (0.15, 0.5, 1.5):
        codec.calls.clear()
        data = rate.encode_to_rate(np.zeros((H, W, 3), np.float32), target, 0)
        assert abs(bpp(data) / target - 1) <= rate.RATE_TOLERANCE
        assert set(codec.calls) == {"quick"} and len(codec.calls) <= rate.QUICK_ENCODES


def test_an_unreachable_target_gives_the_nearest_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    """50 bpp is beyond quality 100 with the finest steps: the search stops at the bounds,
    spending no more than its budget, and returns the largest encode it made."""
    codec = ModelCodec(monkeypatch, gain=3.0)
    data = rate.encode_to_rate(np.zeros((H, W, 3), np.float32), 50.0, 4)
    assert bpp(data) == pytest.approx(quick_bpp(100) * 3.0 * math.exp(0.15 * rate.MAX_SHIFT), rel=0.01)
    assert codec.calls.count("refine") == 1


@pytest.mark.parametrize("slope", [0.2, 1.0, 5.0])
@pytest.mark.parametrize("root", [-0.9, 0.05, 0.7])
def test_solve_finds_a_root_whatever_the_slope_it_was_told(slope: float, root: float) -> None:
    """An increasing, curved function with its root at ``root``: found within the tolerance
    in a few tries, though the slope told may be 5 times off."""
    def f(x: float) -> float:
        return math.expm1(x - root)

    tried = rate.solve(f, 0.0, slope, -1.0, 1.0, 1e-3, 8)
    assert min(abs(v) for v in tried.values()) <= 1e-3
    assert len(tried) <= 7


def test_solve_stops_at_a_bound_beyond_which_the_root_lies() -> None:
    tried = rate.solve(lambda x: x - 5.0, 0.0, 1.0, -1.0, 1.0, 1e-3, 8)
    assert set(tried) == {0.0, 1.0}
