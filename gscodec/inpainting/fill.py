"""`inpaint`: fill a hole in a splat stream with new splats, keeping every splat away from it.

1. Render the stream (the decoder's float image, YCbCr without background).
2. Remove the splats whose support touches the hole with more than `REMOVE_SHARE` of their
   weight (`problem.touching`); keep the others bit for bit, in their order and layers. The
   region to redraw is the hole plus the supports of the removed splats. A kept splat whose
   faint edge reaches into the hole is cancelled there by the new splats (step 4: their
   target in the hole is the smooth fill minus what the kept splats draw), so its far side
   stays exact. On 12 Sun-Hays crops (768 x 512, quality 50, effort 0, the generator's masks),
   shares 0 / 0.02 / 0.05 / 0.1: the pixels farther than 32 from the hole fell below the
   input's decode by 0.046 / 0.008 / 0.003 / 0.001 dB on average (worst 0.108 / 0.032 /
   0.009 / 0.005) with thin holes, 0.059 / 0.014 / 0.010 / 0.008 (0.099 / 0.030 / 0.023 /
   0.022) medium, 0.063 / 0.021 / 0.017 / 0.016 (0.115 / 0.047 / 0.043 / 0.038) thick.
   But a kept edge was fitted to the original hole pixels, and what the new splats fail to
   cancel of it is information no pixel method has: with the streams made from the images
   with their holes filled smoothly first (so that no splat knows the truth), 0 -> 0.02
   changed hole PSNR by +0.04 / +0.02 / -0.02 dB (thin / medium / thick), on the real streams
   by +0.08 / +0.05 / 0.00, so about 0.02-0.05 dB of the hole's PSNR comes from the kept
   edges at 0.02; at larger shares more (0.9: +2.4 dB in thin holes, most of it the truth
   let through). Hence a small share.
3. The network (`network.InpaintNet`) reads a window around the region (the region plus
   `CONTEXT` pixels, on a 16-pixel grid), conditioned by the global vector of the masked
   whole image, and predicts one splat per patch for the patches that hold region pixels;
   the patch side (4, 8 or 16 pixels) is the one whose count of such patches is nearest the
   count of removed splats (`problem.count_patch`).
4. The new splats' colours are solved by least squares (``solve_colors``, on by default):
   to every known pixel of the window (in the region, what the removed splats drew there;
   beyond it, nothing, so that new splats do not spill onto kept pixels), to a smooth fill
   of the hole (`problem.smooth_fill`: a blend of about the harmonic and the biharmonic
   fills of the known pixels, biharmonic near them; weight `HOLE_WEIGHT` per pixel), and
   pulled towards the network's colours; then Adam steps (`polish_steps`) move all the new
   splats' parameters towards the same target (`_polish`). On 12 training images (quality 50, effort 0, the
   generator's medium / thick masks) the solve to the region's known pixels alone gave
   19.86 / 18.02 dB in the hole and the pixels farther than 32 from it 0.21 / 0.30 dB below
   the input's decode; with the whole window's known pixels, 2 solve steps instead of 8 and
   10 polish steps, 20.20 / 18.18 dB and 0.07 / 0.07 dB below (6 steps: 20.12 / 18.11;
   without the window's pixels the polish spilled: 0.16 / 0.22 dB below); with the mean of
   the harmonic and biharmonic fills as the target instead of the harmonic fill, 20.41 /
   18.39 dB (the biharmonic fill alone: 20.47 / 18.16). On Kodak (bench/README.md) the fill
   target had taken hole PSNR from 20.21 / 18.76 / 15.93 dB to 20.99 / 20.34 / 18.29 (thin /
   medium / thick; before rate-distortion pruning made the streams sparser); a hole weight
   of 0.3 or 3 instead of 1 changed it by at most 0.05 dB (push-pull target, 8 images).
   Earlier, without the fill, with a model trained for 250 steps on the two DIV2K sample
   images: the solve gave +1.7 / +2.3 / +0.7 dB in the hole, and a pull of 0.1 or 0.01
   instead of 1 changed PSNR by at most 0.1 dB.
   If there are more new splats than removed ones (a sparse stream's splats are larger than
   even 16-pixel patches), those whose removal would cost least at the network's colours
   (`_energies`) are dropped first, so the output is about the input's size. On 8 training
   images (quality 50, effort 0, the generator's masks) this took the output from x1.49 /
   1.50 / 1.77 the input's size (thin / medium / thick; patch side from the density, rounded
   down) to x0.98 / 0.99 / 0.93 (at most 1.06 / 1.08 / 1.11 when dropping after a first
   solve, below), for hole PSNR 20.06 / 18.68 / 16.89 -> 19.47 / 18.57 / 16.80 dB; with the
   density's patch side and the same cap it fell 1-2 dB (the grid loses its cover). Dropping
   after a first solve, then solving again, kept 0.01-0.04 dB more for 20-30 % more time.
5. When the output's quantizer steps are known (a stream's own, or ``steps``), the new splats'
   geometry is snapped to that grid (`_snap`: what `encode_splats` will write) and their
   colours solved again for it (`FINAL_SOLVE_ITERATIONS`), as the encoder ends on its grid.
   On 12 Sun-Hays crops (768 x 512, quality 50, effort 0, the generator's masks), hole PSNR
   of the written stream thin / medium / thick: 23.14 / 20.84 / 17.38 dB before; with the
   final solve, the polish's rates 1.5 times the encoder's (1 before) and the snap, 23.41 /
   20.92 / 17.48 (without the snap 23.31 / 20.91 / 17.48: the snap pays where splats are
   small); with the distance-weighted fill target (`problem.BLEND_DISTANCE`) then, 23.48 /
   20.96 / 17.49. Then, with the solves on stored weights (`gscodec.render.operator`),
   10 / 12 / 14 polish steps: 23.48 / 23.50 / 23.56, 20.97 / 21.01 / 21.00, 17.49 / 17.50 /
   17.50 dB, in 0.70 / 0.72 / 0.77 s a thick fill (mean). On Kodak 12 gave +0.06 / 0.00 /
   0.00 dB over 10 (bench.inpaint), while thick fills of kodim20 and kodim21 took 0.94-0.95 s
   (median of 7, with the write and the decode): 10 stays, for time. Then the fill's weight
   `HOLE_WEIGHT` 1 / 1.5 / 2 / 3 (0.7: 20.93 medium): 23.48 / - / 23.55 / 23.59 thin, 20.97 /
   20.98 / 20.97 / 20.99 medium, 17.49 / - / 17.49 / 17.49 thick. But on Kodak 3 gave +0.07 /
   0.00 / 0.00 dB in the hole and -0.04 / -0.05 / -0.02 dB over the whole image (the redrawn
   ring around the hole worse; the far region's worst drop 0.029 / 0.028 / 0.041 dB against
   0.011 / 0.015 / 0.031): 1 stays. The pixel fill alone
   (before the blend) gave 21.24 / 17.55 dB medium / thick there: the splats lose most in
   covering it. Then, with the polish's loss fused into the render (`render_mse` with a
   weight: 0.39 -> 0.34 s of polish in a thick kodim20 fill, alternated runs) and its means'
   rate doubled (0.9), 10 / 12 / 13 / 16 steps gave 23.45 / 23.52 / 23.55 / 23.65 thin,
   21.00 / 20.99 / 21.02 / 21.04 medium, 17.50 / 17.51 / 17.51 / 17.50 thick (before: 23.48 /
   20.97 / 17.49; rate 0.675 at 12: 23.51 / 20.99 / 17.51). 12 at 0.9 it is: on Kodak 21.35 /
   20.53 / 18.37 -> 21.45 / 20.56 / 18.37 dB, the slowest thick fill 1.02 -> 0.90 s
   (bench/README.md). On the first 12 Sun-Hays images (centred 768 x 512 crops, masks seeded
   1000 + i) a step took about 8 ms for thin holes' 270-1020 new splats, 16 ms for thick
   holes' 740-2870, so the steps are now a budget of `POLISH_SPLAT_STEPS` splat-steps shared
   out, 12 to 24 (`polish_steps`). There, against 12 steps (23.17 / 20.71 / 17.86 dB, 0.45 /
   0.48 / 0.60 s a fill), budgets of 12 000 and 16 000 gave 23.33 / 20.75 / 17.86 dB in 0.50 /
   0.52 / 0.61 s and 23.37 / 20.74 / 17.87 dB in 0.53 / 0.57 / 0.64 s. 12 000 it is: on Kodak
   21.45 / 20.56 / 18.37 -> 21.52 / 20.57 / 18.38 dB, the slowest fill 0.84 s (bench/README.md).
6. The new splats form one new layer (so ``decode(..., layers=k)`` still shows the old
   stream for k up to its layer count); `gscodec.encode_splats` writes the result.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..errors import GscError
from ..format.codec import as_bytes, decode_splats
from ..format.constants import COLOR_UNIT, MAX_LAYERS
from ..format.container import parse
from ..predictor.network import candidates
from ..quant.layer import snap_geometry
from ..quant.policy import Steps
from ..quant.stream import encode_splats
from ..render.backends import render_mse
from ..render.operator import color_operator
from ..splats import Splats
from . import problem
from .masks import as_mask
from .network import ALIGN, InpaintNet, trunk_tiled

CONTEXT = 64  # pixels of known image around the region that the network reads
TILE = 1024  # windows larger than this run in tiles (`network.trunk_tiled`)
SOLVE_ITERATIONS = 2  # conjugate-gradient steps of the colour solve (the polish goes on from it)
# Adam steps on the new splats after the solve (`_polish`): as many as a budget of splat-steps
# allows (a step's time grows with the splats), within these bounds
POLISH_SPLAT_STEPS = 12_000
POLISH_STEPS = (12, 24)
# its Adam rates (means, log-scales, angles, colours): 1.5 times the encoder's refinement's
# starting rates (`encoder.optimize.LRS`, which inpainting sits beside and does not import)
POLISH_LRS = (0.9, 0.12, 0.15, 0.012)
SOLVE_PULL = 1.0  # weight of the pull towards the network's colours, per splat
REMOVE_SHARE = 0.02  # a splat touching the hole is removed when more than this share of its weight is in it
# after the polish, the new splats' geometry is snapped to the quantizer's grid of the steps
# the output will be written with (`_snap`) and their colours solved again, this many steps
FINAL_SOLVE_ITERATIONS = 3
HOLE_WEIGHT = 1.0  # weight of the smooth fill's pixels in the solve and polish (known pixels weigh 1)


def inpaint(stream: bytes | Splats, mask: object, /, *, weights: str | os.PathLike | InpaintNet | None = None,
            extractor_checkpoint: str | os.PathLike | None = None, solve_colors: bool = True,
            steps: Steps | None = None) -> Splats:
    """Fill the pixels where ``mask`` is True with new splats.

    stream: .gsc bytes or a `gscodec.Splats`. mask: an [H, W] bool array (or numbers, or a PIL
    image: white fills; see `masks.as_mask`) of the image's size. weights: a folder of
    exported weights (default: the shipped ones), or a loaded `InpaintNet`.
    extractor_checkpoint: the local DINOv2 checkpoint of a model trained with one.
    solve_colors: refit the new splats' colours to the known pixels around the hole and a
    smooth fill of the hole (`problem.smooth_fill`), then polish all their parameters towards
    the same (`polish_steps`). steps: the quantizer steps the result will be written with
    (default: a stream's own, `stream_steps`; for a `Splats`, none); the new splats' geometry
    is snapped to their grid and their colours solved again for it.

    Returns the kept splats unchanged (same order, layers and values) followed by the new
    splats in one new layer (or, when the stream already has MAX_LAYERS layers, in its last
    layer of the same patch side, else its last layer). GscError for a bad stream, a mask of
    another size, an empty mask or one covering the whole image, and when no trained weights
    are installed.
    """
    splats = stream if isinstance(stream, Splats) else decode_splats(as_bytes(stream))
    hole_np = as_mask(mask, splats.height, splats.width)
    if isinstance(weights, InpaintNet):
        model = weights
    else:
        from .model import load

        model = load(weights, extractor_checkpoint=extractor_checkpoint)
    with torch.no_grad():
        if steps is None and not isinstance(stream, Splats) and splats.patch_sizes:  # no layer: no steps
            steps = stream_steps(stream)  # type: ignore[arg-type]
        new, patch = _new_splats(model, splats, torch.from_numpy(hole_np), solve_colors, steps)
    return _combine(splats, new, patch)


def inpaint_stream(data: bytes, mask: object, /, **kwargs: object) -> bytes:
    """`inpaint` from .gsc bytes to .gsc bytes, coded with the stream's own quantizer steps, so
    the kept splats decode exactly as before (for the CLI)."""
    data = as_bytes(data)
    steps = stream_steps(data)
    return encode_splats(inpaint(data, mask, steps=steps, **kwargs), steps=steps)  # type: ignore[arg-type]


def stream_steps(data: bytes) -> Steps:
    """The quantizer steps a stream was written with (its first layer's; the encoder uses one
    set of steps for every layer), so that re-encoding its splats reproduces them."""
    _, chunks = parse(as_bytes(data))
    if not chunks:
        raise GscError("the stream has no layer to take quantizer steps from")
    p = chunks[0].params
    return Steps(pos_step=p.patch_size / (1 << p.pos_bits), scale_den=p.scale_den, angle_levels=p.angle_levels,
                 color_step=tuple(s / COLOR_UNIT for s in p.color_step))  # type: ignore[arg-type]


def _new_splats(model: InpaintNet, splats: Splats, hole: torch.Tensor, solve: bool, steps: Steps | None):
    h, w = splats.height, splats.width
    t = splats.tensors()
    background = torch.from_numpy(splats.background)
    decoded = problem.render(t.means, t.scales, t.angles, t.colors, h, w)
    removed = problem.touching(t.means, t.scales, t.angles, hole, REMOVE_SHARE)
    region = problem.support(t.means[removed], t.scales[removed], t.angles[removed], h, w) | hole
    kept = ~removed
    kept_render = problem.render(t.means[kept], t.scales[kept], t.angles[kept], t.colors[kept], h, w)

    # the global vector of the whole masked image
    known = (~hole).float()
    rgb = problem.to_rgb(decoded[None], background) * known
    cond = model.align(model.global_vector(rgb, hole[None, None].float()))

    # the window: region + context, on the 16-pixel grid, padded to whole 16-pixel blocks
    rows, cols = torch.nonzero(region.any(1))[:, 0], torch.nonzero(region.any(0))[:, 0]
    y0 = max(0, (int(rows[0]) - CONTEXT) // ALIGN * ALIGN)
    x0 = max(0, (int(cols[0]) - CONTEXT) // ALIGN * ALIGN)
    y1, x1 = min(h, int(rows[-1]) + 1 + CONTEXT), min(w, int(cols[-1]) + 1 + CONTEXT)
    wh, ww = -(-(y1 - y0) // ALIGN) * ALIGN, -(-(x1 - x0) // ALIGN) * ALIGN
    pad = (0, ww - (x1 - x0), 0, wh - (y1 - y0))
    inside = torch.nn.functional.pad(torch.ones(y1 - y0, x1 - x0), pad)
    crop = (slice(y0, y1), slice(x0, x1))
    inputs = problem.network_input(decoded[:, crop[0], crop[1]], kept_render[:, crop[0], crop[1]], hole[crop],
                                   region[crop], torch.ones(y1 - y0, x1 - x0))
    inputs = torch.nn.functional.pad(inputs, pad)
    inputs[8] = inside
    region_window = torch.nn.functional.pad(region[crop], pad)
    patch = problem.count_patch(region_window, int(removed.sum()))
    features = trunk_tiled(model, inputs[None], cond, TILE)
    raw, base = model.heads(features, inputs[None], patch)
    means, scales, angles, colors = (v[0] for v in candidates(raw, base, patch))
    take = problem.patches_in(region_window, patch).reshape(-1)
    means = means[take] + torch.tensor([x0, y0], dtype=means.dtype)
    means = torch.stack([means[:, 0].clamp(0, w - 1e-3), means[:, 1].clamp(0, h - 1e-3)], 1)
    scales, angles, colors = scales[take], angles[take], colors[take]
    if solve and len(means):
        # every known pixel of the window weighs 1: in the region the new splats must redraw what
        # the removed ones drew there; beyond it (target 0) they must not spill onto kept pixels
        target = (decoded - kept_render)[:, crop[0], crop[1]]
        weight = (~hole)[crop].float()
        if HOLE_WEIGHT:
            filled = problem.smooth_fill(decoded[:, crop[0], crop[1]], (~hole)[crop])
            target = torch.where(hole[crop], filled - kept_render[:, crop[0], crop[1]], target)
            weight = weight + HOLE_WEIGHT * hole[crop].float()
        budget = max(int(removed.sum()), 1)
        if len(means) > budget:  # no more splats than were removed: keep those worth most
            worth = _energies(means, scales, angles, colors, weight * region[crop], (y0, x0))
            keep = torch.topk(worth, budget).indices.sort().values
            means, scales, angles, colors = means[keep], scales[keep], angles[keep], colors[keep]
        colors = _solve_colors(means, scales, angles, colors, target, weight, (y0, x0))
        means, scales, angles, colors = _polish(means, scales, angles, colors, target, weight, (y0, x0), (h, w))
        if steps is not None and len(splats.patch_sizes) < MAX_LAYERS:  # a layer of their own (`_combine`)
            means, scales, angles, keep = _snap(means, scales, angles, patch, steps, w, h)
            colors = colors[keep]
        colors = _solve_colors(means, scales, angles, colors, target, weight, (y0, x0), FINAL_SOLVE_ITERATIONS)
    return (means, scales, angles, colors, removed.numpy()), patch


def _solve_colors(means, scales, angles, colors, target, weight, origin, iterations: int | None = None,
                  pull: float | None = None) -> torch.Tensor:
    """Colours c minimising sum(weight * |render(c) - target|^2) + pull * |c - colors|^2 over the
    window ``target`` [3, h, w] at ``origin`` (conjugate gradients on the colour operator)."""
    h, w = target.shape[1:]
    iterations = SOLVE_ITERATIONS if iterations is None else iterations
    pull = SOLVE_PULL if pull is None else pull
    op = color_operator(means, scales, angles, h, w, origin=origin)

    def normal(c: torch.Tensor) -> torch.Tensor:
        return op.normal(c, weight) + pull * c

    b = op.adjoint((weight * target).permute(1, 2, 0)) + pull * colors
    x = colors.clone()
    r = b - normal(x)
    p = r.clone()
    rr = (r * r).sum()
    for _ in range(iterations):
        ap = normal(p)
        alpha = rr / (p * ap).sum().clamp(min=1e-20)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum()
        if rr_new < 1e-12:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def polish_steps(n_splats: int) -> int:
    """The polish's steps for this many new splats: `POLISH_SPLAT_STEPS` shared out, within `POLISH_STEPS`."""
    return min(max(POLISH_SPLAT_STEPS // max(n_splats, 1), POLISH_STEPS[0]), POLISH_STEPS[1])


def _polish(means, scales, angles, colors, target, weight, origin, size, steps: int | None = None):
    """`POLISH_STEPS` Adam steps on all the new splats' parameters (at `POLISH_LRS`, within the
    refinement's bounds on scales and centres) against the weighted squared error over the
    window (YCbCr, as the solve: by RGB error, 0.02-0.03 dB less in the hole on training
    images, and more spill): the solve fits colours only, at the network's places and shapes."""
    steps = polish_steps(len(means)) if steps is None else steps
    if not steps:
        return means, scales, angles, colors
    height, width = size
    params = [means.clone(), scales.log(), angles.clone(), colors.clone()]
    target = target.permute(1, 2, 0).contiguous()
    identity = torch.eye(3)
    # sum(weight * |render - target|^2) / sum(weight): `render_mse` is the mean over 3 h w elements
    scale = target.numel() / weight.sum().clamp(min=1)
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(params, POLISH_LRS, strict=True)])
        for _ in range(steps):
            loss = render_mse(params[0], params[1].exp(), params[2], params[3], target, identity, weight=weight,
                              origin=origin)
            opt.zero_grad()
            (scale * loss).backward()
            opt.step()
            with torch.no_grad():
                params[1].clamp_(math.log(0.3), math.log(0.5 * max(height, width)))
                params[0][:, 0].clamp_(0, width - 1e-3)
                params[0][:, 1].clamp_(0, height - 1e-3)
    means, log_scales, angles, colors = (p.detach() for p in params)
    return means, log_scales.exp(), angles, colors


def _snap(means, scales, angles, patch: int, steps: Steps, width: int, height: int):
    """The new splats' geometry on the quantizer's grid of ``steps`` as one layer of side
    ``patch`` (what `encode_splats` will write), and the indices of those it keeps."""
    new = Splats(width, height, means.numpy(), scales.numpy(), angles.numpy(), np.zeros((len(means), 3), np.float32),
                 patch_sizes=(patch,))
    snapped, keep = snap_geometry(new, steps)
    return (*(torch.from_numpy(getattr(snapped, k)) for k in ("means", "scales", "angles")), torch.from_numpy(keep))


def _energies(means, scales, angles, colors, weight, origin) -> torch.Tensor:
    """Per splat, what removing it alone would add to the weighted squared error of a
    least-squares fit with colours ``colors``: |c|^2 sum(weight w^2), w its weights (the cross
    term with the residual vanishes at the optimum; the network's colours are near it)."""
    h, w = weight.shape
    return colors.square().sum(1) * color_operator(means, scales, angles, h, w, origin=origin).squared_sums(weight)


def _combine(splats: Splats, new, patch: int) -> Splats:
    means, scales, angles, colors, removed = new
    keep = ~removed
    sizes = splats.patch_sizes
    if len(sizes) < MAX_LAYERS:
        layer, sizes = len(sizes), (*sizes, patch)
    else:  # no room for a layer: join the last layer of this patch side, else the last one
        same = [i for i, p in enumerate(sizes) if p == patch]
        layer = same[-1] if same else len(sizes) - 1
    n = len(means)
    return Splats(
        splats.width, splats.height,
        np.concatenate([splats.means[keep], means.numpy()]),
        np.concatenate([splats.scales[keep], scales.numpy()]),
        np.concatenate([splats.angles[keep], angles.numpy()]),
        np.concatenate([splats.colors[keep], colors.numpy()]),
        splats.background,
        np.concatenate([splats.layer[keep], np.full(n, layer, np.int64)]),
        sizes,
    )

