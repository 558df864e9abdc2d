"""The staged predictor: network shapes, Stage Control, the initializer, weights, training.

Everything here runs tiny, randomly initialised models; only benchmarks need the
shipped weights (one test checks they load and encode).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gscodec
from gscodec import GscError
from gscodec.predictor import initializer
from gscodec.predictor import model as model_io
from gscodec.predictor.initializer import StagePlan, predict, quantizer_steps, stage_plan
from gscodec.predictor.network import MIN_SCALE, PredictorConfig, StagedPredictor, candidates, stage_control
from gscodec.quant.policy import Steps, adapt, steps_for_quality
from tests.conftest import smooth_image

ROOT = Path(__file__).resolve().parent.parent


def tiny(seed: int = 0) -> StagedPredictor:
    torch.manual_seed(seed)
    return StagedPredictor(PredictorConfig(channels=8, blocks=1)).eval()


def test_network_shapes_and_candidate_ranges() -> None:
    net = tiny()
    image = torch.randn(2, 3, 32, 48) * 0.1
    for stage, patch in enumerate(net.config.patch_sizes):
        raw, mean_residual, summary = net(image, image, stage)
        assert raw.shape == (2, 8, 32 // patch, 48 // patch) and summary.shape == (2, 16)
        means, scales, angles, colors = candidates(raw * 50, mean_residual, patch)  # extreme raw values
        rows, cols = 32 // patch, 48 // patch
        centre = (torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")[::-1], -1)
                  .reshape(-1, 2) + 0.5) * patch
        assert (means - centre).abs().max() <= patch  # within one patch of its patch centre
        assert scales.min() >= MIN_SCALE and torch.isfinite(scales).all()
        assert colors.shape == (2, rows * cols, 3) and angles.shape == (2, rows * cols)


def test_stage_control_threshold_and_budget() -> None:
    error = torch.zeros(1, 8, 8)
    error[0, :4, :4] = 1.0  # patch (0, 0) of 4x4 patches: worst
    error[0, 4:, 4:] = 0.5  # patch (1, 1)
    error[0, :4, 4:] = 0.01  # patch (0, 1)
    assert stage_control(error, 4, 0.1).tolist() == [[[True, False], [False, True]]]
    assert stage_control(error, 4, 0.001).sum() == 3
    assert stage_control(error, 4, 0.001, budget=1).tolist() == [[[True, False], [False, False]]]
    assert stage_control(error, 4, 0.001, budget=0).sum() == 0
    assert stage_control(error, 4, 2.0, budget=4).sum() == 0  # the threshold still applies


def test_stage_plan_shares_the_budget() -> None:
    plan = stage_plan(10_000, 1_000)
    assert plan.stages == 4 and sum(plan.budgets) == 9_000
    assert stage_plan(1_000, 1_000).stages == 1  # stage 0 alone fills the budget
    assert stage_plan(1_030, 1_000).budgets == (12,)  # later shares under 1 % of the total are skipped


@pytest.mark.parametrize(("h", "w"), [(20, 30), (16, 16), (5, 3)])
def test_predict_any_size(h: int, w: int) -> None:
    target = torch.from_numpy(smooth_image(h, w).astype(np.float32) / 255) - 0.5
    plan = StagePlan((5, 4, 3))
    stages, summary = predict(target, plan, tiny())
    assert len(stages) == 4 and summary.shape == (1, 16)
    assert len(stages[0].means) == -(-h // 16) * -(-w // 16)  # one per patch of the image, none in the padding
    assert [len(s.means) for s in stages[1:]] <= [5, 4, 3] and all(len(s.means) <= b for s, b in zip(
        stages[1:], plan.budgets, strict=True))


def test_predict_runs_the_planless_stages_once_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stages 0 and 1 do not depend on the plan: within `sharing_stages` a second plan for the
    same image reuses them and gives what a fresh run gives; another image runs them again."""
    net = tiny()
    stages_run: list[int] = []
    forward = net.forward
    monkeypatch.setattr(net, "forward", lambda image, residual, stage: (stages_run.append(stage),
                                                                         forward(image, residual, stage))[1])
    target = torch.from_numpy(smooth_image(40, 56).astype(np.float32) / 255) - 0.5
    plans = StagePlan((9, 6, 3)), StagePlan((3, 2, 1), threshold=1e-3), StagePlan((4,))
    with initializer.sharing_stages():
        shared = [predict(target, plan, net) for plan in plans]
    assert stages_run == [0, 1, 2, 3, 2, 3]  # stages 0 and 1 once, for the first plan
    for plan, (stages, summary) in zip(plans, shared, strict=True):
        fresh, fresh_summary = predict(target, plan, net)
        assert torch.equal(summary, fresh_summary)
        for a, b in zip(stages, fresh, strict=True):
            assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("means", "scales", "angles", "colors"))
    assert stages_run == [0, 1, 2, 3, 2, 3] + [0, 1, 2, 3] * 2 + [0, 1]  # outside, nothing is shared
    stages_run.clear()
    with initializer.sharing_stages():
        predict(target, plans[0], net)
        predict(target.flip(0), plans[0], net)
        other = predict(target.flip(0), plans[0], tiny(1))[1]
    assert stages_run == [0, 1, 2, 3] * 2  # another image runs them again
    assert torch.equal(other, predict(target.flip(0), plans[0], tiny(1))[1])  # so does another model


def test_adapt_scales_each_attribute() -> None:
    steps = Steps(pos_step=0.5, scale_den=6, angle_levels=64, color_step=(0.01, 0.02, 0.02))
    assert adapt(steps, [0.0] * 5) == steps
    assert adapt(steps, [1.0, 1.0, -1.0, 0.5, -1.0]) == Steps(
        pos_step=1.0, scale_den=3, angle_levels=128, color_step=(0.01 * 2**0.5, 0.01, 0.01))
    assert adapt(steps, [0.0, -9.0, 20.0, 0.0, 0.0]).scale_den == 64  # held to what the format stores
    assert adapt(steps, [0.0, -9.0, 20.0, 0.0, 0.0]).angle_levels == 1


def test_quantizer_head_starts_at_the_policy_and_stays_within_an_octave() -> None:
    net = tiny()
    summary = torch.randn(3, 16)
    assert net.step_factors(summary, 50).abs().max() == 0  # zero-initialised: the policy's steps
    assert quantizer_steps(summary[:1], 50, net) == steps_for_quality(50)
    unrefined = adapt(steps_for_quality(50), initializer.UNREFINED_STEP_FACTORS)
    assert quantizer_steps(summary[:1], 50, net, refined=False) == unrefined != steps_for_quality(50)
    with torch.no_grad():
        for p in net.quantizer.parameters():
            p.normal_(0, 3)
    factors = net.step_factors(summary, 50)
    assert factors.shape == (3, 5) and factors.abs().max() <= 1 and factors.abs().max() > 0.1
    assert quantizer_steps(summary[:1], 50, net) == adapt(steps_for_quality(50), factors[0].tolist())
    initializer.ADAPTIVE_STEPS = False
    try:
        assert quantizer_steps(summary[:1], 50, net) == steps_for_quality(50)
    finally:
        initializer.ADAPTIVE_STEPS = True


def test_weights_round_trip_and_hash_check(tmp_path: Path) -> None:
    net = tiny(1)
    model_io.save(net, tmp_path, recipe={"command": "test"})
    loaded = model_io.load.__wrapped__(tmp_path)
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    data = bytearray((tmp_path / "predictor.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "predictor.safetensors").write_bytes(bytes(data))
    with pytest.raises(GscError, match="SHA-256"):
        model_io.load.__wrapped__(tmp_path)
    with pytest.raises(GscError, match="cannot be read"):
        model_io.load.__wrapped__(tmp_path / "missing")


@pytest.mark.skipif(not (model_io.WEIGHTS / "predictor.json").exists(), reason="no shipped weights")
def test_shipped_predictor_encodes_one_layer_per_stage() -> None:
    image = smooth_image(40, 56)
    data = gscodec.encode(image, quality=80, effort=0, init="predictor")
    splats = gscodec.decode_splats(data)
    assert splats.patch_sizes[0] == 16 and len(splats.patch_sizes) >= 2
    for k in range(len(splats.patch_sizes) + 1):  # progressive: the first k stages
        assert gscodec.decode(data, layers=k).shape == (40, 56, 3)
    with pytest.raises(GscError, match="init must be"):
        gscodec.encode(image, init="magic")


def test_training_runs_resumes_and_exports(tmp_path: Path) -> None:
    data = tmp_path / "train"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / f"img{i}.png")
    run = tmp_path / "run"
    common = [sys.executable, "-m", "training.predictor", "--data", str(data), "--out", str(run), "--batch", "2",
              "--crop", "32", "--channels", "8", "--blocks", "1", "--inner", "1", "--log-every", "1",
              "--save-every", "1", "--threads", "1"]
    for steps in (2, 3):  # the second run resumes from the checkpoint of the first
        out = subprocess.run([*common, "--steps", str(steps), "--resume"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    lines = [line for line in (run / "log.txt").read_text().splitlines() if line.startswith("step")]
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]
    out = subprocess.run([*common, "--export", str(tmp_path / "weights")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    model = model_io.load.__wrapped__(tmp_path / "weights")
    assert model.config.channels == 8
    # the later phases start from a checkpoint: cross-stage, then quantization-aware
    before = run / "checkpoint.pt"
    for phase in ("joint", "quant"):
        out = subprocess.run([*common[:6], str(tmp_path / phase), *common[7:], "--steps", "1", "--phase", phase,
                              "--init-from", str(before)], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        before = tmp_path / phase / "checkpoint.pt"
    line = (tmp_path / "quant" / "log.txt").read_text().splitlines()[-1]
    assert " quantized " in line and len(line.split(" factors ")[1].split()) >= 5


def test_training_refuses_test_sets(tmp_path: Path) -> None:
    from training.data import list_train_images

    (tmp_path / "kodak").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "kodak" / "kodim01.png")
    with pytest.raises(ValueError, match="test images"):
        list_train_images(tmp_path)
