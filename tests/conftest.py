"""Shared fixtures: small deterministic images and a .gsc file encoded once per session."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numba
import numpy as np
import pytest

import gscodec


def smooth_image(height: int = 17, width: int = 33) -> np.ndarray:
    """[H, W, 3] uint8: gradients plus a soft blob, so the encoder places a few splats."""
    y, x = np.mgrid[:height, :width].astype(np.float32)
    blob = np.exp(-((x - width / 3) ** 2 + (y - height / 2) ** 2) / 20.0)
    rgb = np.stack([x / width, y / height, 0.3 + 0.6 * blob], -1)
    return np.round(255 * np.clip(rgb, 0, 1)).astype(np.uint8)


@contextmanager
def one_numba_thread() -> Iterator[None]:
    """Run numba kernels on one thread: for tiny test images, parallel kernels only add
    synchronisation, which takes a scheduler slice per call when other processes hold the cores."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


_torchvision_shim: list = []  # the torch.library fragment must live as long as the ops it declares


def import_beside_torchvision(name: str) -> ModuleType:
    """The module ``name`` (timm, open_clip: packages importing torchvision), or a skip when it is
    not installed. A torchvision wheel that does not match the installed torch (PyPI's 0.28
    beside a CPU torch 2.13) cannot load its compiled ops and fails on import registering fakes
    for two of them ("operator torchvision::nms does not exist"). Their schemas are declared here
    (nothing calls them), as torchvision's own _C would, and the import is tried again after
    dropping what the failed attempt left in sys.modules."""
    before = set(sys.modules)
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    import torch

    if not _torchvision_shim:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            try:
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:  # already declared
                pass
        _torchvision_shim.append(lib)
    # stale: anything of torchvision or ``name``, and what the attempt left of other packages
    # whose import it broke (their top module is gone); fully imported ones (numpy...) stay
    stale = {name.split(".")[0], "torchvision"}
    for module in [m for m in sys.modules if m.split(".")[0] in stale
                   or (m not in before and m.split(".")[0] not in sys.modules)]:
        del sys.modules[module]
    return importlib.import_module(name)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """`one_numba_thread` for one test (use: ``pytestmark = pytest.mark.usefixtures("single_thread")``)."""
    with one_numba_thread():
        yield


@pytest.fixture(scope="session")
def rgb_image() -> np.ndarray:
    """A 33 x 17 RGB uint8 image ([17, 33, 3])."""
    return smooth_image()


@pytest.fixture(scope="session")
def gsc_file(tmp_path_factory: pytest.TempPathFactory, rgb_image: np.ndarray) -> Path:
    """`rgb_image` written with gscodec.write at effort 0 (read-only: copy before changing it)."""
    path = tmp_path_factory.mktemp("gsc") / "image.gsc"
    with one_numba_thread():
        gscodec.write(path, rgb_image, effort=0)
    return path
