"""Image folders used as benchmark datasets.

``kodak`` is the 24-image Kodak set under ``/work/shared/data/kodak``;
``div2k`` is a DIV2K validation folder the user gives (HR or the official x2
bicubic set, as GaussianImage uses); any other value is a folder path.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

KODAK_DIR = Path("/work/shared/data/kodak")
#: the 2-image DIV2K x2 sample shipped here: a smoke test, never "DIV2K"
DIV2K_SMOKE_DIR = Path("/work/shared/data/div2k_valid")
DIV2K_SIZE = 100
IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")


def resolve(dataset: str, div2k_dir: str | None = None) -> tuple[str, Path]:
    """Map a ``--dataset`` value to ``(name, folder)``.

    The name labels results and cache folders. A DIV2K folder with fewer than
    100 images is named ``div2k-partial`` (``div2k-smoke`` for the shipped
    2-image sample) so that it is never reported as DIV2K.
    """
    if dataset == "kodak":
        return "kodak", KODAK_DIR
    if dataset == "div2k":
        if not div2k_dir:
            raise ValueError("--dataset div2k needs --div2k-dir PATH (the DIV2K validation HR or x2 folder)")
        folder = Path(div2k_dir)
        if folder.resolve().is_relative_to(DIV2K_SMOKE_DIR.resolve()):
            return "div2k-smoke", folder
        n = len(list_images(folder))
        if n < DIV2K_SIZE:
            log.warning("%s holds %d images, not the 100 of DIV2K validation: named div2k-partial", folder, n)
            return "div2k-partial", folder
        return "div2k", folder
    folder = Path(dataset)
    if not folder.is_dir():
        raise ValueError(f"--dataset {dataset!r} is neither kodak, div2k nor a folder")
    if folder.resolve().is_relative_to(DIV2K_SMOKE_DIR.resolve()):
        return "div2k-smoke", folder
    return folder.resolve().name, folder


def list_images(folder: Path, patterns: list[str] | None = None, limit: int | None = None) -> list[Path]:
    """Sorted image files directly in ``folder``.

    ``patterns`` are globs or names matched against the file name or stem
    (``kodim0*``, ``kodim01``); ``limit`` keeps the first N after filtering.
    """
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if patterns:
        files = [
            p for p in files if any(fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(p.stem, pat) for pat in patterns)
        ]
    if limit is not None:
        files = files[:limit]
    return files


def load_rgb(path: Path) -> np.ndarray:
    """Read an image as ``[H, W, 3]`` uint8 RGB."""
    with Image.open(path) as im:
        if im.mode not in ("RGB", "L", "P", "RGBA"):
            raise ValueError(f"{path}: unsupported image mode {im.mode} (need 8-bit)")
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def select(dataset: str, div2k_dir: str | None, images: list[str] | None, limit: int | None) -> tuple[str, list[Path]]:
    """(dataset name, image paths) from the CLI options ``--dataset``, ``--div2k-dir``,
    ``--images`` (names or globs, comma lists allowed) and ``--limit``."""
    name, folder = resolve(dataset, div2k_dir)
    patterns = [s for item in images or [] for s in item.split(",") if s]
    paths = list_images(folder, patterns or None, limit)
    if not paths:
        raise ValueError(f"no images matched directly in {folder} (sub-folders are not searched)")
    return name, paths
