"""Training crops from ../shared/data/train (BSDS500, Sun-Hays80) only, never a test set.

Images are decoded once and kept in memory as uint8; a batch is random crops with random
flips and quarter turns, as YCbCr float32 tensors [B, 3, S, S] with each crop's mean
colour (its background, quantized as the format stores it) removed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gscodec.format.color import RGB_TO_YCBCR
from gscodec.format.constants import BACKGROUND_UNIT

FORBIDDEN = ("kodak", "div2k")  # test sets: refuse to train on anything under these names


def default_train_dir() -> Path:
    """``$GSCODEC_TRAIN_DATA``, else ../shared/data/train beside the checkout."""
    env = os.environ.get("GSCODEC_TRAIN_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def list_train_images(root: Path) -> list[Path]:
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if any(name in str(p).lower() for p in paths for name in FORBIDDEN):
        raise ValueError(f"{root} holds test images (kodak/div2k): train on the training set only")
    if not paths:
        raise FileNotFoundError(f"no training images under {root} (set GSCODEC_TRAIN_DATA or --data)")
    return paths


def centre_crop(image: np.ndarray, height: int = 384, width: int = 512) -> np.ndarray:
    """The centre of ``image``, at most ``height`` x ``width`` (turned to landscape first):
    a Kodak-like view of a training image, for measurements of whole encodes."""
    if image.shape[0] > image.shape[1]:
        image = np.rot90(image)
    h, w = min(height, image.shape[0]), min(width, image.shape[1])
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return np.ascontiguousarray(image[y : y + h, x : x + w])


def sample_views(root: Path, count: int, seed: int, only: str = "", crop: str | None = "512x384",
                 ) -> tuple[list[Path], list[np.ndarray]]:
    """A seeded sample of ``count`` training images whose path holds ``only``, and each image
    as uint8 RGB: its `centre_crop` of at most ``crop`` ("WxH"), or whole when ``crop`` is None."""
    paths = random.Random(seed).sample([p for p in list_train_images(root) if only in str(p)], count)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if crop:
        width, height = (int(v) for v in crop.split("x"))
        images = [centre_crop(image, height, width) for image in images]
    return paths, images


class Crops:
    """Random crops of side ``size`` from the images under ``root`` (seeded)."""

    def __init__(self, root: Path, size: int, seed: int = 0) -> None:
        self.paths = list_train_images(root)
        self.images = [np.asarray(Image.open(p).convert("RGB")) for p in self.paths]
        self.images = [im for im in self.images if min(im.shape[:2]) >= size]
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.matrix = torch.from_numpy(RGB_TO_YCBCR).float()

    def batch(self, n: int) -> torch.Tensor:
        out = np.empty((n, self.size, self.size, 3), np.uint8)
        for i in range(n):
            im = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(im.shape[0] - self.size + 1)
            x = self.rng.integers(im.shape[1] - self.size + 1)
            crop = im[y : y + self.size, x : x + self.size]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            out[i] = np.rot90(crop, self.rng.integers(4))
        return to_ycbcr_centred(torch.from_numpy(out).float() / 255.0, self.matrix)


def to_ycbcr_centred(rgb: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """[B, S, S, 3] RGB in [0, 1] -> [B, 3, S, S] YCbCr minus each image's quantized mean."""
    ycc = rgb @ matrix.T
    mean = ycc.mean((1, 2), keepdim=True)
    mean = torch.round(mean * BACKGROUND_UNIT) / BACKGROUND_UNIT
    return (ycc - mean).permute(0, 3, 1, 2).contiguous()
