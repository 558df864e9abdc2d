"""The optimisation encoder (gscodec.encoder.optimize) on its own, and through every render backend.

The encoder reaches the renderer only through `render_splats` and its autograd op, so
the torch reference backend on the CPU runs the very code path that the CUDA backend
runs on a GPU (tests/test_render_cuda.py repeats these checks there).
"""

from __future__ import annotations

import pytest
import torch
from test_render import random_splats

from gscodec.encoder.initializers import detail
from gscodec.encoder.optimize import Encoder, blur
from gscodec.encoder.plan import (
    EFFORT_ITERATIONS,
    HIGH_QUALITY_STEPS,
    SHORT_LR_SCALE,
    SHORT_STEP_FACTORS,
    SHORT_STEPS,
    Plan,
    plan_for,
)
from gscodec.format.color import YCBCR_TO_RGB
from gscodec.render.backends import render_mse, render_splats
from gscodec.splats import SplatTensors

H, W = 24, 40


def synthetic(backend: str = "numba") -> tuple[Encoder, SplatTensors]:
    """An encoder whose target is rendered from known splats, and those splats."""
    means, scales, angles, colors = random_splats(60, H, W, seed=4)
    target = render_splats(means, scales, angles, colors, H, W, backend="torch")
    return Encoder(target, seed=1, backend=backend), SplatTensors(means, scales, angles, colors)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_colour_solve_recovers_the_colours(backend: str) -> None:
    """The target is exactly representable: conjugate gradients find its colours."""
    enc, truth = synthetic(backend)
    start = SplatTensors(truth.means, truth.scales, truth.angles, torch.zeros_like(truth.colors))
    colors = enc.solve_colors(start, 200)
    fitted = render_splats(truth.means, truth.scales, truth.angles, colors, H, W, backend="torch")
    assert (fitted - enc.target).abs().max() < 1e-3
    assert enc.loss(SplatTensors(truth.means, truth.scales, truth.angles, colors)) < 1e-7


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_removal_costs_are_what_removing_each_splat_costs(backend: str) -> None:
    """`Encoder.removal_costs` (two adjoints) against removing each splat and rendering again
    (within 6 %: the squared weights come from a half-covariance render, whose footprint cut
    leaves out the smallest squared weights; measured here: at most 5 % off for costs above 1e-3)."""
    enc, s = synthetic(backend)
    g = torch.Generator().manual_seed(2)
    s = SplatTensors(s.means, s.scales, s.angles, s.colors + 0.05 * torch.randn(60, 3, generator=g))
    costs, total = enc.removal_costs(s)
    rgb = torch.from_numpy(YCBCR_TO_RGB).float().T

    def squared_error(t: SplatTensors) -> float:
        img = render_splats(t.means, t.scales, t.angles, t.colors, H, W, backend="torch")
        return float(((img - enc.target) @ rgb).square().sum())

    assert total == pytest.approx(squared_error(s), rel=1e-4)
    for i in range(60):
        keep = torch.arange(60) != i
        without = SplatTensors(s.means[keep], s.scales[keep], s.angles[keep], s.colors[keep])
        assert costs[i].item() == pytest.approx(squared_error(without) - total, rel=0.06, abs=1e-3)


def test_backends_fit_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Placement, colour solves, refinement and relocation on the torch reference match the
    numba kernels: the same losses, and the same splats but for a few that Adam (which
    divides by the gradients' size) carries a little apart from float32 rounding. (With the
    default rough solve after a relocation, 5 steps, float32 rounding carries one splat of
    60 about 2 px apart; 15 steps keep the comparison tight. With the default 24 % of the
    splats moved a relocation, both backends move the same splats, but placement, drawing more
    of them from error maps that differ in float32 rounding, puts two 8 px from where the other
    backend puts them (24 px after the second relocation); with 5 % the draws agree.)"""
    import gscodec.encoder.optimize

    monkeypatch.setattr(gscodec.encoder.optimize, "RELOCATION_SOLVE", 15)
    monkeypatch.setattr(gscodec.encoder.optimize, "RELOCATE_FRACTION", 0.05)
    results = {}
    for backend in ("numba", "torch"):
        enc, _ = synthetic(backend)
        s = detail(enc, Plan(40, 8, 0), 50).splats
        before = enc.loss(s).item()
        s = enc.refine(s, 30)  # relocates every 10 steps
        results[backend] = (before, enc.loss(s).item(), s)
    (b0, a0, s0), (b1, a1, s1) = results["numba"], results["torch"]
    assert a0 < 0.5 * b0  # refinement helps
    assert b1 == pytest.approx(b0, rel=1e-4)
    assert a1 == pytest.approx(a0, rel=2e-2)
    moved = (s1.means - s0.means).abs().amax(1)
    assert moved.median() < 0.05 and moved.max() < 1.0


def test_refine_zero_steps_is_identity() -> None:
    enc, truth = synthetic()
    assert enc.refine(truth, 0) is truth


@pytest.mark.parametrize(("relocations", "expected"), [(0, 0), (2, 1), (12, 3)])
def test_refine_relocates_as_often_as_asked(relocations: int, expected: int, monkeypatch) -> None:
    """40 steps: every 40 // relocations steps, at least 10 apart, in the first 3/4 only
    (2: after step 20; 12: after steps 10, 20, 30)."""
    enc, truth = synthetic()
    calls = []
    original = enc.relocate
    monkeypatch.setattr(enc, "relocate", lambda s, k: calls.append(k) or original(s, k))
    out = enc.refine(truth, 40, relocations=relocations)
    assert len(calls) == expected
    assert out.means.shape == truth.means.shape


def test_relocation_moves_the_weakest_and_solves_only_their_colours() -> None:
    """The k splats whose removal costs least move; the others keep every value; the moved ones
    get colours that lower the error against what the others leave (zero colours would not)."""
    _, truth = synthetic()
    # the target holds all but the first six, which are faint (removing one costs nearly
    # nothing), and a blob that no splat covers, for the moved ones to fit
    blob = render_splats(torch.tensor([[W / 2, H / 2]]), torch.tensor([[3.0, 3.0]]), torch.zeros(1),
                         torch.tensor([[0.1, 0.03, -0.03]]), H, W, backend="torch")
    target = blob + render_splats(truth.means[6:], truth.scales[6:], truth.angles[6:], truth.colors[6:], H, W,
                                  backend="torch")
    enc = Encoder(target, seed=1)
    colors = truth.colors.clone()
    colors[:6] *= 0.01
    s = SplatTensors(truth.means, truth.scales, truth.angles, colors)
    out = enc.relocate(s, 6)
    moved = (out.means != s.means).any(1)
    assert moved[:6].all() and not moved[6:].any()
    for a, b in zip((out.means, out.scales, out.angles, out.colors), (s.means, s.scales, s.angles, s.colors),
                    strict=True):
        assert torch.equal(a[6:], b[6:])
    assert out.colors[:6].abs().sum() > 0
    blank = SplatTensors(out.means, out.scales, out.angles, torch.cat([torch.zeros(6, 3), out.colors[6:]]))
    assert enc.loss(out) < enc.loss(blank)


def test_relocation_moves_a_splat_that_only_adds_error_first() -> None:
    """Removal cost, not energy, picks what moves: a bright splat the target does not hold
    (removing it lowers the error) moves before the faintest splat of the target."""
    enc, truth = synthetic()
    intruder = SplatTensors(torch.tensor([[W / 2, H / 2]]), torch.tensor([[3.0, 3.0]]), torch.zeros(1),
                            torch.tensor([[0.8, 0.3, -0.3]]))
    s = SplatTensors(*(torch.cat([a, b]) for a, b in zip(
        (truth.means, truth.scales, truth.angles, truth.colors),
        (intruder.means, intruder.scales, intruder.angles, intruder.colors), strict=True)))
    energy = s.colors.square().sum(1) * s.scales.prod(1)
    assert energy[-1] > energy.min() * 10  # by energy it would stay
    out = enc.relocate(s, 1)
    moved = (out.means != s.means).any(1)
    assert moved[-1] and moved.sum() == 1


@pytest.mark.parametrize("weighted", [False, True])
def test_render_mse_matches_the_torch_expression(weighted: bool) -> None:
    """The numba path's fused render and error (forward, and backward at any upstream
    gradient) against the expression on the torch reference's render; weighted, on a window
    away from the origin."""
    means, scales, angles, colors = random_splats(300, 37, 41, seed=5)
    target = torch.randn(37, 41, 3, generator=torch.Generator().manual_seed(0))
    m = torch.from_numpy(YCBCR_TO_RGB).float().T.contiguous()
    weight = torch.rand(30, 33, generator=torch.Generator().manual_seed(1)) if weighted else None
    origin = (4, 6) if weighted else (0, 0)
    target = target[: 30, : 33] if weighted else target

    def run(backend: str):
        params = [t.clone().requires_grad_(True) for t in (means, scales, angles, colors)]
        loss = render_mse(*params, target, m, weight=weight, origin=origin, backend=backend)
        (3 * loss).backward()
        return loss.item(), [p.grad for p in params]

    (got, grads), (want, ref_grads) = run("numba"), run("torch")
    assert got == pytest.approx(want, rel=1e-5)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
    # other dtypes take the expression on the render
    wide = render_mse(means.double(), scales.double(), angles.double(), colors.double(), target.double(), m.double(),
                      weight=None if weight is None else weight.double(), origin=origin)
    assert wide.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_blur_is_a_renormalised_zero_padded_gaussian(sigma: float) -> None:
    """Against the blur written as a dense sum: every output pixel is the Gaussian-weighted
    mean of the map's pixels within 3 sigma (a square window), the weights cut at the border."""
    x = torch.rand(13, 17, generator=torch.Generator().manual_seed(0))
    r = max(1, int(3 * sigma))
    ys, xs = torch.meshgrid(torch.arange(13.0), torch.arange(17.0), indexing="ij")
    expected = torch.empty_like(x)
    for i in range(13):
        for j in range(17):
            wgt = torch.exp(-0.5 * ((ys - i) ** 2 + (xs - j) ** 2) / sigma**2)
            wgt = wgt * (((ys - i).abs() <= r) & ((xs - j).abs() <= r))
            expected[i, j] = (wgt * x).sum() / wgt.sum()
    assert torch.allclose(blur(x, sigma), expected, atol=1e-6)


def test_placement_beyond_multinomial_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Images over torch.multinomial's 2^24 categories sample with Gumbel top-k: the same kind
    of draw (distinct pixels, following the weight), tested here with the limit lowered."""
    from gscodec.encoder import optimize

    weight = torch.zeros(64, 64)
    weight[:, :16] = 1.0  # only the left quarter has weight
    monkeypatch.setattr(optimize, "MULTINOMIAL_MAX", 100)
    points = optimize._sample_positions(weight, 200, torch.Generator().manual_seed(0))
    pixels = points.floor().long()
    assert len({(int(x), int(y)) for x, y in pixels}) == 200  # without replacement
    assert (pixels[:, 0] < 16).all()


def test_polish_trains_only_the_named_attributes() -> None:
    """The attributes left out stay bit for bit as given (on the quantizer's grid, say); the
    loss falls."""
    enc, truth = synthetic()
    g = torch.Generator().manual_seed(6)
    start = SplatTensors(truth.means + 0.3 * torch.randn(truth.means.shape, generator=g), truth.scales * 1.2,
                         truth.angles, truth.colors)
    out = enc.polish(start, 20, ("angles", "colors"))
    assert torch.equal(out.means, start.means)
    assert torch.allclose(out.scales, start.scales, rtol=1e-6)  # through exp(log(.)) only
    assert not torch.equal(out.colors, start.colors)
    assert enc.loss(out) < enc.loss(start)
    assert enc.polish(start, 0, ("colors",)) is start


def test_snap_gives_the_decoders_geometry() -> None:
    """Snapped geometry is what the decoder reconstructs from the written stream, and snapping
    is idempotent; a partial snap moves only the named attributes (up to the quantizer's fold
    of shapes into canonical form)."""
    import numpy as np

    from gscodec.encoder.pipeline import snap
    from gscodec.format.codec import decode_splats
    from gscodec.quant.policy import steps_for_quality
    from gscodec.quant.stream import encode_splats
    from gscodec.splats import Splats

    _, truth = synthetic()
    layer = torch.arange(60) % 2
    sizes, steps = (8, 4), steps_for_quality(60)
    full, full_layer = snap(truth, layer, sizes, steps, W, H, ("means", "scales", "angles"))
    again, _ = snap(full, full_layer, sizes, steps, W, H, ("means", "scales", "angles"))
    for name in ("means", "scales", "angles"):
        torch.testing.assert_close(getattr(full, name), getattr(again, name), rtol=0, atol=1e-6)
    written = Splats.from_tensors(full, width=W, height=H, layer=full_layer.numpy(), patch_sizes=sizes)
    decoded = decode_splats(encode_splats(written, steps=steps))
    for index in range(len(sizes)):
        mine = written.select(written.layer == index)
        theirs = decoded.select(decoded.layer == index)
        key = lambda s: np.lexsort((s.means[:, 1], s.means[:, 0]))  # noqa: E731
        np.testing.assert_allclose(mine.means[key(mine)], theirs.means[key(theirs)], atol=1e-5)
        np.testing.assert_allclose(mine.scales[key(mine)], theirs.scales[key(theirs)], rtol=1e-5)
    means_only, _ = snap(truth, layer, sizes, steps, W, H, ("means",))
    torch.testing.assert_close(means_only.means, full.means)
    assert not torch.allclose(means_only.scales, full.scales)


def test_plan_grows_the_default_effort_above_the_default_quality_and_no_effort_refines_less() -> None:
    at = {q: plan_for(q, 1, 512, 768) for q in (0, 50, 75, 100)}
    assert at[0].iterations == at[50].iterations == EFFORT_ITERATIONS[1]
    grown = round(HIGH_QUALITY_STEPS * EFFORT_ITERATIONS[1])
    assert EFFORT_ITERATIONS[1] < at[75].iterations < at[100].iterations == grown
    assert at[100].polish_steps == round(HIGH_QUALITY_STEPS * at[50].polish_steps)
    for effort in range(1, len(EFFORT_ITERATIONS)):
        for q in (50, 75, 90, 100):
            mine, default = plan_for(q, effort, 512, 768), plan_for(q, 1, 512, 768)
            assert mine.iterations == max(EFFORT_ITERATIONS[effort], default.iterations)
            assert mine.polish_steps >= default.polish_steps
            # a refinement that starts short stays short (its rates and steps)
            assert mine.lr_scale == (SHORT_LR_SCALE if EFFORT_ITERATIONS[effort] <= SHORT_STEPS else 1.0)
    # the short refinements (efforts 1 and 2) take the larger rates; effort 3 its own
    assert plan_for(50, 2, 512, 768).lr_scale == SHORT_LR_SCALE
    assert plan_for(50, 3, 512, 768).lr_scale == 1.0
    # and code with coarser steps (`pipeline.default_steps`)
    assert plan_for(50, 1, 512, 768).step_factors == plan_for(50, 2, 512, 768).step_factors == SHORT_STEP_FACTORS
    assert not any(plan_for(50, 0, 512, 768).step_factors) and not any(plan_for(50, 3, 512, 768).step_factors)


def test_default_steps_follow_the_plan() -> None:
    from gscodec.encoder.pipeline import Refined, default_steps
    from gscodec.quant.policy import adapt, steps_for_quality

    start = detail(Encoder(torch.rand(32, 32, 3)), Plan(8, 8, 0), 60)
    assert start.steps is None  # detail placement leaves the steps to the policy
    for effort in (1, 3):
        plan = plan_for(60, effort, 32, 32)
        steps = default_steps(Refined(None, plan, start, start.splats, None, 60))
        assert steps == adapt(steps_for_quality(60), plan.step_factors)
    assert steps == steps_for_quality(60)  # effort 3: the policy's own


def test_a_refinement_finishes_the_same_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate control finishes one refinement with several steps (`rate.encode_refined`), the
    pruning computed once: finishing again with the usual steps gives the same bytes."""
    import numpy as np

    from gscodec.encoder import pipeline
    from gscodec.encoder.rate import POSITION_AND_COLOUR, encode_refined

    prunes = []
    prune = pipeline.prune
    monkeypatch.setattr(pipeline, "prune", lambda *args: prunes.append(1) or prune(*args))
    rng = np.random.default_rng(0)
    rgb = np.clip(np.linspace(0, 1, 48 * 64 * 3).reshape(48, 64, 3) + 0.1 * rng.random((48, 64, 3)), 0, 1)
    refined = pipeline.refine_image(rgb.astype(np.float32), 50, 1)
    first = encode_refined(refined, (0.0,) * 5)
    coarser = encode_refined(refined, POSITION_AND_COLOUR)  # an octave coarser
    assert len(coarser) < len(first)
    assert encode_refined(refined, (0.0,) * 5) == first
    assert len(prunes) == 1


def test_harder_pruning_finishes_smaller_with_the_removal_costs_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PSNR search finishes one refinement at several pruning strengths (`rate.PSNR_PRUNES`):
    harder pruning keeps fewer splats, each strength is pruned once, and the removal costs, the
    same for every strength, are computed once."""
    import numpy as np

    from gscodec.encoder import pipeline
    from gscodec.encoder.rate import encode_refined
    from gscodec.format.codec import decode_splats

    rng = np.random.default_rng(1)
    rgb = np.clip(np.linspace(0, 1, 48 * 64 * 3).reshape(48, 64, 3) + 0.2 * rng.random((48, 64, 3)), 0, 1)
    refined = pipeline.refine_image(rgb.astype(np.float32), 60, 1)
    costs = []  # counted after refinement, whose relocations have removal costs of their own
    removal_costs = Encoder.removal_costs
    monkeypatch.setattr(Encoder, "removal_costs", lambda self, s: costs.append(1) or removal_costs(self, s))
    usual = len(decode_splats(encode_refined(refined, (0.0,) * 5)))
    harder = len(decode_splats(encode_refined(refined, (0.0,) * 5, prune=1.5)))
    lighter = len(decode_splats(encode_refined(refined, (0.0,) * 5, prune=-1.5)))
    assert lighter > usual > harder
    assert encode_refined(refined, (0.0,) * 5, prune=1.5) == encode_refined(refined, (0.0,) * 5, prune=1.5)
    assert len(refined._pruned) == 3
    assert len(costs) == 1


def no_bits(rows: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return torch.zeros(indices.shape[:2])


@pytest.mark.parametrize("rounds", [1, 4])
def test_quantized_colours_lie_on_the_grid_and_err_less_in_shares(rounds: int) -> None:
    """`Encoder.quantize_colors` gives multiples of the step; without a price on bits, one share
    picks per splat the grid colour nearest in weighted RGB error, and more shares, each made up
    for by the colours still free, end with less error than rounding every colour at once."""
    enc, truth = synthetic()
    step = torch.tensor([0.05, 0.08, 0.08])
    colors = enc.quantize_colors(truth, step, no_bits, 0.0, rounds)
    indices = colors / step
    torch.testing.assert_close(indices, torch.round(indices), rtol=0, atol=1e-4)

    def error(c: torch.Tensor) -> float:
        return float(enc.loss(SplatTensors(truth.means, truth.scales, truth.angles, c)))

    rounded = torch.round(truth.colors / step) * step
    if rounds == 1:
        assert ((colors - truth.colors).abs() <= step + 1e-6).all()  # every channel down or up, no further
        assert error(colors) <= error(rounded)
    else:
        assert error(colors) < 0.8 * error(enc.quantize_colors(truth, step, no_bits, 0.0, 1))


def test_a_price_on_bits_draws_colours_to_the_cheap_indices() -> None:
    """A splat's colour goes to the grid value whose bits cost least once bits are priced
    high; with no price, the nearest."""
    enc, truth = synthetic()
    g = torch.Generator().manual_seed(5)  # colours off the target's, so that a bit has a price
    truth = SplatTensors(truth.means, truth.scales, truth.angles, truth.colors + 0.05 * torch.randn(60, 3, generator=g))
    step = torch.tensor([0.5, 0.5, 0.5])

    def zero_is_cheap(rows: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return (indices != 0).sum(-1).to(torch.float32) * 8.0

    cheap = enc.quantize_colors(truth, step, zero_is_cheap, 1e6, 1)
    nearest = enc.quantize_colors(truth, step, zero_is_cheap, 0.0, 1)
    reachable = (truth.colors.abs() < step).all(1)  # zero is floor or ceil in every channel
    assert reachable.sum() > 10
    assert (cheap[reachable] == 0).all()
    assert (nearest != 0).any()


def test_code_lengths_are_the_adaptive_models_order_0_lengths() -> None:
    import numpy as np

    from gscodec.quant.layer import code_lengths

    first, bits = code_lengths(np.array([3, 3, 3, 4]))
    assert first == 2  # one below the least, up to one above the largest
    weights = np.array([1.0, 7.0, 3.0, 1.0])  # 2h + 1 for the values 2, 3, 4, 5
    np.testing.assert_allclose(bits, np.log2(weights.sum() / weights))
    assert code_lengths(np.zeros(0, np.int64))[1].shape == (1,)


def test_finished_colours_are_what_the_decoder_reads() -> None:
    """The finish puts the colours on the quantizer's own grid: the stream holds them exactly."""
    import numpy as np

    from gscodec.encoder import pipeline
    from gscodec.format.codec import decode_splats
    from gscodec.quant.stream import encode_splats

    rng = np.random.default_rng(3)
    rgb = np.clip(np.linspace(0, 1, 48 * 64 * 3).reshape(48, 64, 3) + 0.2 * rng.random((48, 64, 3)), 0, 1)
    splats, steps = pipeline.finish(pipeline.refine_image(rgb.astype(np.float32), 60, 1))
    decoded = decode_splats(encode_splats(splats, steps=steps))
    key = lambda s: np.lexsort((s.means[:, 1], s.means[:, 0], s.layer))  # noqa: E731
    np.testing.assert_allclose(decoded.colors[key(decoded)], splats.colors[key(splats)], rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_replacement_costs_are_what_replacing_each_splat_costs(backend: str) -> None:
    """`Encoder.replacement_costs` against replacing each splat by its candidate (moved,
    reshaped), solving its colour alone and rendering again. The CPU's sums are exact; the
    torch backend's come from renders whose footprint cut leaves out the smallest squared and
    cross weights (as in `removal_costs`): measured here, up to 0.008 off for costs near 0.01,
    6 % for costs above 0.1."""
    enc, s = synthetic(backend)
    g = torch.Generator().manual_seed(7)
    s = SplatTensors(s.means, s.scales, s.angles, s.colors + 0.05 * torch.randn(60, 3, generator=g))
    candidate = (s.means + 0.4 * torch.randn(60, 2, generator=g),
                 s.scales * torch.exp(0.2 * torch.randn(60, 2, generator=g)),
                 s.angles + 0.3 * torch.randn(60, generator=g))
    costs, total = enc.replacement_costs(s, [(s.means, s.scales, s.angles), candidate])
    rgb = torch.from_numpy(YCBCR_TO_RGB).float().T.double()

    def best_error(means: torch.Tensor, scales: torch.Tensor, angles: torch.Tensor, i: int) -> float:
        """The squared RGB error with splat i as given, its colour the least-squares one."""
        others = torch.arange(60) != i
        rest = render_splats(means[others], scales[others], angles[others], s.colors[others], H, W, backend="torch")
        alone = render_splats(means[i:i + 1], scales[i:i + 1], angles[i:i + 1], torch.ones(1, 1), H, W, backend="torch")
        residual, w = ((enc.target - rest).double() @ rgb).reshape(-1, 3), alone.double().reshape(-1, 1)
        color = (w * residual).sum(0) / w.square().sum().clamp(min=1e-12)
        return float((residual - w * color).square().sum())

    assert total > 0
    tolerance = dict(rel=1e-3, abs=1e-5) if backend == "numba" else dict(rel=0.1, abs=0.01)
    for i in range(60):
        now = best_error(s.means, s.scales, s.angles, i)
        means, scales, angles = (torch.where(torch.arange(60)[:, None] == i, c, t) if c.dim() > 1
                                 else torch.where(torch.arange(60) == i, c, t)
                                 for c, t in zip(candidate, (s.means, s.scales, s.angles), strict=True))
        assert costs[i, 0].item() == pytest.approx(0.0, abs=tolerance["abs"])
        assert costs[i, 1].item() == pytest.approx(best_error(means, scales, angles, i) - now, **tolerance)


def test_chosen_centres_and_shapes_are_on_the_grid_and_beat_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """`choose_centres` keeps each centre within a cell of the one holding it and
    `choose_shapes` each log-scale and angle within a step of its own, all on the quantizer's
    grid (snapping leaves them); with no price on bits each splat's choice costs no more than
    rounding (by `Encoder.replacement_costs`)."""
    import numpy as np

    from gscodec.encoder import pipeline
    from gscodec.quant.layer import canonical_shape
    from gscodec.quant.policy import steps_for_quality

    enc, truth = synthetic()
    g = torch.Generator().manual_seed(10)
    inside = torch.minimum(truth.means.clamp(min=0), torch.tensor([W - 0.01, H - 0.01]))  # as refinement keeps them
    s = SplatTensors(inside, truth.scales * torch.exp(0.1 * torch.randn(60, 2, generator=g)),
                     truth.angles, truth.colors)
    layer, sizes, steps = torch.arange(60) % 2, (8, 4), steps_for_quality(60)
    centred = pipeline.choose_centres(enc, s, layer, sizes, steps)
    assert ((centred.means - s.means).abs() <= 1.5 * steps.pos_step + 1e-5).all()
    shaped = pipeline.choose_shapes(enc, centred, layer, steps)
    snapped, kept = pipeline.snap(shaped, layer, sizes, steps, W, H, ("means", "scales", "angles"))
    assert len(kept) == 60
    torch.testing.assert_close(snapped.means, shaped.means, rtol=0, atol=1e-5)
    # the same Gaussians (a round splat's angle and the order of its axes are the quantizer's)
    def render(t: SplatTensors) -> torch.Tensor:
        return render_splats(t.means, t.scales, t.angles, t.colors, H, W, backend="torch")

    torch.testing.assert_close(render(snapped), render(shaped), rtol=0, atol=1e-5)
    before, _ = canonical_shape(centred.scales.numpy(), centred.angles.numpy())
    after, _ = canonical_shape(shaped.scales.numpy(), shaped.angles.numpy())
    assert (np.abs(np.log2(after / before)) * steps.scale_den <= 1 + 1e-4).all()

    monkeypatch.setattr(pipeline, "GEOMETRY_PRICE", 0.0)
    free = pipeline.choose_shapes(enc, centred, layer, steps)
    rounded, _ = pipeline.snap(centred, layer, sizes, steps, W, H, ("means", "scales", "angles"))
    costs, _ = enc.replacement_costs(centred, [(free.means, free.scales, free.angles),
                                               (rounded.means, rounded.scales, rounded.angles)])
    assert (costs[:, 0] <= costs[:, 1] + 1e-6).all()
    assert (costs[:, 0] < costs[:, 1] - 1e-6).any()


def test_moves_on_the_grid_stay_on_it_one_step_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`finish`'s rounds on the grid (``on_grid``): each centre stays or moves one cell along one
    axis, each shape one step in one of major, minor and angle; all stay on the grid, and with
    no price on bits no splat's move costs more than staying."""
    import numpy as np

    from gscodec.encoder import pipeline
    from gscodec.quant.layer import canonical_shape
    from gscodec.quant.policy import steps_for_quality

    enc, truth = synthetic()
    g = torch.Generator().manual_seed(11)
    inside = torch.minimum(truth.means.clamp(min=0), torch.tensor([W - 0.01, H - 0.01]))
    s = SplatTensors(inside + 0.3 * torch.randn(60, 2, generator=g),
                     truth.scales * torch.exp(0.2 * torch.randn(60, 2, generator=g)), truth.angles, truth.colors)
    layer, sizes, steps = torch.arange(60) % 2, (8, 4), steps_for_quality(60)
    s, layer = pipeline.snap(s, layer, sizes, steps, W, H, ("means", "scales", "angles"))
    monkeypatch.setattr(pipeline, "GEOMETRY_PRICE", 0.0)
    moved = pipeline.choose_centres(enc, s, layer, sizes, steps, on_grid=True)
    cells = ((moved.means - s.means).abs() / steps.pos_step).round()
    assert (cells.sum(1) <= 1).all() and (cells.sum(1) == 1).any()
    shaped = pipeline.choose_shapes(enc, moved, layer, steps, on_grid=True)
    snapped, kept = pipeline.snap(shaped, layer, sizes, steps, W, H, ("means", "scales", "angles"))
    assert len(kept) == len(s.means)
    torch.testing.assert_close(snapped.means, shaped.means, rtol=0, atol=1e-5)
    before, turn_before = canonical_shape(moved.scales.numpy(), moved.angles.numpy())
    after, turn_after = canonical_shape(shaped.scales.numpy(), shaped.angles.numpy())
    scale_steps = np.abs(np.log2(after / before)) * steps.scale_den
    turned = np.abs(np.angle(np.exp(1j * (turn_after - turn_before) * 2))) / 2 / (np.pi / steps.angle_levels)
    assert (np.rint(scale_steps).sum(1) + np.rint(turned) * (before[:, 0] > before[:, 1]) <= 1).all()
    for chosen, start in ((moved, s), (shaped, moved)):
        costs, _ = enc.replacement_costs(start, [(chosen.means, chosen.scales, chosen.angles)])
        assert (costs <= 1e-6).all()
        assert (costs < -1e-6).any()


def test_a_chroma_group_is_dropped_where_its_bits_cost_more_than_its_error() -> None:
    """`Encoder.quantize_colors` drops a group's chroma (0, for good) when its bits are priced
    above the error dropping it adds, keeps it when they are not, and stops at the first group
    it keeps; luma is never dropped."""
    enc, truth = synthetic()
    g = torch.Generator().manual_seed(6)  # colours off the target's, so that a bit has a price
    truth = SplatTensors(truth.means, truth.scales, truth.angles, truth.colors + 0.02 * torch.randn(60, 3, generator=g))
    step = torch.tensor([0.05, 0.05, 0.05])
    first, second = torch.arange(60) < 30, torch.arange(60) >= 30
    kept = enc.quantize_colors(truth, step, no_bits, 1.0, 1, [(first, 0.0), (second, 1e9)])
    assert (kept[:, 1:] != 0).any(1).sum() > 40  # the first group costs error and no bits: both kept

    dropped = enc.quantize_colors(truth, step, no_bits, 1.0, 4, [(first, 1e9), (second, 0.0)])
    assert (dropped[first, 1:] == 0).all()  # on the grid and zero, through the shares' solves
    assert (dropped[second, 1:] != 0).any(1).sum() > 20
    assert (dropped[:, 0] != 0).any()
    torch.testing.assert_close(dropped / step, torch.round(dropped / step), rtol=0, atol=1e-4)


def test_the_finish_drops_the_chroma_of_layers_whose_bits_cost_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """With bits priced far above squared error, every layer drops its chroma: each layer's Cb
    and Cr take one level, which the format codes in no bits; without the drops (or at the
    usual price, on a colourful image) the chroma is coded."""
    import dataclasses

    import numpy as np

    from gscodec.encoder import pipeline
    from gscodec.format.codec import stream_bits
    from gscodec.format.container import parse
    from gscodec.quant.stream import encode_splats

    image = render_splats(*random_splats(150, 64, 96, seed=7), 64, 96, backend="torch").numpy()  # colourful
    rgb = np.clip(0.5 + 0.5 * image / np.abs(image).max(), 0, 1).astype(np.float32)
    refined = pipeline.refine_image(rgb, 60, 1)

    def finished(chroma_by_rate: bool) -> bytes:
        plan = dataclasses.replace(refined.plan, chroma_by_rate=chroma_by_rate)
        splats, steps = pipeline.finish(dataclasses.replace(refined, plan=plan))
        return encode_splats(splats, steps=steps)

    usual = stream_bits(finished(True))[1]
    assert usual["Cb"] > 0 and usual["Cr"] > 0  # at the usual price this image's chroma pays
    monkeypatch.setattr(pipeline, "SQUARED_ERROR_PER_BIT", 1e6)
    assert stream_bits(finished(False))[1]["Cb"] > 0
    data = finished(True)
    _, chunks = parse(data)
    assert len(chunks) > 1 and all(chunk.params.color_levels[1:] == (1, 1) for chunk in chunks)
    bits = stream_bits(data)[1]
    assert bits["Cb"] == bits["Cr"] == 0 < bits["Y"]
