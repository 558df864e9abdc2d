"""The shipped predictor: its weights, their hash, and loading them.

Weights live beside this module (``weights/predictor.safetensors``) with the
configuration and the SHA-256 they must have (``weights/predictor.json``); the command
and data that made them are in ``weights/RECIPE.md``. A decoder never needs them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import GscError
from .network import PredictorConfig, StagedPredictor

WEIGHTS = Path(__file__).resolve().parent / "weights"


def save(model: StagedPredictor, folder: Path, *, recipe: dict) -> Path:
    """Write ``model`` as safetensors plus a JSON of its configuration, SHA-256 and ``recipe``."""
    from safetensors.torch import save as to_bytes

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predictor.safetensors"
    data = to_bytes({k: v.contiguous() for k, v in model.state_dict().items()})
    path.write_bytes(data)  # a plain write: the file gets the user's umask
    digest = hashlib.sha256(data).hexdigest()
    meta = {"config": asdict(model.config), "sha256": digest, "recipe": recipe}
    (folder / "predictor.json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def read_verified(path: Path, meta_path: Path, what: str) -> dict:
    """The JSON beside a weights file, once the file's SHA-256 matches the one it records;
    GscError when either cannot be read or the hashes differ."""
    try:
        meta = json.loads(meta_path.read_text())
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise GscError(f"{what} cannot be read from {path.parent}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("sha256"):
        raise GscError(f"{path} has SHA-256 {digest}, not the recorded {meta.get('sha256')}: a damaged file")
    return meta


@functools.cache
def load(folder: Path = WEIGHTS) -> StagedPredictor:
    """The predictor in ``folder`` (default: the shipped one), in eval mode; GscError when the
    weights are missing or their SHA-256 differs from the recorded one."""
    from safetensors.torch import load_file

    path = folder / "predictor.safetensors"
    meta = read_verified(path, folder / "predictor.json", "the predictor's weights")
    config = meta["config"]
    model = StagedPredictor(PredictorConfig(**{**config, "patch_sizes": tuple(config["patch_sizes"])}))
    model.load_state_dict(load_file(str(path)))
    # channels-last weights and inputs (`initializer.predict`) spare oneDNN a reorder per
    # convolution: the 4 stages' network passes on a Kodak-sized image took 0.15 s, not 0.20 s
    return model.to(memory_format=torch.channels_last).eval()
