"""Train the staged predictor (gscodec/predictor) on ../shared/data/train: Predict-Optimize-Distill.

    python -m training.predictor --out training/runs/predictor [--steps N] [--resume]

Per batch of random crops, stage by stage (earlier stages' splats fixed and rendered):
1. Predict the stage's candidates from [image, residual]; Stage Control with a random
   threshold per batch keeps some (the network learns to work with any threshold);
2. Optimize: a copy of the kept splats takes ``--inner`` Adam steps on the reconstruction
   loss with everything else fixed (the short-horizon fit of AIR's POD);
3. Distill: the loss is the reconstruction loss of the predicted splats plus ``--distill``
   times a SmoothL1 pull of the predicted parameters towards the optimized ones.
The stage loss is the RGB mean squared error of the render of all stages so far. Stages are
trained together in every step (each sees its predecessors' detached output), which on
2 cores trains faster than AIR's stage-by-stage schedule.

Checkpoints (model, optimizer, step, settings) every ``--save-every`` steps and at the end;
``--resume`` continues from the last. The log is one plain line per ``--log-every`` steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gscodec.predictor.network import PredictorConfig, StagedPredictor
from gscodec.predictor.rollout import StageSplats, predict_stage, render, rgb_error
from training.data import Crops, default_train_dir


def settings(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.predictor", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_train_dir())
    ap.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, log.txt")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--inner", type=int, default=3, help="Adam steps of the optimize phase (0: no POD)")
    ap.add_argument("--inner-lr", type=float, default=0.05)
    ap.add_argument("--distill", type=float, default=1.0, help="weight of the distillation loss")
    ap.add_argument("--threshold-range", type=float, nargs=2, default=(-4.5, -2.0),
                    help="log10 range of the random Stage Control thresholds (squared RGB error per pixel)")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", type=Path, metavar="FOLDER",
                    help="write the run's checkpoint as shipped weights (safetensors + JSON) to FOLDER and stop")
    return ap.parse_args(argv)


def portable(args: argparse.Namespace) -> dict:
    """The settings with paths relative to the working folder where they can be (a log or
    checkpoint in the repository names no machine's absolute paths)."""
    out = {}
    for key, value in vars(args).items():
        if isinstance(value, Path):
            value = os.path.relpath(value) if value.is_absolute() else str(value)
        out[key] = value
    return out


def export(args: argparse.Namespace) -> int:
    """The checkpoint of ``args.out`` as gscodec's shipped weights, with the recipe that made them."""
    from gscodec.predictor.model import save
    from training.data import list_train_images

    ckpt = torch.load(args.out / "checkpoint.pt", weights_only=False)
    config = ckpt["config"]
    model = StagedPredictor(PredictorConfig(**{**config, "patch_sizes": tuple(config["patch_sizes"])}))
    model.load_state_dict(ckpt["model"])
    trained = ckpt["settings"]
    images = list_train_images(Path(trained["data"]))
    recipe = {
        "command": f"python -m training.predictor --out {args.out} " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
            for k, v in trained.items() if k not in ("data", "out", "resume", "export") and v is not None),
        "data": "../shared/data/train (BSDS500 + Sun-Hays80): "
                f"{len(images)} images, file list SHA-256 "
                + __import__("hashlib").sha256("\n".join(p.name for p in images).encode()).hexdigest()[:16],
        "steps": ckpt["step"],
        "log": "training/runs/predictor/log.txt",
    }
    path = save(model, args.export, recipe=recipe)
    print(f"wrote {path} ({path.stat().st_size} bytes) from step {ckpt['step']}")
    return 0


def optimize_stage(target: torch.Tensor, before: torch.Tensor, s: StageSplats, steps: int, lr: float) -> StageSplats:
    """``steps`` Adam steps on the stage's splats alone (log-scales), the rest of the render fixed."""
    params = [s.means.clone(), s.scales.log(), s.angles.clone(), s.colors.clone()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    h, w = target.shape[1:]
    for _ in range(steps):
        cur = StageSplats(params[0], params[1].exp(), params[2], params[3])
        loss = rgb_error((before + render([cur], h, w))[None], target[None]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return StageSplats(params[0].detach(), params[1].detach().exp(), params[2].detach(), params[3].detach())


def distance(a: StageSplats, b: StageSplats) -> torch.Tensor:
    """SmoothL1 between two versions of the same splats (log-scales; angle as the doubled-angle vector)."""
    if not len(a.means):
        return a.means.sum()
    terms = [F.smooth_l1_loss(a.means, b.means), F.smooth_l1_loss(a.scales.log(), b.scales.log()),
             F.smooth_l1_loss(torch.stack([torch.cos(2 * a.angles), torch.sin(2 * a.angles)], -1),
                              torch.stack([torch.cos(2 * b.angles), torch.sin(2 * b.angles)], -1)),
             10.0 * F.smooth_l1_loss(a.colors, b.colors)]
    return sum(terms)


def train_step(model: StagedPredictor, batch: torch.Tensor, args: argparse.Namespace, rng: random.Random):
    """One step over all stages; returns (total loss, per-stage PSNR of the predicted renders)."""
    b, _, h, w = batch.shape
    threshold = 10 ** rng.uniform(*args.threshold_range)
    current = torch.zeros_like(batch)
    placed: list[list[StageSplats]] = [[] for _ in range(b)]
    total = torch.zeros(())
    psnrs = []
    for stage in range(model.config.stages):
        new = predict_stage(model, batch, current, stage, None if stage == 0 else threshold)
        renders, distill = [], torch.zeros(())
        for i in range(b):
            mine = render([new[i]], h, w)
            renders.append(current[i] + mine)
            if args.inner and len(new[i].means):
                target = optimize_stage(batch[i], current[i], new[i].detach(), args.inner, args.inner_lr)
                distill = distill + distance(new[i], target) / b
        out = torch.stack(renders)
        mse = rgb_error(out, batch).mean() / 3
        total = total + mse + args.distill * 1e-3 * distill
        psnrs.append(10 * math.log10(1 / max(mse.item(), 1e-12)))
        current = out.detach()
        for i in range(b):
            placed[i].append(new[i].detach())
    return total, psnrs


def main(argv: list[str] | None = None) -> int:
    args = settings(argv)
    if args.export:
        return export(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    config = PredictorConfig(channels=args.channels, blocks=args.blocks)
    model = StagedPredictor(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step = 0
    ckpt_path = args.out / "checkpoint.pt"
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, rng = ckpt["step"], ckpt["rng"]
        torch.set_rng_state(ckpt["torch_rng"])
    crops = Crops(args.data, args.crop, seed=args.seed + step)
    log = (args.out / "log.txt").open("a")
    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} start at step {step}: {json.dumps(portable(args))}\n")
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters; {len(crops.images)} training images", flush=True)
    bar = tqdm(total=args.steps, initial=step, desc="training", unit="step")
    window, t0 = [], time.perf_counter()
    while step < args.steps:
        for group in opt.param_groups:  # cosine decay to 5 %
            group["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        loss, psnrs = train_step(model, crops.batch(args.batch), args, rng)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        window.append(psnrs)
        bar.update()
        if step % args.log_every == 0:
            mean = np.mean(window, 0)
            line = (f"step {step} loss {loss.item():.6f} psnr " + " ".join(f"{v:.2f}" for v in mean)
                    + f" lr {opt.param_groups[0]['lr']:.2e} s/step {(time.perf_counter() - t0) / len(window):.2f}")
            log.write(line + "\n")
            log.flush()
            bar.set_postfix_str(" ".join(f"{v:.1f}" for v in mean))
            window, t0 = [], time.perf_counter()
        if step % args.save_every == 0 or step == args.steps:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": rng,
                        "torch_rng": torch.get_rng_state(), "config": asdict(config), "settings": portable(args)},
                       ckpt_path.with_suffix(".tmp"))
            ckpt_path.with_suffix(".tmp").replace(ckpt_path)
    bar.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
