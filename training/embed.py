"""Train the splat embedding model (gscodec/embedding) on ../shared/data/train.

    python -m training.embed teacher --out training/runs/embed-teacher
    python -m training.embed distill --teacher training/runs/embed-teacher --out training/runs/embed-splat-v2
    python -m training.embed distill --teacher training/runs/embed-teacher --student thumbnail \\
        --out training/runs/embed-thumbnail-v2
    python -m training.embed contrastive --init RUN --clip CLIP.pt --pairs PAIRS.tsv --out RUN2
    python -m training.embed export --run training/runs/embed-splat-v2 --to gscodec/embedding/weights
    python -m training.embed probe --teacher training/runs/embed-teacher

Every subcommand resumes from OUT/checkpoint.pt (``--resume``), logs to OUT/log.txt, shows a
progress bar and stops cleanly after ``--cpu-minutes``.

- ``teacher``: no CLIP can be downloaded here, so the RGB teacher is a small ViT in CLIP's
  layout trained here from scratch, self-supervised (SimCLR: two random views of an image,
  crops, flips and colour changes, pulled together against the rest of the batch). It is
  not CLIP: it knows only the ~580 training images' statistics. A user's CLIP checkpoint
  takes its place with ``distill --clip PATH``.
- ``distill`` (GaussianVision's stage 1): the student's splat stem learns to give, through
  the teacher's frozen blocks, the teacher's embedding of the same view. A view is a random
  crop (or the whole image), a flip and (``--colour-changes``, 4 views in 5) an affine colour
  change, made alike to the pixels and, in YCbCr, to the splats; the teacher sees its pixels
  resized to its input size, the student the splats whose centres lie in the crop, of the image's .gsc stream
  (made once by ``gscodec convert`` at each ``--qualities``, effort 0, into ``--streams``).
  Loss: (1 - cosine) + the squared error relative to the teacher's norm, on the embedding;
  plus ``--token-weight`` times a token loss that GaussianVision does not use: when the
  student has one latent per teacher patch (64 = 8 x 8 here), its tokens are pulled to the
  teacher's input tokens of the view (patch embeddings plus positions), each latent towards
  one patch: a dense signal where the embedding alone gives one vector per view. Measured
  here: see training/runs/embed-splat*/log.txt and bench/README.md.
  ``--footprint-grid G`` gives the student the splats' footprints on a G x G grid
  (`gscodec.embedding.network`); a view's subset of splats (``--max-splats``) splats with
  weights scaled by the inverse of the share kept. ``--init RUN`` starts the student's stem from a
  splat run's checkpoint (its ViT is always the teacher's, so a stem distilled for one teacher
  can start another's).
  ``--student thumbnail`` is the baseline: the same frozen blocks, its patch stem trained,
  reading a thumbnail of the view with as many bytes (raw RGB) as the view's share of the
  .gsc stream, upsampled to the teacher's input.
- ``probe``: no training; the teacher on whole training images, on thumbnails of as many
  bytes as their streams and on the streams' decodes (cosine to its own embedding of the
  image): what each input keeps for this teacher, before students are trained for it.
- ``contrastive`` (stage 2): CLIP's loss on (stream, caption) pairs against the checkpoint's
  frozen text tower; the stem, the first two blocks and the projection train. Needs a CLIP
  checkpoint with a text tower (open_clip).
"""

from __future__ import annotations

# isort: off
import gscodec  # noqa: F401  (first: it sets the OpenMP wait policy before torch loads)
# isort: on
import argparse
import copy
import math
import os
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from gscodec.embedding import model as model_io
from gscodec.embedding.network import EmbedConfig, SplatEncoder
from gscodec.embedding.tokens import Footprint, footprints, pad_tokens, splat_features
from gscodec.embedding.vit import VisionTransformer, VitConfig, prepare_pixels
from gscodec.format.codec import decode_splats
from gscodec.format.color import RGB_TO_YCBCR
from training.data import default_train_dir, list_train_images
from training.loop import CpuBudget, RunLog, cosine_lr, save_atomic, set_lr

TEACHER = VitConfig(width=128, layers=4, heads=2, patch_size=16, image_size=128, output_dim=128)
# training images are used at most this large (Kodak's size), pixels and streams alike: the larger
# Sun-Hays80 photos would otherwise give streams of many thousand splats that dominate a step
MAX_SIDE = 768
MAX_SPLATS = 1536  # a training view keeps a random subset of at most this many splats (cost)


# ---------------------------------------------------------------------------------- data

def load_rgb(path: Path, max_side: int = MAX_SIDE) -> torch.Tensor:
    """[3, H, W] uint8 RGB, downscaled (box filter) so that the longer side is at most ``max_side``."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = max_side / max(im.size)
        if scale < 1:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BOX)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


def random_box(rng: random.Random, width: float, height: float, min_area: float) -> tuple[float, float, float, float]:
    """(x0, y0, w, h): a crop of a random share of the area in [min_area, 1] and a random aspect
    (log-uniform in 0.6-1.67, clipped to the image), or the whole image in a quarter of draws."""
    if rng.random() < 0.25:
        return 0.0, 0.0, width, height
    area = rng.uniform(min_area, 1.0) * width * height
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1 / 0.6)))
    w = min(width, math.sqrt(area * aspect))
    h = min(height, area / w)
    return rng.uniform(0, width - w), rng.uniform(0, height - h), w, h


def crop_pixels(rgb: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """[3, h, w] float RGB in [0, 1] of ``box`` of a [3, H, W] uint8 image."""
    x0, y0, w, h = box
    H, W = rgb.shape[1:]
    i0, j0 = min(H - 1, int(y0)), min(W - 1, int(x0))
    return rgb[:, i0 : max(i0 + 1, round(y0 + h)), j0 : max(j0 + 1, round(x0 + w))].float() / 255


def jitter(x: torch.Tensor, rng: random.Random, strength: float = 0.3) -> torch.Tensor:
    """Brightness, contrast and saturation changes (x 1 -/+ ``strength``), grey in a fifth of draws."""
    lo, hi = 1 - strength, 1 + strength
    x = x * rng.uniform(lo, hi)
    mean = x.mean()
    x = (x - mean) * rng.uniform(lo, hi) + mean
    grey = x.mean(0, keepdim=True)
    x = grey + (x - grey) * (0.0 if rng.random() < 0.2 else rng.uniform(lo, hi))
    return x.clamp(0, 1)


def colour_change(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """A random affine colour change rgb -> A rgb + t: brightness and contrast (around mid grey)
    x0.8-1.25 each, saturation x0.7-1.3 or grey. Unlike `jitter` it can be applied exactly to
    splats too (`change_splat_colours`), so the teacher and the student see the same change."""
    grey = torch.full((3, 3), 1 / 3)
    saturation = 0.0 if rng.random() < 0.1 else rng.uniform(0.7, 1.3)
    brightness, contrast = rng.uniform(0.8, 1.25), rng.uniform(0.8, 1.25)
    a = brightness * contrast * (saturation * torch.eye(3) + (1 - saturation) * grey)
    return a, torch.full((3,), brightness * (1 - contrast) * 0.5)


def change_pixels(rgb: torch.Tensor, change: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """[3, H, W] RGB in [0, 1] under ``change``, clipped to [0, 1]."""
    a, t = change
    return (torch.einsum("rc,chw->rhw", a, rgb) + t[:, None, None]).clamp(0, 1)


def change_splat_colours(features: torch.Tensor, background: torch.Tensor,
                         change: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Splat features (their last three entries the YCbCr amplitudes) and the background under
    ``change``: amplitudes take its linear part, the background all of it (YCbCr is linear in RGB)."""
    a, t = change
    to_ycc = torch.from_numpy(RGB_TO_YCBCR).float()
    linear = to_ycc @ a @ torch.linalg.inv(to_ycc)
    features = torch.cat([features[:, :-3], features[:, -3:] @ linear.T], 1)
    return features, linear @ background + to_ycc @ t


class Images:
    """The training images in memory, at most ``MAX_SIDE`` pixels long (uint8)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = list_train_images(root)
        self.rgb = [load_rgb(p) for p in tqdm(self.paths, desc="images", leave=False)]
        self.sizes = [(int(x.shape[2]), int(x.shape[1])) for x in self.rgb]

    def view(self, i: int, box: tuple[float, float, float, float], flip: bool, size: int) -> torch.Tensor:
        """[3, size, size] RGB of ``box`` of image i, resized whole."""
        x = crop_pixels(self.rgb[i], box)[None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        return x.flip(2) if flip else x


# ------------------------------------------------------------------------------- teacher

def simclr_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE over 2B views where views 2k and 2k+1 are of the same image."""
    z = F.normalize(z, dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(z)) ^ 1
    return F.cross_entropy(logits, target)


class Teacher(torch.nn.Module):
    """The ViT plus SimCLR's projection head (dropped at export)."""

    def __init__(self, config: VitConfig) -> None:
        super().__init__()
        self.vit = VisionTransformer(config)
        d = config.output_dim
        self.head = torch.nn.Sequential(torch.nn.Linear(d, 2 * d), torch.nn.GELU(), torch.nn.Linear(2 * d, d))

    @property
    def config(self) -> VitConfig:
        return self.vit.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.vit.embed_pixels(x))


def teacher_batch(images: Images, n: int, rng: random.Random, size: int, min_area: float = 0.2,
                  strength: float = 0.3) -> torch.Tensor:
    views = []
    for _ in range(n):
        i = rng.randrange(len(images.rgb))
        width, height = images.sizes[i]
        for _ in range(2):
            box = random_box(rng, width, height, min_area)
            views.append(jitter(images.view(i, box, rng.random() < 0.5, size), rng, strength))
    return prepare_pixels(torch.stack(views), size)


def train_teacher(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    model = Teacher(replace(TEACHER, width=args.width, layers=args.layers, heads=args.heads,
                            image_size=args.image_size, patch_size=args.patch_size, output_dim=args.dim))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    step, path = resume(args, model, opt, rng)
    images = Images(args.data)
    log = RunLog(args.out, step, settings(args))
    log.comment(f"{sum(p.numel() for p in model.vit.parameters())} ViT parameters; {len(images.rgb)} images")

    def one_step() -> list[float]:
        views = teacher_batch(images, args.batch, rng, model.config.image_size, args.min_area, args.jitter)
        return [simclr_loss(model(views), args.temperature)]

    loop(args, model, opt, rng, step, path, log, one_step, ["loss"])
    return 0


# ------------------------------------------------------------------------------- streams

def make_streams(images: Images, streams: Path, qualities: list[float]) -> list[list[dict]]:
    """The .gsc stream of every training image (as `Images` holds it) at every quality, made
    once by ``gscodec convert`` (effort 0) and reused, decoded: per quality, per image, a dict
    of tensors and the stream's bytes."""
    copies = streams / "images"
    for p, rgb in zip(images.paths, images.rgb, strict=True):
        target = (copies / p.relative_to(images.root)).with_suffix(".png")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(target.with_suffix(".tmp.png"))
            target.with_suffix(".tmp.png").replace(target)
    out = []
    for q in qualities:
        folder = streams / f"q{q:g}"
        summary = gscodec.convert(copies, folder, quality=q, effort=0, init="predictor", workers=1, progress=True)
        if summary.failed:
            raise SystemExit(f"conversion failed for {summary.failed[:3]}")
        sets = []
        for p in images.paths:
            data = (folder / p.relative_to(images.root)).with_suffix(".gsc").read_bytes()
            s = decode_splats(data)
            sets.append({"means": torch.from_numpy(s.means), "scales": torch.from_numpy(s.scales),
                         "angles": torch.from_numpy(s.angles), "colors": torch.from_numpy(s.colors),
                         "background": torch.from_numpy(s.background), "bytes": len(data)})
        out.append(sets)
    return out


def splat_view(s: dict, box: tuple[float, float, float, float], flip: bool, limit: int | None = None,
               grid: int = 0) -> tuple[torch.Tensor, list[Footprint] | None, float]:
    """The features of the splats centred in ``box`` (positions relative to it, flipped if
    asked; a random ``limit`` of them if there are more), their footprints on a ``grid`` x
    ``grid`` grid over the box (if ``grid``; weights scaled up by the inverse of the share
    kept, so that a subset splats as much as all of them on average) and their share of the
    stream's splats."""
    x0, y0, w, h = box
    m = s["means"]
    keep = (m[:, 0] >= x0) & (m[:, 0] < x0 + w) & (m[:, 1] >= y0) & (m[:, 1] < y0 + h)
    if not keep.any():  # a crop of the background only: its nearest splat stands in
        keep[((m - torch.tensor([x0 + w / 2, y0 + h / 2])) ** 2).sum(1).argmin()] = True
    share = float(keep.sum()) / len(m)
    keep = keep.nonzero()[:, 0]
    inside = len(keep)
    if limit is not None and len(keep) > limit:
        keep = keep[torch.randperm(len(keep))[:limit]]
    means = m[keep] - torch.tensor([x0, y0])
    angles = s["angles"][keep]
    if flip:
        means = torch.stack([w - means[:, 0], means[:, 1]], 1)
        angles = -angles
    feats = splat_features(means, s["scales"][keep], angles, s["colors"][keep], w, h)
    prints = None
    if grid:
        prints = [(splat, cell, weight * (inside / len(keep)))
                  for splat, cell, weight in footprints(means, s["scales"][keep], angles, w, h, grid)]
    return feats, prints, share


def thumbnail(view_rgb: torch.Tensor, nbytes: float, size: int) -> torch.Tensor:
    """The view as a raw uint8 RGB thumbnail of at most ``nbytes`` bytes (its aspect kept),
    upsampled back to ``size``: what the same bytes buy as pixels."""
    h, w = view_rgb.shape[1:]
    pixels = max(1.0, nbytes / 3)
    tw = max(1, int(math.sqrt(pixels * w / h)))
    th = max(1, int(pixels / tw))
    small = F.interpolate(view_rgb[None], size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    small = torch.round(small.clamp(0, 1) * 255) / 255
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)[0]


# ------------------------------------------------------------------------------- distill

def load_teacher(args: argparse.Namespace) -> VisionTransformer:
    if args.clip:
        from gscodec.embedding.clip import load_visual

        return load_visual(args.clip)
    ckpt = torch.load(Path(args.teacher) / "checkpoint.pt", map_location="cpu", weights_only=False)
    teacher = Teacher(VitConfig(**ckpt["config"]))
    teacher.load_state_dict(ckpt["model"])
    return teacher.vit


def build_student(args: argparse.Namespace, teacher: VisionTransformer) -> torch.nn.Module:
    if args.student == "thumbnail":
        student = VisionTransformer(teacher.config)
    else:
        student = SplatEncoder(EmbedConfig(stem_dim=args.stem_dim, latents=args.latents,
                                           resampler_layers=args.resampler_layers, locality=args.locality,
                                           token_mlp=args.token_mlp, footprint_grid=args.footprint_grid,
                                           footprint_dim=args.footprint_dim, vit=teacher.config))
    target = student if args.student == "thumbnail" else student.vit
    target.load_state_dict(teacher.state_dict())
    if args.init is not None:  # a trained stem to start from; parts it lacks keep their initialisation
        # the ViT is always the teacher's: a stem trained for another teacher starts this one
        start = {k: v for k, v in load_run(args.init).state_dict().items() if not k.startswith("vit.")}
        mine = student.state_dict()
        if any(k not in mine or mine[k].shape != v.shape for k, v in start.items()):
            raise SystemExit(f"{args.init}'s student has a different stem (see its settings)")
        student.load_state_dict(start, strict=False)
    return student


def trainable(student: torch.nn.Module, kind: str) -> list[torch.nn.Parameter]:
    if kind == "thumbnail":  # the pixel stem: the patch embedding and the position embedding
        student.requires_grad_(False)
        params = [student.conv1.weight, student.positional_embedding]
        for p in params:
            p.requires_grad_(True)
        return params
    return student.trainable(stage=1)


def distill_targets(teacher: VisionTransformer, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's embeddings of [B, 3, h, w] views and its input tokens (patch embeddings
    with their positions)."""
    with torch.no_grad():
        tokens = teacher.patch_tokens(prepare_pixels(views, teacher.config.image_size))
        return teacher.embed_tokens(tokens), tokens


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cos = F.cosine_similarity(student, teacher, dim=1)
    relative = ((student - teacher) ** 2).sum(1) / (teacher ** 2).sum(1).clamp_min(1e-8)
    return (1 - cos).mean() + relative.mean(), cos.mean()


def train_distill(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    teacher = load_teacher(args).eval()
    teacher.requires_grad_(False)
    student = build_student(args, teacher)
    params = trainable(student, args.student)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    step, path = resume(args, student, opt, rng)
    images = Images(args.data)
    streams = make_streams(images, args.streams, args.qualities)
    log = RunLog(args.out, step, settings(args))
    log.comment(f"{sum(p.numel() for p in params)} trained parameters of "
                f"{sum(p.numel() for p in student.parameters())}; {len(images.rgb)} images")
    size = teacher.config.image_size
    student_vit = student if args.student == "thumbnail" else student.vit

    def one_step() -> list[float]:
        views, inputs = [], []
        for _ in range(args.batch):
            i = rng.randrange(len(images.rgb))
            s = streams[rng.randrange(len(streams))][i]
            box = random_box(rng, *images.sizes[i], 0.35)
            flip = rng.random() < 0.5
            change = colour_change(rng) if args.colour_changes and rng.random() < 0.8 else None
            view = images.view(i, box, flip, size)
            views.append(view if change is None else change_pixels(view, change))
            feats, footprint, share = splat_view(s, box, flip, args.max_splats, args.footprint_grid)
            if args.student == "thumbnail":
                crop = crop_pixels(images.rgb[i], box)
                crop = crop if change is None else change_pixels(crop, change)
                inputs.append(thumbnail(crop.flip(2) if flip else crop, share * s["bytes"], size))
            else:
                background = s["background"].float()
                if change is not None:
                    feats, background = change_splat_colours(feats, background, change)
                inputs.append((feats, background, footprint))
        target, target_tokens = distill_targets(teacher, torch.stack(views))
        if args.student == "thumbnail":
            tokens = student.patch_tokens(prepare_pixels(torch.stack(inputs), size))
        else:
            feats, pad = pad_tokens([f for f, _, _ in inputs])
            prints = [p for _, _, p in inputs] if args.footprint_grid else None
            tokens = student.stem(feats, torch.stack([b for _, b, _ in inputs]), pad, prints)
        loss, cos = distill_loss(student_vit.embed_tokens(tokens), target)
        token_loss = torch.zeros(())
        if args.token_weight and tokens.shape == target_tokens.shape:
            token_loss = ((tokens - target_tokens) ** 2).mean() / (target_tokens ** 2).mean()
        return [loss + args.token_weight * token_loss, cos.item(), token_loss.item()]

    student.train()
    loop(args, student, opt, rng, step, path, log, one_step, ["loss", "cos", "tokens"])
    return 0


def probe(args: argparse.Namespace) -> int:
    """How much of a teacher's embedding of a whole training image survives, with no student,
    in a thumbnail of as many bytes as the image's stream and in the stream's decode: the
    teacher's own view of what each input keeps, a quick check of a teacher before students
    are trained for it (the students then learn to read each input better)."""
    teacher = load_teacher(args).eval()
    size = teacher.config.image_size
    paths = list_train_images(args.data)
    paths = paths[:: max(1, len(paths) // args.images)][: args.images]
    for q in args.qualities:
        rows = []
        for p in tqdm(paths, desc=f"quality {q:g}", leave=False):
            stream = (args.streams / f"q{q:g}" / p.relative_to(args.data)).with_suffix(".gsc")
            if not stream.exists():
                raise SystemExit(f"{stream} is missing: `distill` makes the training images' streams")
            data = stream.read_bytes()
            rgb = load_rgb(p).float() / 255
            decoded = torch.from_numpy(np.asarray(gscodec.decode(data)).copy()).permute(2, 0, 1).float() / 255
            views = [F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True,
                                   align_corners=False)[0] for x in (rgb, decoded)]
            embedded = distill_targets(teacher, torch.stack([views[0], thumbnail(rgb, len(data), size), views[1]]))[0]
            rows.append(F.cosine_similarity(embedded[:1], embedded[1:]).tolist())
        cos = np.array(rows)
        print(f"quality {q:g}, {len(paths)} training images: teacher cosine to its own embedding of the image: "
              f"thumbnail of the stream's bytes {cos[:, 0].mean():.3f} (min {cos[:, 0].min():.3f}), "
              f"the stream's decode {cos[:, 1].mean():.3f} (min {cos[:, 1].min():.3f})")
    return 0


# --------------------------------------------------------------------------- contrastive

def read_pairs(path: Path) -> list[tuple[Path, str]]:
    """Lines ``STREAM<TAB>CAPTION``; a relative stream path is relative to the pairs file."""
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip():
            stream, caption = line.split("\t", 1)
            pairs.append((path.parent / stream, caption))
    return pairs


def train_contrastive(args: argparse.Namespace) -> int:
    from gscodec.embedding.clip import load_text

    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    exported = (args.init / "embed.json").exists()
    student = copy.deepcopy(model_io.load(args.init)) if exported else load_run(args.init)  # the cache stays intact
    params = student.trainable(stage=2)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    step, path = resume(args, student, opt, rng)
    text = load_text(args.clip, arch=args.arch)
    pairs = read_pairs(args.pairs)
    with torch.no_grad():
        captions = F.normalize(text.encode([c for _, c in pairs]).float(), dim=1)
    splats = [decode_splats(p.read_bytes()) for p, _ in pairs]
    log = RunLog(args.out, step, settings(args))
    log.comment(f"{len(pairs)} pairs; {sum(p.numel() for p in params)} trained parameters")
    scale = float(text.logit_scale)

    def one_step() -> list[float]:
        idx = rng.sample(range(len(pairs)), min(args.batch, len(pairs)))
        feats, backgrounds, prints = [], [], []
        grid = student.config.footprint_grid
        for i in idx:
            s = splats[i]
            box = (0.0, 0.0, float(s.width), float(s.height))
            f, p, _ = splat_view({k: torch.from_numpy(getattr(s, k)) for k in ("means", "scales", "angles", "colors")},
                                 box, False, grid=grid)
            feats.append(f)
            prints.append(p)
            backgrounds.append(torch.from_numpy(s.background))
        feats_t, pad = pad_tokens(feats)
        image = F.normalize(student(feats_t, torch.stack(backgrounds), pad, prints if grid else None), dim=1)
        logits = scale * image @ captions[idx].T
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return [loss]

    student.train()
    loop(args, student, opt, rng, step, path, log, one_step, ["loss"])
    return 0


# ---------------------------------------------------------------------------- the loop

def settings(args: argparse.Namespace) -> dict:
    """The options as JSON values. Paths are relative to the working directory (the repository
    root, in the recipes), so that no machine's absolute path is recorded, except a CLIP
    checkpoint's: the user's own file, read again by `gscodec.embed_text`."""
    def value(k: str, v: object) -> object:
        if not isinstance(v, Path):
            return v
        return str(v.resolve()) if k == "clip" else os.path.relpath(v)

    return {k: value(k, v) for k, v in vars(args).items() if k != "func"}


def resume(args, model, opt, rng) -> tuple[int, Path]:
    path = args.out / "checkpoint.pt"
    if args.resume and path.exists():
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        rng.setstate(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        return ckpt["step"], path
    args.out.mkdir(parents=True, exist_ok=True)
    return 0, path


def checkpoint(model, opt, rng, step: int, args, path: Path) -> None:
    config = model.config
    save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": rng.getstate(),
                 "torch_rng": torch.get_rng_state(), "kind": args.command, "student": getattr(args, "student", None),
                 "config": config.to_dict() if hasattr(config, "to_dict") else asdict(config),
                 "settings": settings(args)}, path)


def loop(args, model, opt, rng, step, path, log, one_step, names) -> None:
    """Run ``one_step`` (-> [loss tensor, other floats...]) until ``args.steps``, with the lr
    schedule, gradient clipping, logging, checkpoints and the CPU budget."""
    budget = CpuBudget(args.cpu_minutes)
    bar = tqdm(total=args.steps, initial=step, desc=args.command, unit="step")
    window, t0 = [], time.perf_counter()
    params = [p for g in opt.param_groups for p in g["params"]]
    while step < args.steps:
        if budget.exceeded():
            log.comment(f"stop at step {step}: {args.cpu_minutes} CPU minutes used")
            break
        set_lr(opt, cosine_lr(args.lr, step, args.steps, warmup=args.warmup))
        values = one_step()
        opt.zero_grad()
        values[0].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        window.append([float(v.detach()) if torch.is_tensor(v) else float(v) for v in values])
        bar.update()
        if step % args.log_every == 0 or step == args.steps:
            v = np.mean(window, 0)
            text = " ".join(f"{n} {x:.4f}" for n, x in zip(names, v, strict=True))
            log.write(f"step {step} {text} lr {opt.param_groups[0]['lr']:.2e} "
                      f"s/step {(time.perf_counter() - t0) / len(window):.2f}")
            bar.set_postfix_str(text)
            window, t0 = [], time.perf_counter()
        if step % args.save_every == 0:
            checkpoint(model, opt, rng, step, args, path)
    checkpoint(model, opt, rng, step, args, path)
    bar.close()
    log.close()


# ------------------------------------------------------------------------------ export

def load_run(run: Path) -> SplatEncoder:
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    if ckpt.get("student") != "splat" and ckpt.get("kind") != "contrastive":
        raise SystemExit(f"{run} is not a splat student's run")
    model = SplatEncoder(EmbedConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model


def export(args: argparse.Namespace) -> int:
    ckpt = torch.load(args.run / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = load_run(args.run)
    recipe = {"command": f"python -m training.embed {ckpt['kind']} ...", "settings": ckpt["settings"],
              "steps": ckpt["step"], "data": "../shared/data/train (BSDS500, Sun-Hays80)"}
    clip = ckpt["settings"].get("clip")
    path = model_io.save(model.eval(), args.to, recipe=recipe, teacher=args.teacher_note,
                         clip={"checkpoint": clip, "arch": ckpt["settings"].get("arch")} if clip else None)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


# -------------------------------------------------------------------------------- main

def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.embed", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser, steps: int, batch: int, lr: float) -> None:
        q.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, log.txt")
        q.add_argument("--data", type=Path, default=default_train_dir())
        q.add_argument("--steps", type=int, default=steps)
        q.add_argument("--batch", type=int, default=batch)
        q.add_argument("--lr", type=float, default=lr)
        q.add_argument("--warmup", type=int, default=100)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--threads", type=int, default=None)
        q.add_argument("--log-every", type=int, default=25)
        q.add_argument("--save-every", type=int, default=250)
        q.add_argument("--cpu-minutes", type=float, default=None, metavar="M")
        q.add_argument("--resume", action="store_true")

    t = sub.add_parser("teacher", help="the RGB teacher, self-supervised (SimCLR)")
    common(t, 3000, 48, 1e-3)
    t.add_argument("--temperature", type=float, default=0.2)
    t.add_argument("--min-area", type=float, default=0.2, help="smallest crop, as a share of the image")
    t.add_argument("--jitter", type=float, default=0.3,
                   help="colour changes: brightness, contrast and saturation x 1 -/+ this")
    for name in ("width", "layers", "heads", "image_size", "patch_size"):
        t.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(TEACHER, name))
    t.add_argument("--dim", type=int, default=TEACHER.output_dim, help="embedding size")
    t.set_defaults(func=train_teacher)

    d = sub.add_parser("distill", help="stage 1: a student learns the teacher's embeddings")
    common(d, 3000, 32, 1e-3)
    d.add_argument("--teacher", type=Path, help="a teacher run folder")
    d.add_argument("--clip", type=Path, help="or a local CLIP checkpoint (its visual tower is the teacher)")
    d.add_argument("--student", choices=["splat", "thumbnail"], default="splat")
    d.add_argument("--streams", type=Path, default=Path("training/cache/embed-streams"),
                   help="where the training images' .gsc streams are made once")
    d.add_argument("--qualities", type=float, nargs="+", default=[10.0, 40.0])
    d.add_argument("--stem-dim", type=int, default=128)
    d.add_argument("--latents", type=int, default=64)
    d.add_argument("--resampler-layers", type=int, default=2)
    d.add_argument("--locality", action=argparse.BooleanOptionalAction, default=True,
                   help="bias each latent's attention towards the splats over its grid cell (needs a square "
                        "number of latents)")
    d.add_argument("--token-mlp", action=argparse.BooleanOptionalAction, default=True,
                   help="make each splat's token with an MLP rather than a linear map")
    d.add_argument("--footprint-grid", type=int, default=0, metavar="G",
                   help="also splat each token onto a G x G grid by its Gaussian (0: off; G a multiple of the "
                        "latents' grid)")
    d.add_argument("--footprint-dim", type=int, default=8, help="channels splatted per grid cell")
    d.add_argument("--max-splats", type=int, default=MAX_SPLATS,
                   help="a view keeps a random subset of at most this many splats (cost)")
    d.add_argument("--init", type=Path, default=None,
                   help="start the student's stem from this splat run's checkpoint (the ViT is always the "
                        "teacher's; new parts start at their initialisation)")
    d.add_argument("--colour-changes", action=argparse.BooleanOptionalAction, default=True,
                   help="change the colours of a view (the same change for the teacher's pixels and the splats)")
    d.add_argument("--token-weight", type=float, default=1.0,
                   help="weight of the token loss: the student's tokens against the teacher's input tokens "
                        "(patch embeddings with positions), when it has as many latents as the teacher patches")
    d.set_defaults(func=train_distill)

    c = sub.add_parser("contrastive", help="stage 2: CLIP's loss on (stream, caption) pairs")
    common(c, 1000, 32, 1e-4)
    c.add_argument("--init", type=Path, required=True, help="a distill run folder or exported weights")
    c.add_argument("--clip", type=Path, required=True, help="the local CLIP checkpoint with its text tower")
    c.add_argument("--arch", default=None, help="open_clip's model name for an open_clip-layout checkpoint")
    c.add_argument("--pairs", type=Path, required=True, help="lines STREAM<TAB>CAPTION")
    c.set_defaults(func=train_contrastive)

    r = sub.add_parser("probe", help="a teacher on equal-bytes thumbnails and on decoded streams, no student")
    r.add_argument("--teacher", type=Path, required=True, help="a teacher run folder")
    r.add_argument("--data", type=Path, default=default_train_dir())
    r.add_argument("--streams", type=Path, default=Path("training/cache/embed-streams"))
    r.add_argument("--qualities", type=float, nargs="+", default=[10.0, 40.0])
    r.add_argument("--images", type=int, default=60, help="this many training images, evenly spaced")
    r.add_argument("--threads", type=int, default=None)
    r.set_defaults(func=probe, clip=None)

    e = sub.add_parser("export", help="write a splat student's weights for gscodec.embed")
    e.add_argument("--run", type=Path, required=True)
    e.add_argument("--to", type=Path, required=True)
    e.add_argument("--teacher-note", default="a ViT trained here from scratch (SimCLR on ../shared/data/train); "
                   "not CLIP")
    e.set_defaults(func=export)
    args = p.parse_args(argv)
    if args.command == "distill" and not (args.teacher or args.clip):
        p.error("distill needs --teacher or --clip")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
