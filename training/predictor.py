"""Train the staged predictor (gscodec/predictor) on ../shared/data/train, in three phases.

    python -m training.predictor --out RUN [--phase pod|joint|quant] [--init-from CKPT] [--steps N] [--resume]

``--phase pod`` (Predict-Optimize-Distill), per batch of random crops, stage by stage
(earlier stages' splats fixed and rendered):
1. Predict the stage's candidates from [image, residual]; Stage Control with a random
   threshold per batch keeps some (the network learns to work with any threshold);
2. Optimize: a copy of the kept splats takes ``--inner`` Adam steps on the reconstruction
   loss with everything else fixed (the short-horizon fit of AIR's POD);
3. Distill: the loss is the reconstruction loss of the predicted splats plus ``--distill``
   times a SmoothL1 pull of the predicted parameters towards the optimized ones.
The stage loss is the RGB mean squared error of the render of all stages so far. Stages are
trained together in every step (each sees its predecessors' detached output), which on
2 cores trains faster than AIR's stage-by-stage schedule. ``--inner 0 --distill 0`` is
plain end-to-end training (the ablation of bench/README.md).

``--phase joint`` (cross-stage fine-tuning): the same stage losses, but gradients flow
through the earlier stages' renders, so a stage learns to leave a residual the later
ones can fix; no inner optimization.

``--phase quant`` (quantization-aware fine-tuning and the image-adaptive quantizer): as
joint, and the final render is made of splats perturbed by uniform noise of the width of
their quantizer steps (the policy's steps for a random quality, scaled by the network's
`step_factors`), with a rate term: ``lambda(quality)`` times the bits per pixel the
factors save or spend (one bit per symbol per halving of a step). ``lambda`` comes from the
slope of the predictor-only Kodak RD curve measured before this phase (`rd_slope`).

``--init-from`` starts from another run's checkpoint (its weights only: a new phase gets a
fresh optimizer and schedule). Checkpoints (model, optimizer, step, settings) every
``--save-every`` steps and at the end; ``--resume`` continues from the last. The log is one
plain line per ``--log-every`` steps.
"""

from __future__ import annotations

# isort: off
import gscodec  # noqa: F401  (first: it makes OpenMP threads wait passively before torch loads, so that
# a job sharing the cores does not make torch's spinning threads burn CPU time)
# isort: on
import argparse
import hashlib
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

from gscodec.predictor.network import SYMBOLS_PER_SPLAT, PredictorConfig, StagedPredictor
from gscodec.predictor.rollout import StageSplats, predict_stage, render, rgb_error
from gscodec.quant.policy import steps_for_quality
from training.data import Crops, default_train_dir
from training.loop import CpuBudget, cosine_lr, save_atomic, set_lr


def settings(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.predictor", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_train_dir())
    ap.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, log.txt")
    ap.add_argument("--phase", choices=("pod", "joint", "quant"), default="pod")
    ap.add_argument("--init-from", type=Path, metavar="CKPT", help="start from this checkpoint's weights")
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
    ap.add_argument("--until", type=int, metavar="STEP",
                    help="stop at this step (the learning-rate schedule still spans --steps)")
    ap.add_argument("--cpu-minutes", type=float, metavar="M",
                    help="also stop after M minutes of this process's CPU time (equal-time ablations)")
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


def phases(checkpoint: Path) -> list[dict]:
    """The training runs that made ``checkpoint``, first to last (following ``--init-from``):
    per run its command, steps and log."""
    ckpt = torch.load(checkpoint, weights_only=False)
    settings = ckpt["settings"]
    skip = ("data", "resume", "export", "until", "cpu_minutes")
    command = "python -m training.predictor " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
        for k, v in settings.items() if k not in skip and v is not None)
    run = {"command": command, "steps": ckpt["step"], "log": f"{settings['out']}/log.txt"}
    earlier = phases(Path(settings["init_from"])) if settings.get("init_from") else []
    return [*earlier, run]


def export(args: argparse.Namespace) -> int:
    """The checkpoint of ``args.out`` as gscodec's shipped weights, with the recipe that made them."""
    from gscodec.predictor.model import save
    from training.data import list_train_images

    ckpt = torch.load(args.out / "checkpoint.pt", weights_only=False)
    config = ckpt["config"]
    model = StagedPredictor(PredictorConfig(**{**config, "patch_sizes": tuple(config["patch_sizes"])}))
    load_weights(model, ckpt["model"], args.out / "checkpoint.pt")
    images = list_train_images(Path(ckpt["settings"]["data"]))
    recipe = {
        "phases": phases(args.out / "checkpoint.pt"),
        "data": "../shared/data/train (BSDS500 + Sun-Hays80): "
                f"{len(images)} images, file list SHA-256 "
                + hashlib.sha256("\n".join(p.name for p in images).encode()).hexdigest()[:16],
    }
    path = save(model, args.export, recipe=recipe)
    print(f"wrote {path} ({path.stat().st_size} bytes) from step {ckpt['step']} of {args.out}")
    return 0


def load_weights(model: StagedPredictor, weights: dict, source: Path) -> None:
    """``weights`` into ``model``; a checkpoint of phase pod or joint has no quantizer head
    yet, which then keeps its initial zero output (the policy's steps)."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("quantizer.") for k in missing):
        raise SystemExit(f"{source} does not fit this network: missing {missing}, unexpected {unexpected}")


def load_optimizer(opt: torch.optim.Optimizer, model: StagedPredictor, state: dict) -> None:
    """The optimizer's state from a checkpoint; one from before the quantizer head existed
    restores every other parameter's state (the head's starts fresh)."""
    try:
        opt.load_state_dict(state)
    except ValueError:
        older = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("quantizer.")])
        older.load_state_dict(state)
        opt.state.update(older.state)


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


def rd_slope(quality: float) -> float:
    """The slope of the predictor-only Kodak RD curve at ``quality``, in dB per bit per pixel:
    bench/results/kodak/gscodec-predictor-e0.json before this phase (qualities 0, 20, 40, 65)
    gave 16.9, 7.8 and 3.3 dB/bpp between neighbouring qualities (at 10, 30 and 52; a
    log-linear fit below). A rate term weighted by ``mse * ln(10) / 10 * rd_slope`` (the
    Lagrangian in dB: a bit per pixel is worth ``rd_slope`` dB) prices bits the same for every
    crop at a quality, whatever its distortion."""
    return math.exp(3.2 - 3.86 * quality / 100)


def quantized(s: StageSplats, steps, factors: torch.Tensor) -> StageSplats:
    """``s`` with uniform noise one quantizer step wide on each attribute (a differentiable
    stand-in for rounding): steps from the policy, scaled by 2**factors."""
    k = 2.0 ** factors
    n = len(s.means)

    def noise(*shape):
        return torch.rand(n, *shape) - 0.5

    log_scales = s.scales.log() + math.log(2) * k[1] / steps.scale_den * noise(2)
    color_step = torch.stack([steps.color_step[0] * k[3], steps.color_step[1] * k[4], steps.color_step[2] * k[4]])
    return StageSplats(s.means + steps.pos_step * k[0] * noise(2), log_scales.exp(),
                       s.angles + math.pi / steps.angle_levels * k[2] * noise(), s.colors + color_step * noise(3))


def train_step(model: StagedPredictor, batch: torch.Tensor, args: argparse.Namespace, rng: random.Random):
    """One step over all stages; returns (total loss, per-stage PSNR of the predicted renders
    [, PSNR after quantization noise and the mean log2 step factors, in phase quant])."""
    b, _, h, w = batch.shape
    threshold = 10 ** rng.uniform(*args.threshold_range)
    current = torch.zeros_like(batch)
    placed: list[list[StageSplats]] = [[] for _ in range(b)]
    total = torch.zeros(())
    psnrs = []
    for stage in range(model.config.stages):
        new, summary = predict_stage(model, batch, current, stage, None if stage == 0 else threshold)
        renders, distill = [], torch.zeros(())
        for i in range(b):
            mine = render([new[i]], h, w)
            renders.append(current[i] + mine)
            if args.phase == "pod" and args.inner and len(new[i].means):
                target = optimize_stage(batch[i], current[i], new[i].detach(), args.inner, args.inner_lr)
                distill = distill + distance(new[i], target) / b
        out = torch.stack(renders)
        mse = rgb_error(out, batch).mean() / 3
        total = total + mse + args.distill * 1e-3 * distill
        psnrs.append(10 * math.log10(1 / max(mse.item(), 1e-12)))
        current = out.detach() if args.phase == "pod" else out
        for i in range(b):
            placed[i].append(new[i].detach() if args.phase == "pod" else new[i])
    if args.phase == "quant":
        quality = 100 * rng.random()
        steps = steps_for_quality(quality)
        factors = model.step_factors(summary, quality)
        noisy = torch.stack([render([quantized(s, steps, factors[i]) for s in placed[i]], h, w) for i in range(b)])
        mse = rgb_error(noisy, batch).mean() / 3
        splats = torch.tensor([sum(len(s.means) for s in placed[i]) for i in range(b)], dtype=torch.float32)
        bits = -(splats[:, None] * factors * torch.tensor(SYMBOLS_PER_SPLAT)).sum(1) / (h * w)  # per pixel
        price = mse.detach() * math.log(10) / 10 * rd_slope(quality)  # MSE per bit per pixel
        total = total + mse + price * bits.mean()
        psnrs.append(10 * math.log10(1 / max(mse.item(), 1e-12)))
        psnrs.extend(factors.mean(0).tolist())
    return total, psnrs


def save(model, opt, step, rng, config, args, path: Path) -> None:
    """The checkpoint, written atomically (a kill never leaves half a file)."""
    save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": rng,
                 "torch_rng": torch.get_rng_state(), "config": asdict(config), "settings": portable(args)}, path)


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
    if args.init_from and not (args.resume and ckpt_path.exists()):
        load_weights(model, torch.load(args.init_from, weights_only=False)["model"], args.init_from)
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        load_weights(model, ckpt["model"], ckpt_path)
        load_optimizer(opt, model, ckpt["optimizer"])
        step, rng = ckpt["step"], ckpt["rng"]
        torch.set_rng_state(ckpt["torch_rng"])
    crops = Crops(args.data, args.crop, seed=args.seed + step)
    log = (args.out / "log.txt").open("a")
    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} start at step {step}: {json.dumps(portable(args))}\n")
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters; {len(crops.images)} training images", flush=True)
    bar = tqdm(total=args.steps, initial=step, desc="training", unit="step")
    window, t0, budget = [], time.perf_counter(), CpuBudget(args.cpu_minutes)
    while step < min(args.steps, args.until or args.steps):
        if budget.exceeded():
            log.write(f"# stop at step {step}: {args.cpu_minutes} CPU minutes used\n")
            save(model, opt, step, rng, config, args, ckpt_path)
            break
        set_lr(opt, cosine_lr(args.lr, step, args.steps))  # cosine decay to 5 %
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
            stages = config.stages
            line = f"step {step} loss {loss.item():.6f} psnr " + " ".join(f"{v:.2f}" for v in mean[:stages])
            if len(mean) > stages:  # phase quant: PSNR with quantization noise, mean log2 step factors
                line += f" quantized {mean[stages]:.2f} factors " + " ".join(f"{v:+.2f}" for v in mean[stages + 1:])
            line += (f" lr {opt.param_groups[0]['lr']:.2e} s/step {(time.perf_counter() - t0) / len(window):.2f}")
            log.write(line + "\n")
            log.flush()
            bar.set_postfix_str(" ".join(f"{v:.1f}" for v in mean[: stages + 1]))
            window, t0 = [], time.perf_counter()
        if step % args.save_every == 0 or step == args.steps:
            save(model, opt, step, rng, config, args, ckpt_path)
    bar.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
