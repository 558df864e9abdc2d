"""Inpainting on splat streams (gscodec/inpainting): errors, kept splats, the new layer, masks,
weights, the DINOv2 loader (tiny random ViTs made here) and the training script.

Every model here is tiny and random; only the benchmark needs trained weights.
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
from gscodec.inpainting import fill, inpaint, inpaint_stream, problem
from gscodec.inpainting import model as model_io
from gscodec.inpainting.masks import COVERAGE, KINDS, as_mask, random_mask
from gscodec.inpainting.network import InpaintConfig, InpaintNet, receptive_radius, trunk_tiled
from tests.conftest import import_beside_torchvision, one_numba_thread, smooth_image

ROOT = Path(__file__).resolve().parent.parent
H, W = 48, 80

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny(seed: int = 0, **kwargs) -> InpaintNet:
    torch.manual_seed(seed)
    return InpaintNet(InpaintConfig(channels=8, blocks=1, feature_dim=8, **kwargs)).eval()


@pytest.fixture(scope="module")
def stream() -> bytes:
    with one_numba_thread():
        return gscodec.encode(smooth_image(H, W), quality=60, effort=0, init="predictor")


def box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize(("mask", "message"), [
    (np.zeros((H, W + 1), bool), "must be 48 x 80"),
    (np.zeros((W, H), bool), "must be 48 x 80"),
    (np.zeros((H, W, 3), np.uint8), "must be 48 x 80"),
    (np.zeros((H, W), bool), "empty"),
    (np.ones((H, W), bool), "whole image"),
    ("mask.png", "numpy array or a PIL image"),
    (np.full((H, W), np.nan), "NaN"),
])
def test_bad_masks(stream: bytes, mask: object, message: str) -> None:
    with pytest.raises(GscError, match=message):
        inpaint(stream, mask, weights=tiny())


@pytest.mark.parametrize("data", [b"", b"\x89GSC" + bytes(40), "not bytes", 42])
def test_bad_streams(data: object) -> None:
    with pytest.raises(GscError):
        inpaint(data, box_mask(0, 4, 0, 4), weights=tiny())  # type: ignore[arg-type]


@pytest.mark.skipif((model_io.WEIGHTS / "inpainting.json").exists(), reason="trained weights are installed")
def test_no_weights_installed_is_a_clear_error(stream: bytes) -> None:
    with pytest.raises(GscError, match="no trained inpainting weights are installed"):
        inpaint(stream, box_mask(10, 20, 10, 20))


def test_mask_forms() -> None:
    m = box_mask(5, 9, 7, 30)
    assert as_mask(m, H, W).tolist() == m.tolist()
    assert np.array_equal(as_mask(m.astype(np.uint8) * 255, H, W), m)
    assert np.array_equal(as_mask(m.astype(np.int32), H, W), m)  # 0/1 integers
    assert np.array_equal(as_mask(m.astype(np.float32), H, W), m)
    assert np.array_equal(as_mask(m[..., None], H, W), m)
    assert np.array_equal(as_mask(torch.from_numpy(m), H, W), m)
    assert np.array_equal(as_mask(Image.fromarray(m), H, W), m)  # mode "1"
    assert np.array_equal(as_mask(Image.fromarray(m.astype(np.uint8) * 255).convert("RGB"), H, W), m)


def test_kept_splats_unchanged_and_new_layer(stream: bytes) -> None:
    splats = gscodec.decode_splats(stream)
    hole = box_mask(16, 30, 24, 44)
    out = inpaint(stream, hole, weights=tiny())
    t = splats.tensors()
    removed = problem.touching(t.means, t.scales, t.angles, torch.from_numpy(hole), fill.REMOVE_SHARE).numpy()
    assert 0 < removed.sum() < len(splats)
    # some splats reach into the hole with a faint edge only: they are kept too
    assert problem.touching(t.means, t.scales, t.angles, torch.from_numpy(hole)).sum() > removed.sum()
    kept = splats.select(~removed)
    n = len(kept)
    first = out.select(np.arange(n))
    for f in ("means", "scales", "angles", "colors", "layer", "background"):  # bit for bit, same order and layers
        assert np.array_equal(getattr(first, f), getattr(kept, f)), f
    assert out.patch_sizes[:-1] == splats.patch_sizes and out.patch_sizes[-1] in (4, 8, 16)
    assert (out.layer[n:] == len(splats.patch_sizes)).all() and len(out) > n
    assert len(out) - n <= removed.sum()  # no more new splats than removed ones: the size stays
    new = out.select(np.arange(n, len(out)))
    assert (new.means >= 0).all() and (new.means[:, 0] < W).all() and (new.means[:, 1] < H).all()
    assert np.isfinite(new.colors).all()
    # away from the removed splats' region (by more than two of the largest patches) the image
    # renders as before: the new splats stay near the hole
    keep = torch.from_numpy(removed)
    region = problem.support(t.means[keep], t.scales[keep], t.angles[keep], H, W)
    grown = torch.nn.functional.max_pool2d(region[None, None].float(), 65, 1, 32)[0, 0] > 0
    far = ~grown.numpy()
    before, after = gscodec.render_image(splats), gscodec.render_image(out)
    assert np.abs(before[far].astype(int) - after[far].astype(int)).max(initial=0) <= 1


def test_output_encodes_and_decodes(stream: bytes) -> None:
    hole = box_mask(4, 12, 50, 70)
    out = inpaint(stream, hole, weights=tiny(), solve_colors=False)
    data = gscodec.encode_splats(out)
    back = gscodec.decode_splats(data)
    assert back.patch_sizes == out.patch_sizes and gscodec.decode(data).shape == (H, W, 3)
    # with the stream's own steps, the kept splats decode exactly as before
    original = gscodec.decode_splats(stream)
    again = gscodec.decode_splats(inpaint_stream(stream, hole, weights=tiny()))
    old = len(original.patch_sizes)
    kept_before = out.select(out.layer < old)
    kept_after = again.select(again.layer < old)
    assert len(kept_after) == len(kept_before)
    for layer in range(old):  # the decoder sorts each layer's splats by position: compare as sets
        a, b = kept_before.select(kept_before.layer == layer), kept_after.select(kept_after.layer == layer)
        key = lambda s: np.lexsort((s.colors[:, 0], s.means[:, 0], s.means[:, 1]))  # noqa: E731
        for f in ("means", "scales", "colors"):
            assert np.array_equal(getattr(a, f)[key(a)], getattr(b, f)[key(b)]), (layer, f)


def test_empty_stream_and_full_layer_list() -> None:
    empty = gscodec.Splats(W, H, np.zeros((0, 2)), np.ones((0, 2)), np.zeros(0), np.zeros((0, 3)), patch_sizes=())
    hole = box_mask(10, 20, 10, 30)
    out = inpaint(empty, hole, weights=tiny())
    assert len(out) > 0 and len(out.patch_sizes) == 1 and (out.layer == 0).all()
    gscodec.decode(gscodec.encode_splats(out))
    assert len(inpaint(gscodec.encode_splats(empty), hole, weights=tiny())) > 0  # no layer, no steps: no snap
    # a stream with the most layers the format allows: the new splats join its last layer of their side
    n = 16
    full = gscodec.Splats(W, H, np.tile([[70.0, 40.0]], (n, 1)), np.ones((n, 2)), np.zeros(n), np.full((n, 3), 0.1),
                          layer=np.arange(n), patch_sizes=(8,) * 15 + (4,))
    out = inpaint(full, hole, weights=tiny())
    assert out.patch_sizes == full.patch_sizes and len(out) > n
    new_layer = out.layer[n:][0]
    assert (out.layer[n:] == new_layer).all() and out.patch_sizes[new_layer] in (4, 8, 16)


def test_accepts_splats_and_images(stream: bytes) -> None:
    splats = gscodec.decode_splats(stream)
    hole = box_mask(20, 28, 8, 16)
    a = inpaint(splats, Image.fromarray(hole), weights=tiny(), steps=fill.stream_steps(stream))
    b = inpaint(stream, hole, weights=tiny())
    assert a.equals(b)


def test_new_splats_are_on_the_written_grid(stream: bytes) -> None:
    """From a stream, the new splats' geometry is already what the written file decodes to
    (their colours were solved for it); from bare splats with no steps, it is not snapped."""
    hole = box_mask(14, 32, 20, 50)
    out = inpaint(stream, hole, weights=tiny())
    written = gscodec.decode_splats(inpaint_stream(stream, hole, weights=tiny()))
    new = out.layer == len(out.patch_sizes) - 1
    assert new.sum() and len(written) == len(out)
    mine, theirs = out.select(new), written.select(written.layer == len(out.patch_sizes) - 1)
    key = lambda s: np.lexsort((s.means[:, 1], s.means[:, 0]))  # noqa: E731
    np.testing.assert_allclose(mine.means[key(mine)], theirs.means[key(theirs)], atol=1e-5)
    np.testing.assert_allclose(mine.scales[key(mine)], theirs.scales[key(theirs)], rtol=1e-5)
    floating = inpaint(gscodec.decode_splats(stream), hole, weights=tiny())
    floating = floating.select(floating.layer == len(out.patch_sizes) - 1)
    same = len(floating) == len(mine) and np.allclose(floating.means[key(floating)], mine.means[key(mine)], atol=1e-5)
    assert not same


def test_colour_solve_fits_the_known_ring(stream: bytes) -> None:
    hole = box_mask(14, 32, 20, 50)
    decoded = gscodec.decode(stream).astype(float)
    errors = []
    for solve in (False, True):
        out = gscodec.render_image(inpaint(stream, hole, weights=tiny(), solve_colors=solve)).astype(float)
        errors.append(((out - decoded)[~hole] ** 2).mean())
    assert errors[1] < errors[0]


def test_smooth_fill_keeps_the_known_pixels_and_continues_shading() -> None:
    rng = np.random.default_rng(3)
    for h, w in ((37, 53), (64, 64), (5, 3)):
        image = torch.from_numpy(rng.normal(size=(2, h, w))).float()
        known = torch.from_numpy(rng.random((h, w)) < 0.3)
        known[0, 0] = True
        out = problem.smooth_fill(image, known)
        assert torch.equal(out[:, known], image[:, known])
        assert bool(torch.isfinite(out).all())
    flat = torch.full((3, 40, 60), 0.25)
    known = torch.ones(40, 60, dtype=torch.bool)
    known[10:30, 5:50] = False
    assert torch.allclose(problem.smooth_fill(flat, known), flat)
    # a plane is harmonic and biharmonic: a hole in a shaded plane is filled with the plane
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(60.0), indexing="ij")
    plane = (0.2 + 0.01 * x - 0.004 * y)[None]
    known = torch.ones(40, 60, dtype=torch.bool)
    known[12:28, 20:40] = False
    out = problem.smooth_fill(plane, known)
    assert float((out - plane).abs().max()) < 2e-3
    # a bowl (x^2 + y^2, 0.016 deep over the hole) is biharmonic, not harmonic: the biharmonic
    # share of the fill continues its curvature (errors 0.005 with it, 0.011 harmonic alone)
    bowl = (0.2 + 1e-4 * ((x - 30) ** 2 + (y - 20) ** 2))[None]

    def bowl_error(**settings: float) -> float:
        saved = {name: getattr(problem, name) for name in settings}
        for name, value in settings.items():
            setattr(problem, name, value)
        try:
            return float((problem.smooth_fill(bowl, known) - bowl).abs().max())
        finally:
            for name, value in saved.items():
                setattr(problem, name, value)

    harmonic = bowl_error(BLEND_DISTANCE=1e-6)
    assert bowl_error() < 0.6 * harmonic
    # push-pull alone (no sweeps) is flatter: the sweeps are what continue the shading
    assert bowl_error(BLEND_DISTANCE=1e-6, FILL_SWEEPS=0) > 1.2 * harmonic
    saved = problem.FILL_SWEEPS, problem.BIHARMONIC_SWEEPS
    problem.FILL_SWEEPS = problem.BIHARMONIC_SWEEPS = 0
    try:
        assert float((problem.smooth_fill(plane, known) - plane).abs().max()) > 5e-3
    finally:
        problem.FILL_SWEEPS, problem.BIHARMONIC_SWEEPS = saved


def test_chamfer_distance_is_near_the_euclidean_one() -> None:
    rng = np.random.default_rng(5)
    for h, w, share in ((20, 30, 0.97), (9, 7, 0.5), (1, 12, 0.8)):
        inside = rng.random((h, w)) < share
        inside[0, 0] = False
        d = problem.chamfer_distance(inside)
        ys, xs = np.nonzero(~inside)
        gy, gx = np.mgrid[:h, :w]
        exact = np.sqrt(((gy[..., None] - ys) ** 2 + (gx[..., None] - xs) ** 2).min(-1))
        assert np.all(d[~inside] == 0)
        assert np.all(d[inside] >= exact[inside] - 1e-5) and np.all(d[inside] <= 1.0824 * exact[inside] + 1e-5)
    assert problem.chamfer_distance(np.ones((3, 4), bool)).min() > 7  # nothing known: far from all


def test_colour_solve_fills_the_hole_smoothly(stream: bytes) -> None:
    from gscodec.inpainting import fill

    hole = box_mask(14, 32, 20, 50)
    decoded = torch.from_numpy(gscodec.decode(stream)).permute(2, 0, 1).float()
    smooth = problem.smooth_fill(decoded, torch.from_numpy(~hole)).permute(1, 2, 0).numpy()
    errors = []
    for weight in (0.0, fill.HOLE_WEIGHT):
        saved = fill.HOLE_WEIGHT, fill.POLISH_STEPS
        fill.HOLE_WEIGHT, fill.POLISH_STEPS = weight, (0, 0)  # the solve alone
        try:
            out = gscodec.render_image(inpaint(stream, hole, weights=tiny())).astype(float)
        finally:
            fill.HOLE_WEIGHT, fill.POLISH_STEPS = saved
        errors.append(((out - smooth)[hole] ** 2).mean())
    assert fill.HOLE_WEIGHT > 0 and errors[1] < 0.5 * errors[0], errors


def test_polish_lowers_the_weighted_error_within_bounds() -> None:
    from gscodec.inpainting import fill

    torch.manual_seed(0)
    n, h, w = 12, 24, 32
    means = torch.rand(n, 2) * torch.tensor([w, h])
    scales, angles, colors = torch.full((n, 2), 2.0), torch.rand(n), 0.1 * torch.randn(n, 3)
    target = problem.render(means + 1.5, scales * 1.3, angles + 0.3, colors, h, w)
    weight = torch.ones(h, w)
    weight[:, : w // 2] = 3.0  # the hole's weight differs from the known pixels'

    def error(m, s, a, c) -> float:
        return float((weight * (problem.render(m, s, a, c, h, w) - target).square()).sum())

    before = error(means, scales, angles, colors)
    m, s, a, c = fill._polish(means, scales, angles, colors, target, weight, (0, 0), (h, w), steps=10)
    assert error(m, s, a, c) < 0.5 * before
    assert bool((m[:, 0] >= 0).all() and (m[:, 0] < w).all() and (m[:, 1] >= 0).all() and (m[:, 1] < h).all())
    assert bool((s >= 0.3 - 1e-6).all() and (s <= 0.5 * w + 1e-4).all())
    assert all(x is y for x, y in zip(fill._polish(means, scales, angles, colors, target, weight, (0, 0), (h, w),
                                                   steps=0), (means, scales, angles, colors), strict=True))


def test_polish_brings_the_fill_closer_to_its_target(stream: bytes) -> None:
    """Through `inpaint`: the new splats after the polish render closer to what the solve aims
    at (the decoded image on known pixels, the smooth fill in the hole) than before it."""
    from gscodec.inpainting import fill

    hole = box_mask(14, 32, 20, 50)
    decoded = torch.from_numpy(gscodec.decode(stream)).permute(2, 0, 1).float()
    aim = problem.smooth_fill(decoded, torch.from_numpy(~hole)).permute(1, 2, 0).numpy()
    errors = []
    for steps in ((0, 0), fill.POLISH_STEPS):
        saved, fill.POLISH_STEPS = fill.POLISH_STEPS, steps
        try:
            out = gscodec.render_image(inpaint(stream, hole, weights=tiny())).astype(float)
        finally:
            fill.POLISH_STEPS = saved
        errors.append(((out - aim) ** 2).mean())
    assert fill.POLISH_STEPS[0] > 0 and errors[1] < errors[0], errors


def test_random_masks_cover_their_class_and_are_seeded() -> None:
    for kind in KINDS:
        lo, hi = COVERAGE[kind]
        for h, w in ((64, 64), (96, 160)):
            rng = np.random.default_rng(7)
            masks = [random_mask(h, w, kind, rng) for _ in range(6)]
            assert all(lo <= m.mean() <= hi for m in masks), [m.mean() for m in masks]
            assert np.array_equal(masks[0], random_mask(h, w, kind, np.random.default_rng(7)))
            assert not np.array_equal(masks[0], masks[1])
    assert COVERAGE["thick"] == (0.20, 0.60)
    with pytest.raises(ValueError, match="kind"):
        random_mask(8, 8, "huge", np.random.default_rng(0))


def test_touching_and_support() -> None:
    # splat 0 at (5, 5), sigma 1: its support is the disc q = d^2 <= Q_CUT = 2 ln 255 (d <= 3.33)
    means = torch.tensor([[5.0, 5.0], [30.0, 30.0]])
    scales = torch.ones(2, 2)
    angles = torch.zeros(2)
    hole = torch.zeros(40, 40, dtype=torch.bool)
    hole[7, 7] = True  # pixel centre (7.5, 7.5): d = 3.54, outside the disc though inside its box
    assert problem.touching(means, scales, angles, hole).tolist() == [False, False]
    hole[6, 7] = True  # centre (7.5, 6.5): d = 2.92, inside
    assert problem.touching(means, scales, angles, hole).tolist() == [True, False]
    # a share of the weight: that pixel holds exp(-2.92^2 / 2) = 0.014 of the splat's 2 pi = 6.28
    assert problem.touching(means, scales, angles, hole, min_share=0.0015).tolist() == [True, False]
    assert problem.touching(means, scales, angles, hole, min_share=0.003).tolist() == [False, False]
    hole[3:8, 3:8] = True  # 25 pixels around the centre: most of the weight
    assert problem.touching(means, scales, angles, hole, min_share=0.5).tolist() == [True, False]
    region = problem.support(means[:1], scales[:1], angles[:1], 40, 40)
    y, x = np.mgrid[:40, :40] + 0.5
    assert region.numpy().tolist() == (((x - 5) ** 2 + (y - 5) ** 2) <= 2 * np.log(255)).tolist()
    assert problem.density_patch(10, 640) == 8 and problem.density_patch(10, 639) == 4
    assert problem.density_patch(1, 10_000) == 16 and problem.density_patch(100, 10) == 4
    # a 32 x 32 block: 64 / 16 / 4 patches of side 4 / 8 / 16 (and a thin line touching many)
    block = torch.zeros(64, 64, dtype=torch.bool)
    block[16:48, 16:48] = True
    assert [problem.count_patch(block, r) for r in (100, 64, 32, 20, 4, 1)] == [4, 4, 8, 8, 16, 16]
    line = torch.zeros(64, 64, dtype=torch.bool)
    line[20, :] = True  # 16 / 8 / 4 patches
    assert [problem.count_patch(line, r) for r in (16, 8, 6, 4)] == [4, 8, 8, 16]


def test_tiles_give_the_features_of_one_pass() -> None:
    net = tiny(3)
    # the bound holds: a change at one pixel reaches no feature farther than the receptive radius
    x = torch.randn(1, 9, 320, 320, dtype=torch.float64)
    x2 = x.clone()
    x2[0, :, 160, 160] += 1
    with torch.no_grad():
        changed = (net.double().trunk(x, torch.ones(1, 8, dtype=torch.float64))
                   != net.trunk(x2, torch.ones(1, 8, dtype=torch.float64))).any(1)[0]
    net.float()
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = max(160 - 4 * int(rows.min()), 4 * int(rows.max()) + 3 - 160, 160 - 4 * int(cols.min()),
                4 * int(cols.max()) + 3 - 160)
    assert 100 < reach <= receptive_radius(net.config)
    halo = -(-receptive_radius(net.config) // 16) * 16
    inputs = torch.randn(1, 9, 32 + 2 * halo + 32, 48 + 2 * halo + 16)  # tiles that see only part of it
    cond = torch.randn(1, 8)
    with torch.no_grad():
        whole = net.trunk(inputs, cond)
        tiled = trunk_tiled(net, inputs, cond, 32)
    assert torch.allclose(whole, tiled, atol=1e-5)


def test_adaln_starts_neutral_and_conditions() -> None:
    net = tiny(1)
    inputs = torch.randn(2, 9, 32, 32)
    with torch.no_grad():
        a = net.trunk(inputs, torch.zeros(2, 8))
        b = net.trunk(inputs, torch.randn(2, 8))
        assert torch.equal(a, b)  # modulation starts at scale 0, shift 0, gate 1
        for block in net.enc0:
            block.modulation.weight.normal_()
        c = net.trunk(inputs, torch.randn(2, 8))
    assert not torch.allclose(a, c)


def test_weights_round_trip_and_hash_check(tmp_path: Path, stream: bytes) -> None:
    net = tiny(2)
    model_io.save(net, tmp_path, recipe={"command": "test"})
    loaded = model_io.load(tmp_path)
    for (ka, a), (kb, b) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(a, b)
    hole = box_mask(10, 20, 10, 30)
    assert inpaint(stream, hole, weights=tmp_path).equals(inpaint(stream, hole, weights=net))
    data = bytearray((tmp_path / "inpainting.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "inpainting.safetensors").write_bytes(bytes(data))
    (tmp_path / "bad" / "inpainting.json").write_text((tmp_path / "inpainting.json").read_text())
    with pytest.raises(GscError, match="SHA-256"):
        model_io.load(tmp_path / "bad")
    with pytest.raises(GscError, match="cannot be read"):
        model_io.load(tmp_path / "missing")


@pytest.fixture(scope="module")
def timm():
    """timm, or a skip (see `import_beside_torchvision`)."""
    return import_beside_torchvision("timm")


TINY_VIT = {"embed_dim": 48, "depth": 2, "num_heads": 2}


def tiny_vit(timm, img_size: int):
    torch.manual_seed(0)
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=img_size,
                             **TINY_VIT)


def test_dinov2_loader_reads_local_checkpoints(timm, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    vit = tiny_vit(timm, 56).eval()
    save_file(vit.state_dict(), str(tmp_path / "vit.safetensors"))
    extractor = model_io.load_timm_extractor("vit_small_patch14_dinov2", tmp_path / "vit.safetensors", img_size=56,
                                             **TINY_VIT)
    rgb, hole = torch.rand(2, 3, 56, 56), torch.zeros(2, 1, 56, 56)
    mean, std = torch.tensor(extractor.MEAN)[:, None, None], torch.tensor(extractor.STD)[:, None, None]
    with torch.no_grad():
        assert torch.allclose(extractor(rgb, hole), vit((rgb - mean) / std), atol=1e-5)
    assert not any(p.requires_grad for p in extractor.parameters())
    # Meta's layout (a mask token, position embeddings for another size, under "teacher" with a prefix)
    other = tiny_vit(timm, 70).state_dict()
    other["mask_token"] = torch.zeros(1, 48)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in other.items()}}, tmp_path / "meta.pth")
    resized = model_io.load_timm_extractor("vit_small_patch14_dinov2", tmp_path / "meta.pth", img_size=56,
                                           **TINY_VIT)
    assert resized.vit.pos_embed.shape == vit.pos_embed.shape
    # the wrong architecture or no file: clear errors
    with pytest.raises(GscError, match="does not fit"):
        model_io.load_timm_extractor("vit_small_patch14_dinov2", tmp_path / "vit.safetensors", img_size=56,
                                     embed_dim=48, depth=3, num_heads=2)
    with pytest.raises(GscError, match="cannot read"):
        model_io.load_timm_extractor("vit_small_patch14_dinov2", tmp_path / "none.pth", img_size=56, **TINY_VIT)


def test_model_with_a_dinov2_extractor(timm, tmp_path: Path, stream: bytes) -> None:
    from safetensors.torch import save_file

    save_file(tiny_vit(timm, 56).state_dict(), str(tmp_path / "vit.safetensors"))
    extractor = model_io.load_timm_extractor("vit_small_patch14_dinov2", tmp_path / "vit.safetensors", img_size=56,
                                             **TINY_VIT)
    config = InpaintConfig(channels=8, blocks=1, feature_dim=48, extractor="timm:vit_small_patch14_dinov2",
                           extractor_size=56, extractor_kwargs=TINY_VIT,
                           extractor_sha256=model_io.file_sha256(tmp_path / "vit.safetensors"))
    net = InpaintNet(config, extractor).eval()
    model_io.save(net, tmp_path / "model", recipe={})
    with pytest.raises(GscError, match="extractor_checkpoint"):
        model_io.load(tmp_path / "model")
    save_file(tiny_vit(timm, 70).state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(GscError, match="not the extractor checkpoint"):
        model_io.load(tmp_path / "model", extractor_checkpoint=tmp_path / "other.safetensors")
    hole = box_mask(10, 20, 30, 40)
    out = inpaint(stream, hole, weights=tmp_path / "model", extractor_checkpoint=tmp_path / "vit.safetensors")
    assert out.equals(inpaint(stream, hole, weights=net))


def test_training_runs_resumes_and_exports(tmp_path: Path, stream: bytes) -> None:
    data = tmp_path / "train"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / f"img{i}.png")
    run = tmp_path / "run"
    common = [sys.executable, "-m", "training.inpaint", "--data", str(data), "--out", str(run), "--batch", "2",
              "--crop", "32", "--channels", "8", "--blocks", "1", "--feature-dim", "8", "--log-every", "1",
              "--save-every", "1", "--threads", "1"]
    for steps in (2, 3):  # the second run resumes from the checkpoint of the first
        out = subprocess.run([*common, "--steps", str(steps), "--resume"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    lines = [line for line in (run / "log.txt").read_text().splitlines() if line.startswith("step")]
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]
    assert " psnr hole " in lines[0]
    out = subprocess.run([*common, "--export", str(tmp_path / "weights")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    meta = (tmp_path / "weights" / "inpainting.json").read_text()
    assert '"command": "python -m training.inpaint' in meta and "predictor_sha256" in meta
    model = model_io.load(tmp_path / "weights")
    assert model.config.channels == 8
    assert len(inpaint(stream, box_mask(10, 20, 10, 20), weights=model)) > 0


def test_bench_methods_fill_the_same_hole(stream: bytes, tmp_path: Path) -> None:
    from bench import inpaint as bench

    decoded = gscodec.decode(stream)
    hole = box_mask(10, 20, 30, 50)
    original = smooth_image(H, W)
    rows = []
    for method in bench.METHODS:
        if method in ("telea", "navier-stokes"):
            pytest.importorskip("cv2")
        out, facts = bench.fill(method, stream, decoded, hole, tiny() if method == "gscodec" else None)
        assert out.shape == decoded.shape and out.dtype == np.uint8
        if method != "gscodec":
            assert np.array_equal(out[~hole], decoded[~hole])  # only the hole changes
        else:
            assert facts["size-ratio"] > 0
        s = bench.scores(original, out, hole, bench.far_from(hole))
        assert set(s) == {"psnr-hole", "psnr-rgb", "ssim-hole", "ssim", "psnr-far"}
        assert all(np.isfinite(list(s.values())))
        rows.append((method, out))
    bench.figure([rows, rows], tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size[0] == 160 * len(rows)
    masks = sorted(bench.MASKS.glob("*.png"))
    assert len(masks) == 24 * 3
    assert all(Image.open(p).mode == "1" for p in masks[:3])


def test_bench_ablation_blanks_only_the_global_vector(stream: bytes) -> None:
    from bench import inpaint as bench

    model = tiny()
    blank = bench.blank_global(model)
    rgb, hole = torch.rand(2, 1, 3, H, W), torch.zeros(1, 1, H, W)
    assert blank is not model and torch.equal(blank.global_vector(rgb[0], hole), blank.global_vector(rgb[1], hole))
    assert not torch.equal(model.global_vector(rgb[0], hole), model.global_vector(rgb[1], hole))
    out, facts = bench.fill("gscodec-blank-global", stream, gscodec.decode(stream), box_mask(10, 20, 30, 50), model)
    assert out.shape == (H, W, 3) and facts["size-ratio"] > 0
