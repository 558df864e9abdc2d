"""Pieces every training script here shares: the learning-rate schedule, atomic
checkpoints, the CPU-time budget and the log file."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch


def cosine_lr(base: float, step: int, total: int, *, warmup: int = 0, floor: float = 0.05) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``base`` to ``floor * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def save_atomic(state: dict, path: Path) -> None:
    """torch.save through a temporary file, so that a kill never leaves half a checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


class CpuBudget:
    """``exceeded()`` once this process has used ``minutes`` of CPU time (None: never)."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes, self.start = minutes, time.process_time()

    def exceeded(self) -> bool:
        return self.minutes is not None and time.process_time() - self.start > 60 * self.minutes


class RunLog:
    """``OUT/log.txt``, appended: a header line per start, then one line per ``write``."""

    def __init__(self, folder: Path, step: int, settings: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.file = (folder / "log.txt").open("a")
        self.comment(f"{time.strftime('%Y-%m-%d %H:%M:%S')} start at step {step}: {json.dumps(settings)}")

    def comment(self, text: str) -> None:
        self.write(f"# {text}")

    def write(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
