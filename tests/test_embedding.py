"""gscodec.embedding: splat features, the splat encoder's invariances and costs, the public
functions, the weights' files, and the training script end to end on a tiny synthetic set."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gscodec
from gscodec import GscError, Splats
from gscodec.embedding import api, tokens
from gscodec.embedding import model as model_io
from gscodec.embedding.network import EmbedConfig, SplatEncoder
from gscodec.embedding.tokens import FEATURES, features_of, footprint_of, pad_tokens, splat_features, splat_onto_grid
from gscodec.embedding.vit import VitConfig

TINY = EmbedConfig(stem_dim=32, latents=8, resampler_layers=2, resampler_heads=2,
                   vit=VitConfig(width=32, layers=2, heads=2, patch_size=8, image_size=32, output_dim=16))


def random_splats(n: int, width: int = 96, height: int = 64, seed: int = 0) -> Splats:
    rng = np.random.default_rng(seed)
    return Splats(width, height, means=rng.uniform(0, 1, (n, 2)) * [width, height],
                  scales=rng.uniform(0.5, 6, (n, 2)), angles=rng.uniform(-math.pi, math.pi, n),
                  colors=rng.normal(0, 0.2, (n, 3)), background=np.array([0.5, 0.0, 0.0]))


@pytest.fixture(scope="module")
def tiny_model() -> SplatEncoder:
    torch.manual_seed(0)
    return SplatEncoder(TINY).eval()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("embed")
    model_io.save(tiny_model, folder, recipe={"command": "a test"}, teacher="random")
    return folder


def test_features_are_finite_and_sized() -> None:
    feats, background = features_of(random_splats(50))
    assert feats.shape == (50, FEATURES) and background.shape == (3,)
    assert torch.isfinite(feats).all()


def test_features_do_not_see_a_half_turn_or_the_pixel_size() -> None:
    s = random_splats(20)
    t = {k: torch.from_numpy(getattr(s, k)) for k in ("means", "scales", "angles", "colors")}
    base = splat_features(t["means"], t["scales"], t["angles"], t["colors"], s.width, s.height)
    turned = splat_features(t["means"], t["scales"], t["angles"] + math.pi, t["colors"], s.width, s.height)
    doubled = splat_features(2 * t["means"], 2 * t["scales"], t["angles"], t["colors"], 2 * s.width, 2 * s.height)
    torch.testing.assert_close(turned, base, atol=1e-5, rtol=0)
    torch.testing.assert_close(doubled, base, atol=1e-5, rtol=0)
    swapped = splat_features(t["means"], t["scales"].flip(1), t["angles"] + math.pi / 2, t["colors"], s.width,
                             s.height)
    torch.testing.assert_close(swapped, base, atol=1e-5, rtol=0)  # the same ellipse, described otherwise


def test_embedding_ignores_the_order_of_the_splats(tiny_model) -> None:
    s = random_splats(300)
    perm = np.random.default_rng(1).permutation(300)
    shuffled = Splats(s.width, s.height, s.means[perm], s.scales[perm], s.angles[perm], s.colors[perm], s.background)
    a, b = api.embed(s, model=tiny_model), api.embed(shuffled, model=tiny_model)
    np.testing.assert_allclose(a, b, atol=2e-6)
    changed = Splats(s.width, s.height, s.means, s.scales, s.angles, s.colors * 1.5, s.background)
    assert np.abs(api.embed(changed, model=tiny_model) - a).max() > 1e-3  # it does read the splats


def test_a_batch_with_padding_gives_each_stream_its_own_result(tiny_model) -> None:
    streams = [random_splats(n, seed=n) for n in (5, 400, 37)]
    together = api.embed(streams, model=tiny_model, batch_size=3)
    for s, row in zip(streams, together, strict=True):
        np.testing.assert_allclose(api.embed(s, model=tiny_model), row, atol=2e-6)
    feats, pad = pad_tokens([features_of(s)[0] for s in streams])
    assert feats.shape == (3, 400, FEATURES) and pad.sum().item() == 2 * 400 - 5 - 37


@pytest.mark.parametrize("shipped_layout", [False, True])
@pytest.mark.parametrize("n", [0, 1, 100_000])
def test_any_number_of_splats(tiny_model, n: int, shipped_layout: bool) -> None:
    # shipped_layout: the shipped model's options (MLP tokens, the locality bias), at tiny sizes
    model = SplatEncoder(replace(TINY, latents=16, locality=True, token_mlp=True)).eval() if shipped_layout \
        else tiny_model
    vector = api.embed(random_splats(n, width=2048, height=1536), model=model)
    assert vector.shape == (16,) and np.isfinite(vector).all()
    assert abs(np.linalg.norm(vector) - 1) < 1e-5


def test_embed_reads_bytes_paths_and_lists(tiny_folder, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    data = gscodec.encode(image, quality=30, effort=0)
    path = tmp_path / "a.gsc"
    path.write_bytes(data)
    one = gscodec.embed(data, model=tiny_folder)
    assert one.shape == (16,) and one.dtype == np.float32
    np.testing.assert_allclose(gscodec.embed(path, model=tiny_folder), one, atol=1e-6)
    np.testing.assert_allclose(gscodec.embed(gscodec.decode_splats(data), model=tiny_folder), one, atol=1e-6)
    rows = gscodec.embed([data, str(path)], model=tiny_folder)
    assert rows.shape == (2, 16)
    pixels = gscodec.embed_pixels(image, model=tiny_folder)
    assert pixels.shape == (16,) and abs(np.linalg.norm(pixels) - 1) < 1e-5


@pytest.mark.parametrize("bad, match", [
    (b"not a stream", "not a .gsc|magic|signature|header"),
    (12, "embed takes"),
    ("does/not/exist.gsc", "cannot read"),
    ([], "at least one"),
])
def test_bad_input_is_a_gsc_error(tiny_folder, bad, match: str) -> None:
    with pytest.raises(GscError, match=match):
        gscodec.embed(bad, model=tiny_folder)


def test_embed_pixels_rejects_what_is_not_rgb(tiny_folder) -> None:
    with pytest.raises(GscError, match="RGB"):
        api.embed_pixels(np.zeros((4, 4)), model=tiny_folder)


def test_weights_are_checked(tiny_folder, tmp_path: Path) -> None:
    info = model_io.meta(tiny_folder)
    assert info["teacher"] == "random" and info["clip"] is None
    data = bytearray((tiny_folder / "embed.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "embed.safetensors").write_bytes(bytes(data))
    (tmp_path / "embed.json").write_text((tiny_folder / "embed.json").read_text())
    with pytest.raises(GscError, match="SHA-256"):
        model_io.load(tmp_path)
    with pytest.raises(GscError, match="cannot be read"):
        model_io.load(tmp_path / "missing")


def test_embed_text_needs_a_clip_student(tiny_folder) -> None:
    with pytest.raises(GscError, match="no text side"):
        gscodec.embed_text("a photo of a cat", model=tiny_folder)


def test_locality_bias_measures_distance_in_grid_cells() -> None:
    model = SplatEncoder(replace(TINY, latents=16, locality=True))
    # a splat at the centre of cell (row 1, column 2) of the 4 x 4 grid, another at the image's corner
    uv = torch.tensor([[[2.5 / 4 - 0.5, 1.5 / 4 - 0.5], [-0.5, -0.5]]])
    features = torch.cat([uv, torch.zeros(1, 2, FEATURES - 2)], 2)
    keys, queries = model.places(features)
    d2 = -(queries @ keys[0].T)  # [16 latents, 2 splats + background]
    assert d2.shape == (16, 3) and d2[:, 2].abs().max() == 0
    assert d2[:, 0].argmin() == 1 * 4 + 2 and d2[1 * 4 + 2, 0] == 0 and d2[1 * 4 + 3, 0] == pytest.approx(1)
    assert d2[0, 1] == pytest.approx(0.5)  # half a cell across and half down
    with pytest.raises(ValueError, match="square"):
        SplatEncoder(replace(TINY, latents=8, locality=True))


def test_locality_keeps_order_and_padding_invariance() -> None:
    torch.manual_seed(0)
    model = SplatEncoder(replace(TINY, latents=16, locality=True)).eval()
    streams = [random_splats(n, seed=n) for n in (3, 250)]
    together = api.embed(streams, model=model, batch_size=2)
    s = streams[1]
    perm = np.random.default_rng(2).permutation(len(s.means))
    shuffled = Splats(s.width, s.height, s.means[perm], s.scales[perm], s.angles[perm], s.colors[perm], s.background)
    np.testing.assert_allclose(api.embed(shuffled, model=model), together[1], atol=2e-6)
    np.testing.assert_allclose(api.embed(streams[0], model=model), together[0], atol=2e-6)


FOOTPRINTS = replace(TINY, latents=16, locality=True, token_mlp=True, footprint_grid=8, footprint_dim=4)


@pytest.mark.parametrize(("grid", "within"), [(4, 0.25), (16, 0.05)])
def test_footprints_splat_colours_as_the_decoder_renders_them(grid: int, within: float) -> None:
    """Colours through the footprints are the render averaged over each cell, on a non-square
    image: close, not exact (the box is smoothed as a Gaussian, coarser the larger the cells;
    measured mean error 16 % / 2 % of the cells' spread for 4 / 16 cells a side)."""
    from gscodec.render.backends import render_splats

    s = random_splats(60, width=96, height=64, seed=4)
    t = {k: torch.from_numpy(getattr(s, k)).float() for k in ("means", "scales", "angles", "colors")}
    image = render_splats(t["means"], t["scales"], t["angles"], t["colors"], 64, 96, backend="torch")
    cells = image.reshape(grid, 64 // grid, grid, 96 // grid, 3).mean((1, 3)).reshape(-1, 3)
    splatted = splat_onto_grid(t["colors"], footprint_of(s, grid), grid)
    assert (splatted - cells).abs().mean() < within * (cells - cells.mean(0)).abs().mean()


def test_footprints_come_in_bounded_chunks(monkeypatch) -> None:
    s = random_splats(500, width=640, height=480, seed=6)
    whole = list(footprint_of(s, 32))
    assert len(whole) == 1
    monkeypatch.setattr(tokens, "MAX_PAIRS", 100)
    chunks = list(footprint_of(s, 32))
    assert len(chunks) > 5 and max(len(c[0]) for c in chunks) <= 100  # (no splat here has 100 cells)
    for a, b in zip(whole[0], (torch.cat(parts) for parts in zip(*chunks, strict=True)), strict=True):
        assert torch.equal(a, b)


def test_footprints_start_as_the_model_without_them() -> None:
    torch.manual_seed(0)
    plain = SplatEncoder(replace(FOOTPRINTS, footprint_grid=0)).eval()
    model = SplatEncoder(FOOTPRINTS).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and {k.split(".")[0] for k in missing} == {"to_footprint", "from_grid"}
    s = random_splats(80)
    np.testing.assert_allclose(api.embed(s, model=model), api.embed(s, model=plain), atol=1e-6)
    with pytest.raises(ValueError, match="footprints"):
        model(*[x[None] for x in features_of(s)])
    with pytest.raises(ValueError, match="dividing"):
        SplatEncoder(replace(FOOTPRINTS, footprint_grid=6))


@pytest.mark.parametrize("n", [0, 1, 100_000])
def test_footprints_keep_order_padding_and_size_invariance(n: int) -> None:
    torch.manual_seed(0)
    model = SplatEncoder(FOOTPRINTS).eval()
    torch.nn.init.normal_(model.from_grid.weight, std=0.5)  # as trained: the footprints count
    s = random_splats(n, width=2048, height=1536, seed=n)
    alone = api.embed(s, model=model)
    assert alone.shape == (16,) and np.isfinite(alone).all()
    perm = np.random.default_rng(2).permutation(n)
    shuffled = Splats(s.width, s.height, s.means[perm], s.scales[perm], s.angles[perm], s.colors[perm], s.background)
    np.testing.assert_allclose(api.embed(shuffled, model=model), alone, atol=2e-6)
    other = random_splats(30, seed=9)
    together = api.embed([other, s], model=model, batch_size=2)
    np.testing.assert_allclose(together[1], alone, atol=2e-6)
    np.testing.assert_allclose(together[0], api.embed(other, model=model), atol=2e-6)
    changed = Splats(s.width, s.height, s.means, s.scales * 2, s.angles, s.colors, s.background)
    if n:  # the footprints see a splat's size
        assert np.abs(api.embed(changed, model=model) - alone).max() > 1e-4


def test_a_colour_change_is_the_same_on_pixels_and_splats() -> None:
    import random

    from gscodec.format.color import YCBCR_TO_RGB
    from training.embed import change_pixels, change_splat_colours, colour_change

    to_rgb = torch.from_numpy(YCBCR_TO_RGB).float()
    rng = random.Random(3)
    background, amplitude = torch.tensor([0.45, 0.02, -0.03]), torch.tensor([0.1, -0.03, 0.05])
    weights = torch.linspace(0, 1, 7)  # a splat's footprint at seven pixels
    for _ in range(5):
        change = colour_change(rng)
        pixels = (to_rgb @ (background[:, None] + amplitude[:, None] * weights)).reshape(3, 7, 1)
        features = torch.cat([torch.zeros(1, FEATURES - 3), amplitude[None]], 1)
        changed, new_background = change_splat_colours(features, background, change)
        splats = to_rgb @ (new_background[:, None] + changed[0, -3:, None] * weights)
        torch.testing.assert_close(splats.reshape(3, 7, 1), change_pixels(pixels, change), atol=1e-5, rtol=0)


def test_trainable_parts_by_stage() -> None:
    model = SplatEncoder(replace(TINY, vit=replace(TINY.vit, layers=3)))
    stage1 = {id(p) for p in model.trainable(1)}
    assert id(model.vit.proj) not in stage1 and id(model.latents) in stage1
    assert not any(p.requires_grad for p in model.vit.parameters())
    stage2 = {id(p) for p in model.trainable(2)}
    assert id(model.vit.proj) in stage2
    assert all(p.requires_grad for p in model.vit.transformer.resblocks[1].parameters())
    assert not any(p.requires_grad for p in model.vit.transformer.resblocks[2].parameters())


# ---------------------------------------------------------------------- training, end to end

@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory) -> Path:
    """Twelve small synthetic images: smooth colour fields with a few discs."""
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64] / 48.0
    for i in range(12):
        image = np.stack([np.sin(xx * rng.uniform(1, 6) + c) * 0.4 + 0.5 for c in range(3)], -1)
        for _ in range(3):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1.3), rng.uniform(0.1, 0.3)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
        Image.fromarray((image * 255).astype(np.uint8)).save(root / f"im{i:02d}.png")
    return root


def run_training(*argv: str) -> None:
    from training import embed as training_embed

    assert training_embed.main(list(argv)) == 0


def test_training_end_to_end(tiny_train: Path, tmp_path: Path, capsys) -> None:
    from training import embed as training_embed

    teacher = tmp_path / "teacher"
    vit = ["--width", "32", "--layers", "2", "--heads", "2", "--image-size", "32", "--patch-size", "8", "--dim", "16"]
    run_training("teacher", "--data", str(tiny_train), "--out", str(teacher), "--steps", "4", "--batch", "4",
                 "--log-every", "2", "--warmup", "1", *vit)
    common = ["--data", str(tiny_train), "--teacher", str(teacher), "--streams", str(tmp_path / "streams"),
              "--qualities", "20", "--batch", "4", "--log-every", "1", "--warmup", "1"]
    splat = tmp_path / "splat"
    stem = ["--stem-dim", "32", "--latents", "16", "--resampler-layers", "1"]  # a 4 x 4 grid: locality
    run_training("distill", "--out", str(splat), *stem, *common, "--steps", "3")
    run_training("distill", "--out", str(tmp_path / "thumb"), "--student", "thumbnail", *common, "--steps", "3")
    # a student with footprints, started from the plain one
    run_training("distill", "--out", str(tmp_path / "prints"), *stem, *common, "--steps", "2", "--init", str(splat),
                 "--footprint-grid", "8", "--footprint-dim", "4")
    with pytest.raises(SystemExit, match="different stem"):
        run_training("distill", "--out", str(tmp_path / "other"), *common, "--steps", "1", "--init", str(splat))
    # a teacher with other patches and augmentations: a stem distilled for the first one starts its student,
    # whose ViT is the new teacher's
    other = tmp_path / "teacher-other"
    other_vit = ["--width", "32", "--layers", "2", "--heads", "2", "--image-size", "32", "--patch-size", "16",
                 "--dim", "16"]
    run_training("teacher", "--data", str(tiny_train), "--out", str(other), "--steps", "2", "--batch", "4",
                 "--warmup", "1", *other_vit, "--min-area", "0.5", "--jitter", "0.6")
    moved = tmp_path / "moved"
    common_other = [str(other) if a == str(teacher) else a for a in common]
    run_training("distill", "--out", str(moved), *stem, *common_other, "--steps", "1", "--init", str(splat))
    student = training_embed.load_run(moved)
    teacher_vit = training_embed.load_teacher(argparse.Namespace(clip=None, teacher=other))
    assert student.vit.conv1.weight.shape[-1] == 16
    assert torch.equal(student.vit.conv1.weight, teacher_vit.conv1.weight)
    run_training("probe", "--teacher", str(other), "--data", str(tiny_train), "--streams", str(tmp_path / "streams"),
                 "--qualities", "20", "--images", "3")
    assert "thumbnail of the stream's bytes" in capsys.readouterr().out
    log = (splat / "log.txt").read_text().splitlines()
    assert [line.split()[1] for line in log if line.startswith("step")] == ["1", "2", "3"]
    # resuming continues from the checkpoint
    run_training("distill", "--out", str(splat), *stem, *common, "--steps", "5", "--resume")
    steps = [line.split()[1] for line in (splat / "log.txt").read_text().splitlines() if line.startswith("step")]
    assert steps == ["1", "2", "3", "4", "5"]
    weights = tmp_path / "weights"
    run_training("export", "--run", str(splat), "--to", str(weights))
    info = json.loads((weights / "embed.json").read_text())
    assert info["recipe"]["steps"] == 5 and "not CLIP" in info["teacher"]
    data = (tmp_path / "streams" / "q20" / "im00.gsc").read_bytes()
    assert gscodec.embed(data, model=weights).shape == (16,)
    with pytest.raises(SystemExit):
        run_training("export", "--run", str(tmp_path / "thumb"), "--to", str(tmp_path / "nothing"))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIP in OpenAI's layout (a float32 state dict with its three ints)."""
    from tests.conftest import import_beside_torchvision

    open_clip = import_beside_torchvision("open_clip")
    folder = tmp_path_factory.mktemp("clip")
    config = {"embed_dim": 16, "quick_gelu": True,
              "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 64},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}
    (folder / "gsc-embed-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    state = open_clip.create_model("gsc-embed-tiny").state_dict()
    ints = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(16), "vocab_size": torch.tensor(49408)}
    torch.save(state | ints, folder / "clip.pt")
    return folder / "clip.pt"


def test_clip_student_end_to_end(tiny_train: Path, tiny_clip: Path, tmp_path: Path) -> None:
    """Stage 1 with a CLIP checkpoint as the teacher, stage 2 on (stream, caption) pairs, the
    exported model's text side: the checkpoint's own text features."""
    from gscodec.embedding.clip import encode_text

    streams = tmp_path / "streams"
    run_training("distill", "--data", str(tiny_train), "--clip", str(tiny_clip), "--streams", str(streams),
                 "--qualities", "20", "--steps", "2", "--batch", "4", "--warmup", "1", "--stem-dim", "32",
                 "--latents", "16", "--resampler-layers", "1", "--out", str(tmp_path / "stage1"))
    captions = ["a red disc", "blue waves", "green field", "a dark circle"]
    (streams / "q20" / "pairs.tsv").write_text("".join(f"im{i:02d}.gsc\t{c}\n" for i, c in enumerate(captions)))
    run_training("contrastive", "--init", str(tmp_path / "stage1"), "--clip", str(tiny_clip), "--pairs",
                 str(streams / "q20" / "pairs.tsv"), "--steps", "2", "--batch", "4", "--warmup", "1",
                 "--out", str(tmp_path / "stage2"))
    assert "loss" in (tmp_path / "stage2" / "log.txt").read_text()
    weights = tmp_path / "weights"
    run_training("export", "--run", str(tmp_path / "stage2"), "--to", str(weights))
    assert model_io.meta(weights)["clip"]["checkpoint"] == str(tiny_clip)
    text = gscodec.embed_text(captions, model=weights)
    np.testing.assert_allclose(text, encode_text(captions, tiny_clip), atol=1e-6)
    image = gscodec.embed((streams / "q20" / "im00.gsc").read_bytes(), model=weights)
    assert text.shape == (4, 16) and image.shape == (16,)
