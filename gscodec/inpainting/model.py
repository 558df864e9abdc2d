"""The inpainting model's weights: saving, loading with a SHA-256 check, and DINOv2 through timm.

Shipped weights live beside this module (``weights/inpainting.safetensors``, its
configuration and SHA-256 in ``weights/inpainting.json``, the command and data that made
them in ``weights/RECIPE.md``). Until a trained model is placed there, `load` raises a
GscError saying so: no untrained weights are shipped.

A model trained with a DINOv2 feature extractor (``extractor="timm:<name>"``) does not hold
the ViT's weights: the user's local checkpoint is read by `load_timm_extractor` (timm,
``pretrained=False``: nothing is ever downloaded), and its SHA-256 must match the one
recorded at training time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from torch import nn

from ..errors import GscError
from ..predictor.model import read_verified
from .network import InpaintConfig, InpaintNet, TimmExtractor

WEIGHTS = Path(__file__).resolve().parent / "weights"
NAME = "inpainting"


def save(model: InpaintNet, folder: Path, *, recipe: dict) -> Path:
    """Write ``model`` as safetensors plus a JSON of its configuration, SHA-256 and ``recipe``
    (a timm extractor's weights are left out: they stay the user's file)."""
    from safetensors.torch import save as to_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if model.config.extractor == "small" or not k.startswith("extractor.")}
    data = to_bytes(state)
    path = folder / f"{NAME}.safetensors"
    path.write_bytes(data)
    meta = {"config": asdict(model.config), "sha256": hashlib.sha256(data).hexdigest(),
            "parameters": sum(v.numel() for v in state.values()), "recipe": recipe}
    (folder / f"{NAME}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def load(folder: str | os.PathLike | None = None, *, extractor_checkpoint: str | os.PathLike | None = None
         ) -> InpaintNet:
    """The model in ``folder`` (default: the shipped one), in eval mode. GscError when no weights
    are there, when their SHA-256 differs from the recorded one, or when a DINOv2-conditioned
    model is loaded without its ``extractor_checkpoint`` (or with another file)."""
    folder = WEIGHTS if folder is None else Path(folder)
    return _load(folder.resolve(), None if extractor_checkpoint is None else Path(extractor_checkpoint).resolve())


@functools.lru_cache(maxsize=4)
def _load(folder: Path, extractor_checkpoint: Path | None) -> InpaintNet:
    from safetensors.torch import load_file

    path, meta_path = folder / f"{NAME}.safetensors", folder / f"{NAME}.json"
    if folder == WEIGHTS.resolve() and not meta_path.exists():
        raise GscError("no trained inpainting weights are installed (gscodec/inpainting/weights is empty): "
                       "train them with python -m training.inpaint and export them there, or pass weights=FOLDER")
    meta = read_verified(path, meta_path, "the inpainting weights")
    config = InpaintConfig(**meta["config"])
    extractor = None
    if config.extractor != "small":
        if extractor_checkpoint is None:
            raise GscError(f"this inpainting model reads features of {config.extractor[5:]} (timm): pass "
                           "extractor_checkpoint=PATH, the local checkpoint it was trained with")
        if config.extractor_sha256 and file_sha256(extractor_checkpoint) != config.extractor_sha256:
            raise GscError(f"{extractor_checkpoint} is not the extractor checkpoint this model was trained with "
                           f"(SHA-256 {config.extractor_sha256})")
        extractor = load_timm_extractor(config.extractor[5:], extractor_checkpoint, img_size=config.extractor_size,
                                        **config.extractor_kwargs)
    model = InpaintNet(config, extractor)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    missing = [k for k in missing if config.extractor == "small" or not k.startswith("extractor.")]
    if missing or unexpected:
        raise GscError(f"{path} does not fit the network of its configuration: missing {missing}, "
                       f"unexpected {unexpected}")
    return model.eval()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_timm_extractor(name: str, checkpoint: str | os.PathLike, *, img_size: int = 224,
                        **kwargs: object) -> TimmExtractor:
    """A frozen `TimmExtractor` around timm's ``name`` (e.g. ``vit_small_patch14_dinov2``)
    created with ``pretrained=False`` and the weights of the local ``checkpoint`` (safetensors,
    or a torch file read with ``weights_only=True``; a dict under "model", "state_dict" or
    "teacher" is unwrapped, and timm's filter maps Meta's DINOv2 layout and resamples the
    position embedding to ``img_size``). ``kwargs`` go to ``timm.create_model`` (a smaller
    architecture). GscError when timm is missing, the file cannot be read or its keys do
    not fit the model."""
    try:
        import timm
        from timm.models.vision_transformer import checkpoint_filter_fn
    except Exception as exc:  # ImportError, or a torchvision that does not match torch
        raise GscError(f"a DINOv2 extractor needs timm (pip install timm): {exc}") from None
    import torch

    path = Path(checkpoint)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GscError(f"cannot read the extractor checkpoint {path}: {exc}") from None
    for key in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise GscError(f"{path} holds no state dict")
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    try:
        vit = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, **kwargs)
    except Exception as exc:
        raise GscError(f"timm cannot create {name!r}: {exc}") from None
    state = checkpoint_filter_fn(state, vit)
    missing, unexpected = vit.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GscError(f"{path} does not fit timm's {name}: missing {sorted(missing)[:8]}, "
                       f"unexpected {sorted(unexpected)[:8]} (a checkpoint of another architecture or layout?)")
    return TimmExtractor(vit)


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters (a frozen timm extractor not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
