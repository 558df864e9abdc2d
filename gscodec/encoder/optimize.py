"""Fitting splats to one image by optimisation: placement, exact colours, refinement.

- Placement samples splats where a weight map is large (image detail at the start, the
  error during refinement), each sized to the local splat density.
- Colours are solved exactly for fixed geometry (rendering is linear in the colours: a
  sparse least-squares problem, solved by conjugate gradients).
- Refinement runs Adam on every parameter through the renderer; at intervals it moves
  the splats whose removal costs least to where the error is largest and solves their colours.

Every step goes through the renderer's autograd ops (`render_splats`, and `render_mse` for
the loss), so the same code runs on any device: the numba kernels on the CPU, the CUDA
kernels on a GPU; the colour solves go through `gscodec.render.operator` (on the CPU the
splats' weights stored once per solve, elsewhere the op's backward as the adjoint). Random
placement always samples on the CPU with a CPU generator, so a seed gives the same placement
on every device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..format.color import YCBCR_TO_RGB
from ..render.backends import render_mse, render_splats
from ..render.operator import ColorOperator, color_operator
from ..splats import SplatTensors
from .plan import COLOR_ROUNDS, RELOCATIONS

log = logging.getLogger(__name__)

Progress = Callable[[float], None]  # receives the fraction done, 0..1
# the bits of candidate colour indices: (splat rows [k], indices [k, m, 3]) -> bits [k, m]
IndexBits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Tuned on training crops (sun_hays80, 768x512) at quality 50, 150 steps: initial size
# 0.3 / sqrt(local density), 90 % of the placement following image detail, and these
# Adam rates (means, log-scales, angles, colours) gave 26.8 dB against 23.4 dB for
# 0.75 / 50 % / (0.2, 0.02, 0.03, 0.002): smaller starting splats fit faster and cheaper.
KAPPA = 0.3
MIX = 0.9
LRS = (0.3, 0.08, 0.1, 0.008)
# Each relocation moves this share of the splats, those whose removal costs least
# (`Encoder.relocate`). On five seeded sets of 6-8 Sun-Hays crops of Kodak's size (768 x 512)
# at effort 1, qualities 20-80 or 10-95, BD-rate against moving 5 % by energy |c|^2 s1 s2 (as
# before): by removal cost 5 % -1.0 / -0.5 %, 8 % -1.2 %, 12 % -2.0 / -2.1 %, 16 % -2.6 /
# -3.6 %, 24 % -3.8 / -4.4 / -4.6 %, 32 % -5.3 %, 40 % -5.9 %; by energy 8 % -0.6 %, 24 %
# -2.7 %. At effort 4 (4 crops) by removal cost 5 % -1.1 %, 10 % -2.5 %, 24 % -3.7 %. An encode
# takes 3-7 % longer. The more move, the more the pruning drops later and the lower each
# quality's rate: at 24 %, 10-12 % less at qualities 80-95, and the default's quality 100
# still gives 1.62 bpp on Kodak, above the 1.5 bpp its benchmark must reach. 32 % and 40 % lower
# the rates further; with the splat budget's top raised to keep quality 100's rate, 40 %
# gains nothing (bench/README.md, "Relocation by removal cost" and "Colours onto the grid").
RELOCATE_FRACTION = 0.24
# Measured on 6 training crops (512 x 384, effort 4, qualities 50 / 80, 30 polish steps per
# snap): polishing at 0.3 of the starting rates gave +0.03 / +0.10 dB over 0.1 (where
# refinement ends).
POLISH_LR = 0.3
# conjugate-gradient steps of the colour solve for the relocated splats: Adam carries on from
# it, so a rough solve does; 5 instead of 15 (with 10 final steps instead of 30) changed PSNR
# by -0.05 to +0.02 dB at efforts 1 and 4 and took 25-40 % less time (same crops, when every
# relocation re-solved all the colours). Solving only the relocated splats' colours, against
# what the others leave: see `Encoder.relocate`'s measurement in bench/README.md
RELOCATION_SOLVE = 5
# conjugate-gradient steps after each share of `Encoder.quantize_colors`: the colours still
# free need only follow what the share changed. On 6 training crops (seed 84, effort 1), BD-rate
# against rounding: 4 shares with 2 / 3 steps -2.58 / -2.57 %, 2 shares with 3 / 5 steps -2.28 /
# -2.29 %, 3 shares with 4 steps -2.48 %
COLOR_ROUND_SOLVE = 2
# conjugate-gradient steps after a group's chroma is dropped (`Encoder.quantize_colors`), for the
# chroma left to make up for it. On 6 Sun-Hays crops (768 x 512, seed 131, effort 1), BD-rate of
# the layers' chroma dropped by rate against none dropped: 0 steps -0.93 %, 2 -1.19 %, 5 -1.24 %
# (what the drops cost in time: `gscodec.encoder.plan.CHROMA_BY_RATE_EFFORT0`)
CHROMA_DROP_SOLVE = 2


MULTINOMIAL_MAX = 1 << 24  # torch.multinomial's largest number of categories


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an [H, W] map (reflect-free: zero padding, renormalised).
    Shifted adds, not conv2d: a one-channel conv2d took 35 ms on a Kodak-sized map, this 2 ms."""
    r = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = (k / k.sum()).tolist()

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        padded = F.pad(t, (r, r) if dim == 1 else (0, 0, r, r))
        out = padded.narrow(dim, 0, n) * k[0]
        for i in range(1, 2 * r + 1):
            out.add_(padded.narrow(dim, i, n), alpha=k[i])
        return out

    h, w = x.shape
    # the blur of ones (the renormalisation) is the outer product of its two 1-D passes
    ones = x.new_ones(h, 1), x.new_ones(1, w)
    return along(along(x, 1), 0) / (along(ones[0], 0) * along(ones[1], 1))


def _sample_positions(weight: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n points [n, 2] (x, y) sampled without replacement from pixels, jittered inside them
    (``weight`` and ``gen`` on the CPU)."""
    h, w = weight.shape
    flat = weight.flatten().clamp(min=0) + 1e-12
    n = min(n, flat.numel())
    if flat.numel() <= MULTINOMIAL_MAX:
        pick = torch.multinomial(flat, n, replacement=False, generator=gen)
    else:  # the same distribution (Gumbel top-k), for images beyond torch.multinomial's 2^24 categories
        gumbel = -torch.log(-torch.log(torch.rand(flat.numel(), generator=gen).clamp_(1e-20, 1.0 - 1e-7)))
        pick = torch.topk(torch.log(flat) + gumbel, n, sorted=False).indices
    jitter = torch.rand(n, 2, generator=gen)
    return torch.stack([pick % w, pick // w], 1).to(torch.float32) + jitter


def importance(target: torch.Tensor) -> torch.Tensor:
    """Where splats are needed: local gradient energy of the image, [H, W]."""
    y = target @ torch.from_numpy(YCBCR_TO_RGB).to(target).T  # gradients in RGB, the metric we are judged in
    gx = torch.zeros(y.shape[:2], dtype=y.dtype, device=y.device)
    gy = torch.zeros_like(gx)
    gx[:, 1:] = (y[:, 1:] - y[:, :-1]).abs().sum(-1)
    gy[1:] = (y[1:] - y[:-1]).abs().sum(-1)
    return blur(gx + gy, 1.5)


class Encoder:
    """Fits splats to one image (YCbCr float tensor [H, W, 3], background removed), on the
    target's device; ``backend`` is `render_splats`'s (default: the fast one for the device).
    Where the splats start is an initializer's job (`gscodec.encoder.initializers`)."""

    def __init__(self, target: torch.Tensor, seed: int = 0, backend: str = "auto") -> None:
        self.target = target
        self.device = target.device
        self.backend = backend
        self.h, self.w = target.shape[:2]
        self.gen = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
        self.rgb = torch.from_numpy(YCBCR_TO_RGB).to(target).T.contiguous()  # YCbCr row vectors @ rgb -> RGB

    # ---- placement ----------------------------------------------------------------
    def place(self, weight: torch.Tensor, n: int, total: int) -> SplatTensors:
        """n new splats sampled from ``weight``, sized for ``total`` splats in the image."""
        # most splats follow the weight, the rest are spread evenly: no region is left bare
        weight = weight.cpu()
        weight = MIX * weight / weight.sum().clamp(min=1e-12) + (1 - MIX) / weight.numel()
        means = _sample_positions(weight, n, self.gen)
        cx = means[:, 0].long().clamp(0, self.w - 1)
        cy = means[:, 1].long().clamp(0, self.h - 1)
        density = total * weight[cy, cx]  # expected splats per pixel around each point
        sigma = (KAPPA / torch.sqrt(density.clamp(min=1e-9))).clamp(0.5, 0.25 * max(self.h, self.w))
        n = len(means)
        return SplatTensors(*(t.to(self.device) for t in (
            means, torch.stack([sigma, sigma], 1), torch.zeros(n), torch.zeros(n, 3))))

    # ---- exact colours ----------------------------------------------------------------
    def solve_colors(self, s: SplatTensors, iterations: int = 40, init: torch.Tensor | None = None,
                     target: torch.Tensor | None = None) -> torch.Tensor:
        """Least-squares colours for fixed geometry: conjugate gradients on W^T W c = W^T t, t the
        image (or ``target``, [H, W, 3])."""
        op = color_operator(s.means, s.scales, s.angles, self.h, self.w, backend=self.backend)
        x = torch.zeros(len(s.means), 3, device=self.device) if init is None else init.detach().clone()
        return _conjugate_gradients(op, op.adjoint(self.target if target is None else target), x, iterations)

    def quantize_colors(self, s: SplatTensors, step: torch.Tensor, bits: IndexBits, bit_cost: float,
                        rounds: int = COLOR_ROUNDS, chroma_groups: Sequence[tuple[torch.Tensor, float]] = ()
                        ) -> torch.Tensor:
        """``s``'s colours (least-squares ones, say) moved onto the quantizer's grid, integer
        multiples of ``step`` ([3], per channel), a bit counting as ``bit_cost`` x D / N of
        squared error (D the squared RGB error of ``s``, N the splats).

        First, whole groups of splats may code no chroma: ``chroma_groups`` are pairs of an [N]
        bool mask and the bits its chroma takes, tried in the order given. A group's chroma (Cb,
        Cr) is set to 0 for good if the squared RGB error that adds, once the chroma still free
        is solved again for it (`CHROMA_DROP_SOLVE` CG steps), costs less than its bits; the
        first group that costs more ends the tries.

        Then the rest go onto the grid in ``rounds`` shares, the splats of largest squared
        weights first. In each share every channel goes down or up to a grid value, whichever of
        the eight choices costs least: the squared RGB error it adds (the splat's squared weights
        times the change) plus the bits ``bits`` gives its indices. Then the colours not yet on
        the grid are solved again (`COLOR_ROUND_SOLVE` CG steps) to make up for what the share
        lost. Returns the colours, on the grid."""
        op = color_operator(s.means, s.scales, s.angles, self.h, self.w, backend=self.backend)
        weights = op.squared_sums()
        colors = s.colors.detach().clone()
        free = torch.ones(len(colors), 3, dtype=torch.bool, device=self.device)  # may still move
        if not len(colors):
            return colors
        # for the solves after a drop and between shares
        b = op.adjoint(self.target) if rounds > 1 or chroma_groups else None

        def error(c: torch.Tensor) -> float:
            return float(((op.apply(c) - self.target) @ self.rgb).square().sum())

        now = error(colors)
        bit_cost = bit_cost * now / len(colors)
        for group, group_bits in chroma_groups:
            trial_free = free.clone()
            trial_free[group, 1:] = False
            trial = _conjugate_gradients(op, b, colors * trial_free, CHROMA_DROP_SOLVE, trial_free, weights)
            added = error(trial) - now
            if added >= bit_cost * group_bits:
                break
            colors, free, now = trial, trial_free, now + added
        dropped = ~free
        order = torch.argsort(weights, descending=True, stable=True)
        corners = torch.tensor([[(k >> c) & 1 for c in range(3)] for k in range(8)], dtype=colors.dtype,
                               device=self.device)
        for r in range(rounds):
            rows = order[r * len(order) // rounds:(r + 1) * len(order) // rounds]
            low = torch.floor(colors[rows] / step)
            candidates = low[:, None, :] + corners  # [k, 8, 3] indices
            candidates = torch.where(dropped[rows, None, :], 0.0, candidates)
            change = ((candidates * step - colors[rows, None, :]) @ self.rgb).square().sum(-1)
            cost = weights[rows, None] * change + bit_cost * bits(rows, candidates)
            best = candidates[torch.arange(len(rows)), cost.argmin(1)]
            colors[rows] = best * step
            free[rows] = False
            if r + 1 < rounds:
                colors = _conjugate_gradients(op, b, colors, COLOR_ROUND_SOLVE, free, weights)
        return colors

    def replacement_costs(self, s: SplatTensors, candidates: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                          ) -> tuple[torch.Tensor, float]:
        """Costs [N, K] and the squared RGB error now: per splat, how much the squared RGB error
        would grow if that splat alone were replaced by its row of the k-th candidate geometry
        (means [N, 2], scales [N, 2], angles [N]), its colour solved again for it alone; the
        other splats stay as they are. With r the error without the splat and w its weights,
        the best error is |r|^2 - |u|^2 / sum w^2, u = sum w r: the cost is that term now less
        the candidate's (`ColorOperator.replaced` gives the candidate's sums). A candidate
        that is ``s``'s own geometry (the same tensors: staying) costs 0 and is not computed."""
        with torch.no_grad():
            op = color_operator(s.means, s.scales, s.angles, self.h, self.w, backend=self.backend)
            error = op.apply(s.colors) - self.target
            colors = s.colors @ self.rgb

            def gain(pulled: torch.Tensor, squared: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
                u = pulled @ self.rgb - colors * cross[:, None]  # sum w' r, r without the splat
                return u.square().sum(1) / squared.clamp(min=1e-12)

            own = (s.means, s.scales, s.angles)
            staying = [all(a is b for a, b in zip(c, own, strict=True)) for c in candidates]
            squared = op.squared_sums()
            now = gain(op.adjoint(error), squared, squared)
            sums = iter(op.replaced([c for c, stay in zip(candidates, staying, strict=True) if not stay], error))
            costs = [torch.zeros_like(now) if stay else now - gain(*next(sums)) for stay in staying]
            return torch.stack(costs, 1), float((error @ self.rgb).square().sum())

    def removal_costs(self, s: SplatTensors, error: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """Per splat, how much the squared RGB error (summed over pixels and channels) would
        grow if that splat alone were removed, and the squared error now. Removing splat i
        (colour c_i, weights w_i) changes the error e by -c_i w_i: the growth is
        |c_i|^2 sum w_i^2 - 2 c_i . sum w_i e, both through the colour operator. ``error``: the
        splats' render less the target, if the caller has it."""
        with torch.no_grad():
            op = color_operator(s.means, s.scales, s.angles, self.h, self.w, backend=self.backend)
            error = op.apply(s.colors) - self.target if error is None else error
            pulled = op.adjoint(error) @ self.rgb
            colors = s.colors @ self.rgb
            costs = colors.square().sum(1) * op.squared_sums() - 2 * (colors * pulled).sum(1)
            return costs, float((error @ self.rgb).square().sum())

    # ---- refinement ------------------------------------------------------------------
    def loss(self, s: SplatTensors) -> torch.Tensor:
        return render_mse(s.means, s.scales, s.angles, s.colors, self.target, self.rgb, backend=self.backend)

    def refine(self, s: SplatTensors, steps: int, progress: Progress | None = None,
               relocations: int = RELOCATIONS, lr_scale: float = 1.0) -> SplatTensors:
        """Adam on all parameters at ``lr_scale`` times `LRS`; every ``steps // relocations`` steps
        (at least 10) in the first 3/4 of the run, the weak splats are relocated (0: never)."""
        if steps <= 0:
            return s
        n = len(s.means)
        relocate_every = max(10, steps // relocations) if relocations > 0 else steps + 1
        params = [s.means.clone(), torch.log(s.scales), s.angles.clone(), s.colors.clone()]
        lrs = [lr * lr_scale for lr in LRS]
        opt = self._adam(params, lrs)
        for step in range(steps):
            frac = step / steps
            means, log_scales, angles, colors = params
            cur = SplatTensors(means, log_scales.exp(), angles, colors)
            loss = self.loss(cur)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            decay = 0.1 ** frac  # learning rates fall tenfold over the run
            for group, lr in zip(opt.param_groups, lrs, strict=True):
                group["lr"] = lr * decay
            opt.step()
            with torch.no_grad():
                params[1].clamp_(math.log(0.3), math.log(0.5 * max(self.h, self.w)))
                params[0][:, 0].clamp_(0, self.w - 1e-3)
                params[0][:, 1].clamp_(0, self.h - 1e-3)
            if (step + 1) % relocate_every == 0 and frac < 0.75:
                cur = SplatTensors(*(p.detach() for p in (params[0], params[1].exp(), params[2], params[3])))
                cur = self.relocate(cur, max(1, int(n * RELOCATE_FRACTION)))
                params = [cur.means.clone(), torch.log(cur.scales), cur.angles.clone(), cur.colors.clone()]
                opt = self._adam(params, lrs)
            if progress:
                progress((step + 1) / steps)
            if step % 50 == 0:
                log.debug("step %d loss %.6f", step, loss.item())
        return SplatTensors(*(p.detach() for p in (params[0], params[1].exp(), params[2], params[3])))

    def polish(self, s: SplatTensors, steps: int, train: tuple[str, ...]) -> SplatTensors:
        """Adam on the attributes named in ``train`` only (of "means", "scales", "angles",
        "colors"), at `POLISH_LR` times the refinement's starting rates, without relocation:
        the rest stays exactly as given (on the quantizer's grid, say)."""
        if steps <= 0 or not train:
            return s
        names = ("means", "scales", "angles", "colors")
        values = [s.means, torch.log(s.scales), s.angles, s.colors]
        params = [v.clone() if n in train else v for n, v in zip(names, values, strict=True)]
        trained = [(p, lr * POLISH_LR) for n, p, lr in zip(names, params, LRS, strict=True) if n in train]
        opt = self._adam([p for p, _ in trained], [lr for _, lr in trained])
        for _ in range(steps):
            loss = self.loss(SplatTensors(params[0], params[1].exp(), params[2], params[3]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                if "scales" in train:
                    params[1].clamp_(math.log(0.3), math.log(0.5 * max(self.h, self.w)))
                if "means" in train:
                    params[0][:, 0].clamp_(0, self.w - 1e-3)
                    params[0][:, 1].clamp_(0, self.h - 1e-3)
        return SplatTensors(*(p.detach() for p in (params[0], params[1].exp(), params[2], params[3])))

    @staticmethod
    def _adam(params: list[torch.Tensor], lrs: list[float]) -> torch.optim.Adam:
        for p in params:
            p.requires_grad_(True)
        return torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)])

    def relocate(self, s: SplatTensors, k: int) -> SplatTensors:
        """Move the k splats whose removal costs least (`removal_costs`: a splat that only adds
        error goes first, however bright) to where the error is largest (in place: each keeps
        its index, so per-splat data such as its layer stays aligned), their colours solved for
        what the other splats leave (`RELOCATION_SOLVE` steps; the others keep theirs)."""
        with torch.no_grad():
            error = render_splats(s.means, s.scales, s.angles, s.colors, self.h, self.w,
                                  backend=self.backend) - self.target
            weakest = torch.topk(self.removal_costs(s, error)[0], k, largest=False).indices
            new = self.place(blur((error @ self.rgb).square().sum(-1), 1.0), k, len(s.means) * 2)
            weakest = weakest[: len(new.means)]
            # what the others leave: the image's error, with the weakest splats' part given back
            left = render_splats(s.means[weakest], s.scales[weakest], s.angles[weakest], s.colors[weakest],
                                 self.h, self.w, backend=self.backend) - error

        def put(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            out = a.clone()
            out[weakest] = b
            return out

        colors = self.solve_colors(new, RELOCATION_SOLVE, target=left)
        return SplatTensors(put(s.means, new.means), put(s.scales, new.scales), put(s.angles, new.angles),
                            put(s.colors, colors))


def _conjugate_gradients(op: ColorOperator, b: torch.Tensor, x: torch.Tensor, iterations: int,
                         free: torch.Tensor | None = None, squared_sums: torch.Tensor | None = None) -> torch.Tensor:
    """``iterations`` steps of Jacobi-preconditioned conjugate gradients on W^T W x = b from
    ``x`` (changed in place), moving only the rows ([N] bool) or entries ([N, 3] bool) where
    ``free`` is set, if given (``squared_sums``: ``op``'s, if already known)."""
    mask = None if free is None else (free[:, None] if free.dim() == 1 else free)

    def only_free(v: torch.Tensor) -> torch.Tensor:
        return v if mask is None else v * mask

    def normal(c: torch.Tensor) -> torch.Tensor:
        return only_free(op.normal(c) + 1e-6 * c)

    # Jacobi preconditioner: the diagonal of W^T W, sum of squared weights
    diag = (op.squared_sums() if squared_sums is None else squared_sums)[:, None] + 1e-6
    r = only_free(b - op.normal(x) - 1e-6 * x)
    z = r / diag
    p = z.clone()
    rz = (r * z).sum(0)
    for _ in range(iterations):
        ap = normal(p)
        alpha = rz / (p * ap).sum(0).clamp(min=1e-30)
        x += alpha * p
        r -= alpha * ap
        z = r / diag
        rz_new = (r * z).sum(0)
        p = z + (rz_new / rz.clamp(min=1e-30)) * p
        rz = rz_new
    return x
