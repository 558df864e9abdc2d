"""Image folders used as benchmark datasets.

``kodak`` is the 24-image Kodak set, the folder ``kodak`` of the data folder;
``div2k`` is a DIV2K validation folder the user gives (HR or the official x2
bicubic set, as GaussianImage uses); any other value is a folder path.

The data folder is, first that holds the dataset: ``--data-dir`` (``data_dir``
here), the ``GSCODEC_DATA`` environment variable, ``../shared/data`` beside the
checkout (found from this file, not the working directory).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DATA_ENV = "GSCODEC_DATA"
#: ``../shared/data`` relative to the checkout that holds bench/
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
KODAK = "kodak"
#: the 2-image DIV2K x2 sample shipped in the data folder: a smoke test, never "DIV2K"
DIV2K_SMOKE = "div2k_valid"
DIV2K_SIZE = 100
IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, for the tools that take ``--dataset``."""
    parser.add_argument("--data-dir", help=f"folder holding {KODAK}/ (default: ${DATA_ENV}, else ../shared/data "
                                           "beside the checkout)")


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data-dir``, ``--images`` and ``--limit``: which images a Kodak tool reads
    (`select` takes them)."""
    parser.add_argument("--dataset", default="kodak", help="kodak or a folder of images")
    add_data_dir_option(parser)
    parser.add_argument("--images", nargs="+", help="names or globs (kodim01, 'kodim0*'); default all")
    parser.add_argument("--limit", type=int)


def data_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The candidate data folders in the order they are tried, each with where it came from."""
    roots = []
    if data_dir:
        roots.append(("--data-dir", Path(data_dir)))
    if os.environ.get(DATA_ENV):
        roots.append((DATA_ENV, Path(os.environ[DATA_ENV])))
    roots.append(("../shared/data beside the checkout", SHARED_DATA_DIR))
    return roots


def find_data(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder ``name`` in the first data folder that has it; ValueError naming every place tried."""
    roots = data_roots(data_dir)
    for i, (_, root) in enumerate(roots):
        if (root / name).is_dir():
            if i:  # an explicit choice lacked it: say which folder is used instead
                log.warning("%s not in %s; using %s", name, ", ".join(str(r) for _, r in roots[:i]), root / name)
            return root / name
    tried = "; ".join(f"{origin}: {root / name}" for origin, root in roots)
    raise ValueError(f"dataset folder {name!r} not found. Tried {tried}. Pass --data-dir DIR or set {DATA_ENV}=DIR "
                     f"(DIR holding {name}/), or put it in ../shared/data beside the checkout")


def _is_smoke_sample(folder: Path, data_dir: str | os.PathLike | None) -> bool:
    """Whether ``folder`` lies in the shipped 2-image DIV2K sample of any data folder."""
    real = folder.resolve()
    return any(real.is_relative_to((root / DIV2K_SMOKE).resolve()) for _, root in data_roots(data_dir))


def resolve(dataset: str, div2k_dir: str | None = None, data_dir: str | None = None) -> tuple[str, Path]:
    """Map a ``--dataset`` value to ``(name, folder)``.

    The name labels results and cache folders. A DIV2K folder with fewer than
    100 images is named ``div2k-partial`` (``div2k-smoke`` for the shipped
    2-image sample) so that it is never reported as DIV2K.
    """
    if dataset == KODAK:
        return KODAK, find_data(KODAK, data_dir)
    if dataset == "div2k":
        if not div2k_dir:
            raise ValueError("--dataset div2k needs --div2k-dir PATH (the DIV2K validation HR or x2 folder)")
        folder = Path(div2k_dir)
        if _is_smoke_sample(folder, data_dir):
            return "div2k-smoke", folder
        n = len(list_images(folder))
        if n < DIV2K_SIZE:
            log.warning("%s holds %d images, not the 100 of DIV2K validation: named div2k-partial", folder, n)
            return "div2k-partial", folder
        return "div2k", folder
    folder = Path(dataset)
    if not folder.is_dir():
        raise ValueError(f"--dataset {dataset!r} is neither kodak, div2k nor a folder")
    if _is_smoke_sample(folder, data_dir):
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


def select(
    dataset: str, div2k_dir: str | None, images: list[str] | None, limit: int | None, data_dir: str | None = None
) -> tuple[str, list[Path]]:
    """(dataset name, image paths) from the CLI options ``--dataset``, ``--div2k-dir``,
    ``--images`` (names or globs, comma lists allowed), ``--limit`` and ``--data-dir``."""
    name, folder = resolve(dataset, div2k_dir, data_dir)
    patterns = [s for item in images or [] for s in item.split(",") if s]
    paths = list_images(folder, patterns or None, limit)
    if not paths:
        raise ValueError(f"no images matched directly in {folder} (sub-folders are not searched)")
    return name, paths
