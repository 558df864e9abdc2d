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
    """Quick encodes at ``quick_bpp``; a refinement multiplies that by what the prior expects
    (`rate.effort_change` at effort 4) times ``gain``, and position and colour steps 2**shift
    times coarser take `PER_SHIFT` of the log rate per octave. Counts what was run."""

    PER_SHIFT = 0.15

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

    def encode_refined(self, refined: float, factors: tuple[float, ...], prune: float = 0.0) -> bytes:
        self.calls.append("finish")
        assert factors[0] == factors[3] == factors[4], "a rate shift moves position and colour steps together"
        assert prune == 0.0, "a rate shift leaves the pruning as it is"
        return self.bytes_for(self.refined_bpp(refined) * math.exp(-self.PER_SHIFT * factors[3]))

    def refined_bpp(self, quality: float) -> float:
        return quick_bpp(quality) * self.gain * math.exp(rate.effort_change(4, quality)[0])


def bpp(data: bytes) -> float:
    return 8 * len(data) / (H * W)


@pytest.mark.parametrize("target", [0.3, 1.0, 2.5])  # 0.15 to 3 bpp at quality 0 to 100
def test_a_prior_off_by_a_little_is_made_up_by_the_steps(monkeypatch: pytest.MonkeyPatch, target: float) -> None:
    """Refinement multiplying the rate by 1.15 times what the prior expects: one refinement, the
    steps shifted to land within 3 %."""
    codec = ModelCodec(monkeypatch, gain=1.15)
    data = rate.encode_to_rate(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(bpp(data) / target - 1) <= rate.RATE_TOLERANCE
    assert codec.calls.count("refine") == 1
    assert 2 <= codec.calls.count("finish") <= rate.FINISHES
    assert codec.calls.count("quick") <= rate.QUICK_ENCODES


@pytest.mark.parametrize("target", [0.4, 1.2, 2.0])  # 0.22 to 4.4 bpp at quality 0 to 100
def test_a_prior_off_by_more_than_the_steps_reach_takes_a_second_refinement(
        monkeypatch: pytest.MonkeyPatch, target: float) -> None:
    """Refinement multiplying the rate by 1.7 times what the prior expects (the steps reach
    +-1.5 octaves, about +-25 %): a second refinement, aimed with this image's miss, lands.
    The first is finished at the usual steps only (a miss beyond twice the reach), and the
    second is aimed on the quick encodes already made."""
    codec = ModelCodec(monkeypatch, gain=1.7)
    result = rate.search_rate(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(bpp(result.data) / target - 1) <= rate.RATE_TOLERANCE
    assert codec.calls.count("refine") == result.refinements == 2
    assert codec.calls.count("quick") == result.quick_encodes
    assert codec.calls.count("finish") <= 1 + rate.FINISHES
    first = codec.calls.index("refine")
    assert codec.calls[first:first + 3] == ["refine", "finish", "refine"]
    assert codec.calls.count("quick") <= rate.QUICK_ENCODES


def test_a_search_refines_for_finishes_that_quantize_colours_in_one_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search finishes its refinement several times, each with `SEARCH_COLOR_ROUNDS` shares
    (not `plan.COLOR_ROUNDS`); the rest of its plan is the effort's own."""
    from gscodec.encoder.plan import COLOR_ROUNDS, plan_for

    codec = ModelCodec(monkeypatch, gain=1.15)
    plans = []
    refine = codec.refine_image
    monkeypatch.setattr(pipeline, "refine_image", lambda *args: plans.append(args[-1]) or refine(*args))
    rate.encode_to_rate(np.zeros((H, W, 3), np.float32), 1.0, 4)
    assert plans and rate.SEARCH_COLOR_ROUNDS < COLOR_ROUNDS
    for plan in plans:
        assert plan.color_rounds == rate.SEARCH_COLOR_ROUNDS
        assert plan.iterations == plan_for(50, 4, H, W).iterations


def test_quick_encodes_above_effort_0_skip_pruning_and_round_the_geometry(monkeypatch: pytest.MonkeyPatch) -> None:
    plans = []
    monkeypatch.setattr(pipeline, "encode_image", lambda rgb, quality, effort, *args: plans.append(args[-1]) or b"")
    rgb = np.zeros((H, W, 3), np.float32)
    rate.quick_encode(rgb, 50.0, 1)
    rate.quick_encode(rgb, 50.0, 0)
    assert plans[0].prune == 0 and plans[0].iterations == 0
    assert not plans[0].centres_by_rate and not plans[0].shapes_by_rate and not plans[0].grid_rounds  # rounded
    assert plans[1] is None  # effort 0's own plan, pruned: the encode a search at effort 0 returns


@pytest.mark.parametrize("points", [{50.0: 1.0}, {50.0: 1.0, 50.5: 1.3}, {40.0: 0.5, 50.0: 1.0, 60.0: 1.5}])
def test_quick_line_follows_the_points_with_a_slope_kept_near_the_typical(points: dict[float, float]) -> None:
    """One point: the typical slope; two noisy points half a quality apart (slope 0.6): at most
    twice the typical; three on a line of slope 0.05: that line."""
    line = rate.quick_line(points, 0.1)
    nearest = min(points, key=lambda q: abs(q - 70.0))
    slope = (line(70.0) - points[nearest]) / (70.0 - nearest)
    assert slope == pytest.approx({1: 0.1, 2: 0.2, 3: 0.05}[len(points)])
    assert line(nearest) == pytest.approx(points[nearest])


class JumpModelCodec(ModelCodec):
    """As `ModelCodec`, but the position step moves by whole octaves (as `quant.layer` rounds it):
    rate falls by 0.08 in log per octave of position step, by 0.07 per octave of colour steps."""

    def encode_refined(self, refined: float, factors: tuple[float, ...], prune: float = 0.0) -> bytes:
        self.calls.append("finish")
        change = 0.08 * round(factors[0]) + 0.07 * factors[3]
        return self.bytes_for(self.refined_bpp(refined) * math.exp(-change))


@pytest.mark.parametrize("target", [0.3, 1.0])
def test_a_target_in_the_position_steps_jump_is_reached_by_colour_steps(
        monkeypatch: pytest.MonkeyPatch, target: float) -> None:
    """Refinement multiplying the rate by 1.08 times what the prior expects (+0.077 in log):
    position and colour steps half an octave coarser take 0.035 off, just past it 0.115, so
    no shift of both lands within 3 %. Colour steps alone, at the position step of the closer end,
    do, with no second refinement."""
    codec = JumpModelCodec(monkeypatch, gain=1.08)
    data = rate.encode_to_rate(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(bpp(data) / target - 1) <= rate.RATE_TOLERANCE
    assert codec.calls.count("refine") == 1
    assert codec.calls.count("finish") <= rate.FINISHES + rate.JUMP_FINISHES


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
    largest = codec.refined_bpp(100) * math.exp(ModelCodec.PER_SHIFT * rate.MAX_SHIFT)
    assert bpp(data) == pytest.approx(largest, rel=0.01)
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


class PsnrModelCodec(ModelCodec):
    """PSNR instead of rate (written into the bytes' length, read back by the measure): quick
    encodes at ``quick_db``, refinement adds what the prior expects plus ``gain`` dB, colour
    steps take 0.18 dB per octave coarser and give 0.1 dB per octave finer, and pruning takes
    0.9 dB per octave harder and gives 0.3 dB per octave lighter (a shift of half an octave
    either way: -0.99 and +0.35 dB, about the training crops')."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gain: float) -> None:
        super().__init__(monkeypatch, gain)
        measure = rate.psnr_measure(np.zeros((H, W, 3), np.float32))
        measure.of = lambda data: len(data) / 1000
        measure.model = None  # no removal costs here: the shifts are aimed by the secant alone
        monkeypatch.setattr(rate, "psnr_measure", lambda rgb: measure)
        self.measure = measure
        self.shifts: list[tuple[tuple[float, ...], float]] = []

    @staticmethod
    def quick_db(quality: float) -> float:  # 22 to 38 dB at quality 0 to 100
        return 22 + 0.16 * quality

    def encode_image(self, rgb, quality, effort, *args, **kwargs) -> bytes:
        self.calls.append("quick")
        return bytes(round(1000 * self.quick_db(quality)))

    def encode_refined(self, refined: float, factors: tuple[float, ...], prune: float = 0.0) -> bytes:
        self.calls.append("finish")
        self.shifts.append((factors, prune))
        prior = rate.effort_change(4, refined)[1]
        return bytes(round(1000 * (self.quick_db(refined) + prior + self.gain - self.loss(factors[3], prune))))

    @staticmethod
    def loss(colour: float, prune: float) -> float:
        """dB lost to colour steps 2**colour coarser than usual and pruning 2**prune harder."""
        return (0.18 * colour if colour > 0 else 0.1 * colour) + (0.9 * prune if prune > 0 else 0.3 * prune)


@pytest.mark.parametrize("target", [28.0, 31.0, 34.0])
@pytest.mark.parametrize("gain", [-0.5, -0.15, 0.0, 0.1, 0.5, 1.5])  # the prior's miss, dB
def test_a_psnr_prior_off_by_a_little_lands_in_one_refinement(
        monkeypatch: pytest.MonkeyPatch, target: float, gain: float) -> None:
    """Refinement adding 0.5 dB less to 1.5 dB more than the prior expects: colour steps (no
    position steps) and the pruning, shifted together, bring it to the target; 1.5 dB more
    takes the pruning on alone past the colour steps' half octave."""
    codec = PsnrModelCodec(monkeypatch, gain)
    data = rate.encode_to_psnr(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(len(data) / 1000 - target) <= rate.PSNR_TOLERANCE
    assert codec.calls.count("refine") == 1
    # beyond MAX_PSNR_SHIFT coarser, the pruning alone moves on
    assert all(f[:3] == (0, 0, 0) and f[3] == f[4] and f[3] == pytest.approx(
        min(prune / rate.PSNR_PRUNES, rate.MAX_PSNR_SHIFT)) for f, prune in codec.shifts)
    assert all(-rate.MAX_PSNR_SHIFT <= f[3] and prune <= rate.PSNR_PRUNES * rate.MAX_PSNR_COARSER
               for f, prune in codec.shifts)


@pytest.mark.parametrize("target", [28.0, 31.0, 34.0])
@pytest.mark.parametrize("gain", [-1.2, 4.5])
def test_a_psnr_prior_off_by_more_refines_again_instead_of_shifting_far(
        monkeypatch: pytest.MonkeyPatch, target: float, gain: float) -> None:
    """Refinement adding 1.2 dB less or 4.5 dB more than the prior expects: the shift reaches
    about 0.35 dB up and 1.9 dB down, so a second refinement, aimed with this image's miss, lands.
    The first is finished at the usual steps only: they miss by more than twice what the shift
    reaches that way (`Measure.reach`)."""
    codec = PsnrModelCodec(monkeypatch, gain)
    data = rate.encode_to_psnr(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(len(data) / 1000 - target) <= rate.PSNR_TOLERANCE
    assert codec.calls.count("refine") == 2
    first = codec.calls.index("refine")
    assert codec.calls[first:first + 3] == ["refine", "finish", "refine"]


def test_a_psnr_search_at_effort_0_aims_at_the_target_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """No refinement, so no headroom: the quick encode that is returned lands on the target."""
    codec = PsnrModelCodec(monkeypatch, 0.0)
    data = rate.encode_to_psnr(np.zeros((H, W, 3), np.float32), 30.0, 0)
    assert abs(len(data) / 1000 - 30.0) <= rate.PSNR_TOLERANCE
    assert set(codec.calls) == {"quick"}


def test_a_second_psnr_refinement_goes_the_way_the_usual_steps_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shift that costs nothing until 0.45 octaves coarser, then 1.35 dB: at the usual steps
    the refinement lands 1.2 dB above the target (the prior's headroom and 0.9 dB), the
    coarsest 0.15 dB below. Aimed at a lower quality (where the usual steps land), a
    second refinement reaches the target."""
    codec = PsnrModelCodec(monkeypatch, 0.9)
    monkeypatch.setattr(codec, "loss", lambda colour, prune: 1.35 if colour > 0.45 else 0.0)
    data = rate.encode_to_psnr(np.zeros((H, W, 3), np.float32), 30.0, 4)
    assert abs(len(data) / 1000 - 30.0) <= rate.PSNR_TOLERANCE
    assert codec.calls.count("refine") == 2


class SteeperPsnrModelCodec(PsnrModelCodec):
    """As `PsnrModelCodec`, but refinement's extra gain grows with quality, 0.08 dB per quality
    point above quality 20: refined PSNR rises faster with quality than the quick encodes and
    the prior say (as on some Kodak images at low qualities)."""

    def encode_refined(self, refined: float, factors: tuple[float, ...], prune: float = 0.0) -> bytes:
        self.gain = 0.08 * (refined - 20)
        return super().encode_refined(refined, factors, prune)


@pytest.mark.parametrize(("target", "second_shifted"), [(31.0, True), (34.0, False)])
def test_a_second_refinement_that_overshoots_is_followed_by_a_third_between_the_two(
        monkeypatch: pytest.MonkeyPatch, target: float, second_shifted: bool) -> None:
    """With the shift's reach as it was before the pruning went on alone (1 dB down), the
    first refinement lands 1.4-2.5 dB high; the second, aimed as if that miss held at
    every quality, lands 0.54 (31 dB) or 0.91 dB (34 dB) low, beyond what the shift reaches
    upwards (0.35 dB). A third, on the secant through the two refinements, lands. A refinement
    missing by more than twice the shift's reach that way is finished at the usual steps only."""
    codec = SteeperPsnrModelCodec(monkeypatch, 0.0)
    # the pruning stops where the steps do: the first refinement's miss is then beyond its reach
    codec.measure.max_coarser, codec.measure.reach = rate.MAX_PSNR_SHIFT, (1.0, 0.4)
    result = rate.search_psnr(np.zeros((H, W, 3), np.float32), target, 4)
    assert abs(len(result.data) / 1000 - target) <= rate.PSNR_TOLERANCE
    assert codec.calls.count("refine") == result.refinements == 3
    refines = [i for i, call in enumerate(codec.calls) if call == "refine"]
    # at 34 dB both miss by more than twice the reach: one finish each, at the usual steps
    assert (refines[1] - refines[0] > 2) == second_shifted
    assert (refines[2] - refines[1] > 2) == second_shifted


# removal costs of 1000 splats (spread as refined splats' are, some below zero) and the squared
# error they were computed at, for `PruningModel`'s tests
COSTS = np.exp(np.random.default_rng(0).normal(0.0, 1.5, 1000)) - 0.05
COSTS_TOTAL = 400.0


def test_the_pruning_model_adds_the_costs_a_shift_drops() -> None:
    model = rate.PruningModel(COSTS, COSTS_TOTAL, 2.0, rate.PSNR_PRUNES, 30.0, 3 * H * W)
    usual = pipeline.prune_threshold(2.0, COSTS_TOTAL, len(COSTS))
    coarser = pipeline.prune_threshold(2.0 * 2 ** rate.PSNR_PRUNES, COSTS_TOTAL, len(COSTS))  # an octave
    assert model.added(0.0) == 0.0
    assert model.added(-1.0) == pytest.approx(COSTS[(COSTS >= usual) & (COSTS < coarser)].sum())
    assert model.added(0.5) == pytest.approx(-COSTS[(COSTS >= usual / 2) & (COSTS < usual)].sum())
    error = 3 * H * W * 10 ** -3.0
    assert model.psnr(-1.0, 0.5) == pytest.approx(30.0 - 10 * math.log10(1 + 0.5 * model.added(-1.0) / error))
    assert model.psnr(-1.0, 0.5) < model.psnr(-0.5, 0.5) < model.psnr(0.0, 0.5) == 30.0 < model.psnr(0.5, 0.5)
    assert model.share(-0.7, model.psnr(-0.7, 0.4)) == pytest.approx(0.4)
    assert model.share(0.0, 29.0) is None  # the usual steps drop nothing more
    assert model.share(-0.7, 30.5) is None  # a coarser finish measuring higher says nothing


class PrunedPsnrModelCodec(PsnrModelCodec):
    """As `PsnrModelCodec`, but the refinement's finishes lose what a `PruningModel` of the
    removal costs `COSTS` predicts with the share ``share`` (not `PRUNED_ERROR_SHARE`), and
    colour steps a further 0.2 dB per octave coarser (which the model does not see)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gain: float, share: float) -> None:
        super().__init__(monkeypatch, gain)
        self.share = share
        self.measure.model = self.model

    def usual(self, quality: float) -> float:
        return self.quick_db(quality) + rate.effort_change(4, quality)[1] + self.gain

    def model(self, quality: float, prunes: float, usual: float) -> rate.PruningModel:
        assert usual == pytest.approx(self.usual(quality), abs=1e-3), "the model starts at the usual finish"
        return rate.PruningModel(COSTS, COSTS_TOTAL, 2.0, prunes, usual, 3 * H * W)

    def encode_refined(self, refined: float, factors: tuple[float, ...], prune: float = 0.0) -> bytes:
        self.calls.append("finish")
        self.shifts.append((factors, prune))
        truth = rate.PruningModel(COSTS, COSTS_TOTAL, 2.0, rate.PSNR_PRUNES, self.usual(refined), 3 * H * W)
        return bytes(round(1000 * (truth.psnr(-prune / rate.PSNR_PRUNES, self.share) - 0.2 * factors[3])))


@pytest.mark.parametrize("share", [0.4, 0.9])  # the truth's, where the model starts from 0.66
@pytest.mark.parametrize("gain", [-0.45, 0.4, 1.2])  # the prior's miss, dB
def test_psnr_shifts_aimed_by_the_pruning_model_land_in_three_finishes(
        monkeypatch: pytest.MonkeyPatch, gain: float, share: float) -> None:
    """The refinement lands 0.15 dB below to 1.5 dB above the target at the usual steps (the
    headroom and the prior's miss); the model, its share corrected by the second finish,
    brings the third onto the target at the latest."""
    codec = PrunedPsnrModelCodec(monkeypatch, gain, share)
    data = rate.encode_to_psnr(np.zeros((H, W, 3), np.float32), 30.0, 4)
    assert abs(len(data) / 1000 - 30.0) <= rate.PSNR_TOLERANCE
    assert codec.calls.count("refine") == 1
    assert 2 <= codec.calls.count("finish") <= 3


@pytest.mark.parametrize("target, gain, edge", [(0.11, 1.4, True), (1.0, 1.15, False)])
def test_a_refinement_at_the_end_of_the_quality_range_gets_more_finishes(
        monkeypatch: pytest.MonkeyPatch, target: float, gain: float, edge: bool) -> None:
    """Quality 0 refined gives more than 0.11 bpp: no other refinement can go lower, so its
    shift may take `EDGE_FINISHES` more finishes; in the range's middle, `FINISHES`."""
    ModelCodec(monkeypatch, gain=gain)
    budgets, qualities = [], []
    solve, refine = rate.solve, pipeline.refine_image

    def shift_budgets(f, x, slope, lo, *args):  # the shift's search starts at 0, its low end below 0
        if lo < 0:
            budgets.append(args[-1])
        return solve(f, x, slope, lo, *args)

    monkeypatch.setattr(rate, "solve", shift_budgets)
    monkeypatch.setattr(pipeline, "refine_image", lambda *args: qualities.append(args[1]) or refine(*args))
    rate.search_rate(np.zeros((H, W, 3), np.float32), target, 4)
    assert (qualities[0] == 0.0) == edge
    assert budgets == [rate.FINISHES + rate.EDGE_FINISHES * edge]
