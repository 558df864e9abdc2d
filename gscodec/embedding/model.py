"""The embedding model's weights: saving, loading (SHA-256 checked), and what they are.

A model folder holds ``embed.safetensors`` (the whole `SplatEncoder`: splat stem and ViT)
and ``embed.json``: its configuration, SHA-256, the recipe that made it, a sentence on what
its teacher was, and, for a student of a CLIP checkpoint, that checkpoint's path and
open_clip name (the text side, `gscodec.embed_text`, is read from there).
The shipped weights (``weights/``) are a student of a small ViT trained here: not CLIP.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from ..errors import GscError
from ..predictor.model import read_verified
from .network import EmbedConfig, SplatEncoder

WEIGHTS = Path(__file__).resolve().parent / "weights"


def save(model: SplatEncoder, folder: Path, *, recipe: dict, teacher: str, clip: dict | None = None) -> Path:
    """Write ``model`` as safetensors plus its JSON (configuration, SHA-256, recipe, teacher)."""
    from safetensors.torch import save as to_bytes

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "embed.safetensors"
    data = to_bytes({k: v.contiguous() for k, v in model.state_dict().items()})
    path.write_bytes(data)
    meta = {"config": model.config.to_dict(), "sha256": hashlib.sha256(data).hexdigest(), "teacher": teacher,
            "clip": clip, "recipe": recipe}
    (folder / "embed.json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def load(folder: str | os.PathLike | None = None) -> SplatEncoder:
    """The model in ``folder`` (default: the shipped one) in eval mode; GscError when its
    files are missing or damaged."""
    return _load(Path(folder).resolve() if folder is not None else WEIGHTS)


def meta(folder: str | os.PathLike | None = None) -> dict:
    """The JSON beside the weights (checked against their SHA-256)."""
    folder = Path(folder) if folder is not None else WEIGHTS
    return read_verified(folder / "embed.safetensors", folder / "embed.json", "the embedding model")


@functools.cache
def _load(folder: Path) -> SplatEncoder:
    from safetensors.torch import load_file

    info = meta(folder)
    try:
        model = SplatEncoder(EmbedConfig.from_dict(info["config"]))
        model.load_state_dict(load_file(str(folder / "embed.safetensors")))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise GscError(f"the embedding model in {folder} does not fit its configuration: {exc}") from None
    return model.eval().requires_grad_(False)
