"""The encoder end to end: image -> splats (initializer, refinement, pruning,
quantization-aware finish) -> .gsc bytes. The search for a target rate or PSNR is
`gscodec.encoder.rate`'s."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..format.color import RGB_TO_YCBCR
from ..format.constants import BACKGROUND_UNIT, COLOR_UNIT
from ..quant.layer import (
    canonical_shape,
    code_lengths,
    color_steps,
    position_bits,
    quantize_background,
    snap_geometry,
)
from ..quant.policy import Steps, adapt, steps_for_quality
from ..quant.stream import encode_splats
from ..splats import Splats, SplatTensors
from .initializers import INITIALIZERS, Start
from .optimize import Encoder
from .plan import DEFAULT_INIT, Plan, plan_for

Progress = Callable[[float], None]  # receives the fraction done, 0..1


@dataclass
class Refined:
    """An image's splats after refinement, before pruning and the quantization-aware finish:
    what `finish` needs, so that rate control can finish the same refinement more than once."""

    encoder: Encoder
    plan: Plan
    start: Start
    splats: SplatTensors
    background: np.ndarray
    quality: float
    _pruned: dict[float, tuple[SplatTensors, torch.Tensor]] = field(default_factory=dict, repr=False)
    _costs: tuple[torch.Tensor, float] | None = field(default=None, repr=False)

    def pruned(self, strength: float | None = None) -> tuple[SplatTensors, torch.Tensor]:
        """The splats after rate-distortion pruning (`prune`) at ``strength`` (default: the
        plan's) and their layers: the same whatever steps finish them, so computed once (and
        the removal costs once for every strength)."""
        strength = self.plan.prune if strength is None else strength
        if strength not in self._pruned:
            costs = self.removal_costs() if strength > 0 and len(self.splats.means) else None
            self._pruned[strength] = prune(self.encoder, self.splats, self.start.layer, strength, costs)
        return self._pruned[strength]

    def removal_costs(self) -> tuple[torch.Tensor, float]:
        """`Encoder.removal_costs` of the refined splats (computed once)."""
        if self._costs is None:
            self._costs = self.encoder.removal_costs(self.splats)
        return self._costs


def refine_image(
    rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
    device: torch.device | str = "cpu", init: str = DEFAULT_INIT, plan: Plan | None = None,
) -> Refined:
    """The initializer's splats for an [H, W, 3] float32 RGB image in [0, 1], refined at
    ``effort`` (or as ``plan`` says, instead of `plan_for`'s plan). ``progress`` goes to 1 when
    refinement ends."""
    h, w = rgb.shape[:2]
    rgb_t = torch.from_numpy(rgb)
    ycc = rgb_t @ torch.from_numpy(RGB_TO_YCBCR).to(rgb_t).T
    background = np.asarray(quantize_background(ycc.reshape(-1, 3).mean(0).numpy()), np.float32)
    background /= BACKGROUND_UNIT
    plan = plan or plan_for(quality, effort, h, w)
    enc = Encoder((ycc - torch.from_numpy(background)).to(device), seed=seed)
    report = progress or (lambda _: None)
    start = INITIALIZERS[init](enc, plan, quality)  # counts as 5 steps
    report(5 / (5 + plan.iterations))
    s = enc.refine(start.splats, plan.iterations, lambda f: report((5 + f * plan.iterations) / (5 + plan.iterations)),
                   plan.relocations, plan.lr_scale)
    report(1.0)
    return Refined(enc, plan, start, s, background, quality)


def finish(refined: Refined, steps: Steps | None = None, progress: Progress | None = None,
           prune_strength: float | None = None) -> tuple[Splats, Steps]:
    """Pruning at the plan's strength (or ``prune_strength``), then the quantization-aware finish
    on the grid of ``steps`` (default: the initializer's, else the policy's for the quality):
    the centres moved onto the quantizer's grid (`choose_centres`), the other attributes
    polished to make up for it (see `gscodec.encoder.plan.POLISH_FRACTION` for why one polish),
    then scales and angles moved onto theirs (`choose_shapes`), the colours solved for that
    geometry; then the plan's rounds of moves on the grid (`Plan.grid_rounds`: each centre a
    cell, each shape a step, by the same choice, the colours solved again); and the colours
    moved onto their grid (`quantize_colors`), first dropping the chroma of the layers where it
    costs more bits than it returns (`Plan.chroma_by_rate`). Returns the splats and the
    quantizer steps that `gscodec.quant.stream.encode_splats` codes them with; ``refined`` is
    left as it was, so it can be finished again."""
    enc, plan, start = refined.encoder, refined.plan, refined.start
    h, w = enc.h, enc.w
    report = progress or (lambda _: None)
    steps = steps or default_steps(refined)
    s, layer = refined.pruned(prune_strength)
    weight = finish_weight(plan)
    if plan.centres_by_rate:
        s = choose_centres(enc, s, layer, start.patch_sizes, steps)
    s, layer = snap(s, layer, start.patch_sizes, steps, w, h, ("means",))
    s = enc.polish(s, plan.polish_steps, ("scales", "angles", "colors"))
    report((2 + plan.polish_steps) / weight)
    if plan.shapes_by_rate:
        s = choose_shapes(enc, s, layer, steps)
    s, layer = snap(s, layer, start.patch_sizes, steps, w, h, ("means", "scales", "angles"))
    s = SplatTensors(s.means, s.scales, s.angles, enc.solve_colors(s, plan.color_iterations, s.colors))
    for _ in range(plan.grid_rounds):
        s = choose_centres(enc, s, layer, start.patch_sizes, steps, on_grid=True)
        s = choose_shapes(enc, s, layer, steps, on_grid=True)
        s, layer = snap(s, layer, start.patch_sizes, steps, w, h, ("means", "scales", "angles"))
        s = SplatTensors(s.means, s.scales, s.angles, enc.solve_colors(s, GRID_ROUND_SOLVE, s.colors))
    drop_order = chroma_drop_order(layer, start.patch_sizes) if plan.chroma_by_rate else ()
    colors = (quantize_colors(enc, s, layer, steps, plan.color_rounds, drop_order) if plan.color_rounds
              else s.colors).cpu().numpy()
    report(1.0)
    means, scales, angles = (t.cpu().numpy() for t in (s.means, s.scales, s.angles))
    return Splats(w, h, means, scales, angles, colors, refined.background, layer=layer.cpu().numpy(),
                  patch_sizes=start.patch_sizes), steps


def choose_centres(enc: Encoder, s: SplatTensors, layer: torch.Tensor, patch_sizes: tuple[int, ...], steps: Steps,
                   on_grid: bool = False) -> SplatTensors:
    """``s`` with each centre on the quantizer's position grid for ``steps``: of the cell holding
    it (where the quantizer puts it) and its nearer neighbours across and down, the cell whose
    squared error and offset bits cost least (`_cheapest`). ``on_grid``: the centres are on the
    grid already, and each stays or moves one cell along either axis."""
    n = len(s.means)
    if not n:
        return s
    layer_np = layer.cpu().numpy()
    side = np.array([1 << position_bits(p, steps) for p in patch_sizes])[layer_np][:, None]  # cells a patch side
    step = np.asarray(patch_sizes)[layer_np][:, None] / side
    cells = s.means.cpu().double().numpy() / step
    held = np.floor(cells)
    if on_grid:
        moves = [np.array(m, np.float64) for m in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]
    else:
        toward = np.where(cells - held >= 0.5, 1.0, -1.0)  # the nearer neighbour, per axis
        moves = [toward * np.array([k & 1, k >> 1 & 1]) for k in range(4)]
    last = np.ceil(np.array([enc.w, enc.h]) / step) - 1  # the image's last cells (the quantizer clamps too)
    offsets = {index: [_order0(held[layer_np == index, i] % side[layer_np == index, 0]) for i in (0, 1)]
               for index in np.unique(layer_np)}
    candidates, bits = [], np.zeros((n, len(moves)))
    for k, move in enumerate(moves):
        cell = np.clip(held + move, 0, last)
        for index, models in offsets.items():
            mine = layer_np == index
            bits[mine, k] = sum(model(cell[mine, i] % side[mine, 0]) for i, model in enumerate(models))
        if on_grid and not move.any():  # the splats' own centres (`replacement_costs` skips them)
            candidates.append((s.means, s.scales, s.angles))
        else:
            candidates.append((torch.from_numpy((cell + 0.5) * step).to(s.means), s.scales, s.angles))
    best = _cheapest(enc, s, candidates, bits)
    chosen = torch.stack([m for m, _, _ in candidates], 1)[torch.arange(n, device=best.device), best]
    return SplatTensors(chosen, s.scales, s.angles, s.colors)


def choose_shapes(enc: Encoder, s: SplatTensors, layer: torch.Tensor, steps: Steps, on_grid: bool = False
                  ) -> SplatTensors:
    """``s`` with scales and angles on the quantizer's grid for ``steps``, each splat's chosen
    by rate and distortion rather than rounded: of the eight ways to round its major and minor
    log-scales and its angle down or up, the one whose squared error and bits cost least
    (`_cheapest`), the bits those of the streams the format codes them in (major, gap, angle).
    ``on_grid``: the shapes are on the grid already, and each stays or moves one step in one of
    the three."""
    n = len(s.means)
    if not n:
        return s
    den, levels = steps.scale_den, steps.angle_levels
    scales, angles = canonical_shape(s.scales.cpu().numpy(), s.angles.cpu().numpy())
    values = np.stack([np.log2(scales[:, 0]) * den, np.log2(scales[:, 1]) * den, angles / math.pi * levels], 1)
    rounded = np.rint(values)  # [N, 3] major and minor log-scale and angle, in steps
    if on_grid:
        base, moves = rounded, [np.array(m, np.float64) for m in ((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0),
                                                                  (0, -1, 0), (0, 0, 1), (0, 0, -1))]
    else:
        base, moves = np.floor(values), [np.array([k & 1, k >> 1 & 1, k >> 2 & 1], np.float64) for k in range(8)]
    layer_np = layer.cpu().numpy()
    rounded_gap = rounded[:, 0] - np.minimum(rounded[:, 1], rounded[:, 0])
    rounded_angle = np.mod(rounded[:, 2], levels)
    models = {}
    for index in np.unique(layer_np):
        mine = layer_np == index
        angled = mine & (rounded_gap > 0)
        models[index] = _order0(rounded[mine, 0]), _order0(rounded_gap[mine]), _order0(rounded_angle[angled])
    bits = np.zeros((n, len(moves)))
    shapes = []
    for k, move in enumerate(moves):
        m, minor, a = (base + move).T
        gap = m - np.minimum(minor, m)
        a = np.mod(a, levels)
        for index, (major_bits, gap_bits, angle_bits) in models.items():
            mine = layer_np == index
            bits[mine, k] = (major_bits(m[mine]) + gap_bits(gap[mine])
                             + np.where(gap[mine] > 0, angle_bits(a[mine]), 0.0))  # round splats code no angle
        if on_grid and not move.any():  # the splats' own shapes (`replacement_costs` skips them)
            shapes.append((s.means, s.scales, s.angles))
        else:
            shape = np.stack([2.0 ** (m / den), 2.0 ** ((m - gap) / den)], 1), a * (math.pi / levels)
            shapes.append((s.means, *(torch.from_numpy(v).to(s.scales) for v in shape)))
    best = _cheapest(enc, s, shapes, bits)
    rows = torch.arange(n, device=best.device)
    return SplatTensors(s.means, torch.stack([sc for _, sc, _ in shapes], 1)[rows, best],
                        torch.stack([an for _, _, an in shapes], 1)[rows, best], s.colors)


def _cheapest(enc: Encoder, s: SplatTensors, candidates: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
              bits: np.ndarray) -> torch.Tensor:
    """Per splat, the index of the candidate geometry (``bits`` [N, K] its bits) that costs least:
    the squared error it adds (`Encoder.replacement_costs`) plus its bits, a bit counting
    `GEOMETRY_PRICE` x `SQUARED_ERROR_PER_BIT` x D / B (D the squared error, the stream's B bits
    counted as `BITS_PER_SPLAT` a splat)."""
    costs, squared_error = enc.replacement_costs(s, candidates)
    price = GEOMETRY_PRICE * SQUARED_ERROR_PER_BIT / BITS_PER_SPLAT * squared_error / len(s.means)
    return (costs + price * torch.from_numpy(bits).to(costs)).argmin(1)


def _order0(rounded: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The bits of integer values under `code_lengths`' order-0 model of the ``rounded`` indices."""
    first, bits = code_lengths(rounded.astype(np.int64))
    return lambda values: bits[np.clip(values.astype(np.int64) - first, 0, len(bits) - 1)]


def chroma_drop_order(layer: torch.Tensor, patch_sizes: tuple[int, ...]) -> list[int]:
    """The layers in the order `quantize_colors` tries dropping their chroma: the finest first."""
    return sorted(torch.unique(layer).tolist(), key=lambda i: (patch_sizes[i], -i))


def quantize_colors(enc: Encoder, s: SplatTensors, layer: torch.Tensor, steps: Steps, rounds: int,
                    drop_order: Sequence[int] = ()) -> torch.Tensor:
    """`Encoder.quantize_colors` on the format's colour grid for ``steps``, with the format's
    rate: in each layer and channel an index costs what an order-0 model of the rounded
    indices gives it (`code_lengths`), and a bit `SQUARED_ERROR_PER_BIT` x D / B of squared
    error, the stream's B bits counted as `BITS_PER_SPLAT` a splat.

    The layers in ``drop_order`` (`chroma_drop_order`) may first drop their chroma, each costing
    what its Cb and Cr indices take under those models: a layer whose Cb and Cr indices are all 0
    has one level each, which the format codes in no bits. This is the encoder's analogue of
    the chroma subsampling of JPEG and WebP. On Sun-Hays crops (768 x 512, qualities 20 / 50 /
    80), BD-rate against no drops: effort 1 -1.17 % and -1.13 % (6 crops, seed 131; 8, seed
    136), effort 0 -2.29 % (6, seed 137), effort 4 -2.30 % (4, seed 138); on Kodak -1.2 % at
    the default and at effort 4 (bench/README.md, "Layers drop their chroma")."""
    step = torch.tensor(color_steps(steps), dtype=s.colors.dtype, device=s.colors.device) / COLOR_UNIT
    rounded = torch.round(s.colors / step).long().cpu()
    layer = layer.cpu()
    tables, chroma_bits = {}, {}  # chroma_bits: what each layer's Cb and Cr indices take
    for index in torch.unique(layer).tolist():
        mine = rounded[layer == index].numpy()
        chroma_bits[index] = 0.0
        for c in range(3):
            first, bits = code_lengths(mine[:, c])
            tables[index, c] = first, torch.from_numpy(bits).to(s.colors)
            if c:
                chroma_bits[index] += float(bits[mine[:, c] - first].sum())

    def index_bits(rows: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(indices.shape[:2], dtype=s.colors.dtype, device=s.colors.device)
        of = layer[rows.cpu()].to(rows.device)
        for (index, c), (first, bits) in tables.items():
            mine = of == index
            values = (indices[mine, :, c].long() - first).clamp(0, len(bits) - 1)
            out[mine] += bits[values]
        return out

    groups = [((layer == index).to(s.colors.device), chroma_bits[index]) for index in drop_order]
    return enc.quantize_colors(s, step, index_bits, SQUARED_ERROR_PER_BIT / BITS_PER_SPLAT, rounds, groups)


def finish_weight(plan: Plan) -> int:
    """`finish`'s work in refinement steps, for progress: its polishing, and pruning and the
    final solve as 5."""
    return plan.polish_steps + 5


def default_steps(refined: Refined) -> Steps:
    """The quantizer steps `finish` uses unless told: the initializer's, else the policy's,
    scaled by the plan's factors."""
    return adapt(refined.start.steps or steps_for_quality(refined.quality), refined.plan.step_factors)


def fit_image(
    rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
    device: torch.device | str = "cpu", init: str = DEFAULT_INIT, plan: Plan | None = None,
) -> tuple[Splats, Steps]:
    """Splats for an [H, W, 3] float32 RGB image in [0, 1], geometry already on the grid of the
    quantizer steps returned with them and colours solved for it (`gscodec.quant.stream.encode_splats`
    then codes them with those steps): `refine_image`, then `finish`.
    ``device``: where the fitting runs (a CUDA device needs `gscodec.has_cuda`); ``init``:
    the initializer (`gscodec.encoder.initializers`); ``plan``: instead of `plan_for`'s."""
    report = progress or (lambda _: None)
    plan = plan or plan_for(quality, effort, *rgb.shape[:2])
    # progress in steps: refinement (with the initial placement as 5), then the finish
    first = 5 + plan.iterations
    total = first + finish_weight(plan)
    refined = refine_image(rgb, quality, effort, lambda f: report(f * first / total), seed, device, init, plan)
    return finish(refined, progress=lambda f: report((first + f * (total - first)) / total))


# What a bit of the stream is worth in squared error: RD curves here gain about 2.5 dB per
# doubling of the rate (2.1-2.6 on training crops, 2.2-3.0 on Kodak's), so one bit more of B
# buys 2.5 ln10 / (10 ln2) D / B = 0.83 D / B, D the squared error.
SQUARED_ERROR_PER_BIT = 0.83
# What a splat takes in the stream, for `quantize_colors`' price of a bit: 30.5 / 34.9 / 34.6
# bits on 4 training crops (768 x 512, effort 1) at qualities 20 / 50 / 80. The price barely
# matters: 0.6x and 1.8x of it gave the same BD-rate within 0.1 % (4 crops, seed 81)
BITS_PER_SPLAT = 34.0
# `choose_centres` and `choose_shapes` count a bit this many times the pruning's and the
# colours' price: their costs re-solve only the splat's own colour, where the finish then polishes
# and solves all of them together, so they overstate what a choice's error will cost. On Sun-Hays
# crops (768 x 512, effort 1, qualities 20 / 50 / 80), BD-rate against rounding: shapes (4 crops,
# seed 93) at 0 (distortion alone) -0.59 %, 1 -1.78 %, 2 -2.20 %, 3 -2.29 %, 4 -2.37 %, 6
# -2.30 % (without re-solving the splat's colour in the costs: 0 +0.38 %, 1 -0.69 %); centres,
# after the shapes (4 crops, seed 96), at 0 -1.40 %, 3 -1.70 %, 6 -1.82 %.
GEOMETRY_PRICE = 4.0
# conjugate-gradient steps of the colour solve after each of `Plan.grid_rounds`
GRID_ROUND_SOLVE = 5


def prune(enc: Encoder, s: SplatTensors, layer: torch.Tensor, strength: float,
          costs: tuple[torch.Tensor, float] | None = None) -> tuple[SplatTensors, torch.Tensor]:
    """Rate-distortion pruning: drop the splats that return less than they cost. Counting every
    splat as the stream's mean bits, a splat is kept if removing it alone would add at least
    ``strength`` x `SQUARED_ERROR_PER_BIT` x D / N of squared error (D the squared error, N
    the splats), and at least one splat; the colours of the rest are then re-solved (5 steps).
    ``strength`` 0 keeps all. ``costs``: `Encoder.removal_costs` of ``s``, if already known."""
    if strength <= 0 or not len(s.means):
        return s, layer
    costs, total = costs or enc.removal_costs(s)
    keep = costs >= prune_threshold(strength, total, len(costs))
    keep[torch.argmax(costs)] = True  # never prune every splat: the most useful one stays
    kept = SplatTensors(s.means[keep], s.scales[keep], s.angles[keep], s.colors[keep])
    colors = enc.solve_colors(kept, 5, kept.colors)
    return SplatTensors(kept.means, kept.scales, kept.angles, colors), layer[keep.to(layer.device)]


def prune_threshold(strength: float, total: float, n: int) -> float:
    """The removal cost below which `prune` drops a splat: ``strength`` x
    `SQUARED_ERROR_PER_BIT` x the squared error ``total`` shared among the ``n`` splats."""
    return strength * SQUARED_ERROR_PER_BIT * total / n


def snap(s: SplatTensors, layer: torch.Tensor, patch_sizes: tuple[int, ...], steps: Steps, width: int, height: int,
         attributes: tuple[str, ...]) -> tuple[SplatTensors, torch.Tensor]:
    """`gscodec.quant.layer.snap_geometry` on tensors: ``s`` with the named geometry
    attributes on the quantizer's grid, the colours kept; splats the quantizer drops are
    dropped, with their layer entries."""
    floating = Splats.from_tensors(s, width=width, height=height, layer=layer.cpu().numpy(), patch_sizes=patch_sizes)
    snapped, keep = snap_geometry(floating, steps, attributes)
    device = s.means.device
    kept = torch.from_numpy(keep).to(device)
    tensors = SplatTensors(*(torch.from_numpy(getattr(snapped, k)).to(device) for k in ("means", "scales", "angles")),
                           s.colors[kept])
    return tensors, layer[kept.to(layer.device)]


def encode_image(rgb: np.ndarray, quality: float, effort: int, progress: Progress | None = None, seed: int = 0,
                 device: str = "cpu", init: str = DEFAULT_INIT, plan: Plan | None = None) -> bytes:
    """.gsc bytes of an [H, W, 3] float32 RGB image in [0, 1] (options checked by the caller;
    ``plan``: instead of `plan_for`'s)."""
    splats, steps = fit_image(rgb, quality, effort, progress, seed, device, init, plan)
    return encode_splats(splats, steps=steps)
