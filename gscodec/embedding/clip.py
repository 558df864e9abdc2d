"""A user's local CLIP checkpoint: its visual tower as our `VisionTransformer`, its text tower
through open_clip. Nothing is ever downloaded: the weights are the user's file, and open_clip
ships the BPE vocabulary of CLIP's tokenizer.

Two layouts are read, both with CLIP's key names (``visual.conv1.weight``, ...):
- open_clip's: a state dict saved by torch (.bin/.pt/.pth, read with ``weights_only=True``) or
  safetensors, possibly under "state_dict" or "model", possibly with "module." prefixes;
- OpenAI's: the TorchScript archive OpenAI distributed (ViT-B-16.pt: read with
  ``torch.jit.load``), or the state dict of one, told apart by its int entries
  "input_resolution", "context_length" and "vocab_size".

open_clip is needed for the text side only, and imported there (``pip install gscodec[clip]``).
"""

from __future__ import annotations

import functools
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import GscError
from .vit import VisionTransformer, VitConfig

OPENAI_INTS = ("input_resolution", "context_length", "vocab_size")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], bool]:
    """(state dict with CLIP's key names, whether it is OpenAI's layout). Zip files are memory
    mapped, so reading the keys of a large checkpoint costs little. GscError when the file is
    missing or cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise GscError(f"no CLIP checkpoint at {path}")
    torchscript = _is_torchscript(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif torchscript:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:
        raise GscError(f"cannot read the CLIP checkpoint {path}: {exc}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise GscError(f"{path} holds no state dict")
    openai = torchscript or any(key in state for key in OPENAI_INTS)
    return {k.removeprefix("module."): v for k, v in state.items() if k not in OPENAI_INTS}, openai


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a torch zip holding compiled code (``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_visual(path: str | os.PathLike, *, quick_gelu: bool | None = None,
                heads: int | None = None) -> VisionTransformer:
    """The visual tower of the CLIP checkpoint at ``path`` (either layout), in eval mode.

    Its `VitConfig` is read from the tensors' shapes as open_clip's
    ``build_model_from_openai_state_dict`` does: width and patch from ``conv1``, layers from
    the attention blocks, image size from the position embedding, output dim from ``proj``.
    Two things the weights cannot tell:
    - ``heads``: width // 64 unless given (right for OpenAI's models and most of open_clip's;
      ViT-H-14's head width is 80, so it needs ``heads=16``);
    - ``quick_gelu``: OpenAI's models were trained with QuickGELU, open_clip's mostly with GELU
      (the "-quickgelu" ones excepted), so the default is True for OpenAI's layout and False
      for open_clip's.

    GscError for a missing or unreadable file, a checkpoint without a ViT visual tower (a ResNet
    CLIP, a timm trunk) or one whose tensors do not fit CLIP's ViT (layer scale, attentional
    pooling, other shapes)."""
    state, openai = read_checkpoint(path)
    config = _visual_config(state, Path(path), quick_gelu=openai if quick_gelu is None else quick_gelu,
                            heads=heads)
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    model = VisionTransformer(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(visual))
    unexpected = sorted(set(visual) - set(expected))
    shapes = [f"{k} {tuple(v.shape)} (not {tuple(expected[k].shape)})"
              for k, v in visual.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise GscError(f"the visual tower of {path} does not fit CLIP's ViT ({config}): missing {missing[:8]}, "
                       f"unexpected {unexpected[:8]}, other shapes {shapes[:8]}")
    model.load_state_dict(visual)
    return model.eval()


def _visual_config(state: dict[str, torch.Tensor], path: Path, *, quick_gelu: bool, heads: int | None) -> VitConfig:
    if any(k.startswith("visual.layer1.") for k in state):
        raise GscError(f"{path} is a ResNet CLIP: only ViT visual towers can be loaded")
    needed = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj",
              "visual.transformer.resblocks.0.mlp.c_fc.weight")
    if absent := [k for k in needed if k not in state]:
        raise GscError(f"{path} holds no CLIP ViT visual tower (no {', '.join(absent)})")
    width, _, _, patch = state["visual.conv1.weight"].shape
    layers = sum(k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight") for k in state)
    positions = state["visual.positional_embedding"].shape[0] - 1
    grid = round(positions ** 0.5)
    if grid * grid != positions:
        raise GscError(f"{path}: {positions} position embeddings are not a square grid of patches")
    heads = heads or max(width // 64, 1)
    if width % heads:
        raise GscError(f"{path}: width {width} is not a multiple of {heads} heads")
    hidden = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    ratio = hidden / width
    if int(width * ratio) != hidden:  # VitConfig rounds width * mlp_ratio down
        ratio = (hidden + 0.5) / width
    return VitConfig(width=width, layers=layers, heads=heads, patch_size=patch, image_size=patch * grid,
                     output_dim=state["visual.proj"].shape[1], mlp_ratio=ratio, quick_gelu=quick_gelu)


def _open_clip():
    """open_clip, or a GscError saying how to get a working one."""
    try:
        import open_clip
    except ImportError as exc:
        raise GscError(f"CLIP's text tower needs open_clip: pip install gscodec[clip] ({exc})") from None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        raise GscError(f"open_clip cannot import torchvision, which does not match torch {torch.__version__}: "
                       f"install the torchvision built for this torch ({exc})") from None
    return open_clip


class ClipText:
    """CLIP's text side: an open_clip model (frozen, eval mode; its visual tower is built too,
    unused) and its tokenizer. `encode` gives open_clip's ``encode_text``, unnormalised."""

    def __init__(self, model: torch.nn.Module, tokenizer) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    @property
    def logit_scale(self) -> float:
        """The multiplier of the cosine similarities (exp of the stored log scale), as CLIP's
        forward returns it."""
        return float(self.model.logit_scale.exp())

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] text features of ``texts`` (a single string counts as one)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(texts).to(device))


def load_text(path: str | os.PathLike, *, arch: str | None = None) -> ClipText:
    """CLIP's text tower from the local checkpoint at ``path``, through open_clip.

    OpenAI's layout needs no ``arch``: the model is built from the tensors' shapes (open_clip's
    ``build_model_from_openai_state_dict``, QuickGELU). open_clip's layout does not record its
    architecture: ``arch`` is the open_clip model name it was trained as (e.g. "ViT-B-32", or
    "ViT-B-32-quickgelu", which is also how QuickGELU is chosen). Models whose tokenizer or text
    tower comes from the Hugging Face hub (SigLIP, hf text towers) are refused: gscodec never
    downloads. GscError when open_clip is missing, the file holds no text tower or does not fit."""
    open_clip = _open_clip()
    state, openai = read_checkpoint(path)
    if not any(k.startswith(("token_embedding.", "text.")) for k in state):
        raise GscError(f"{path} holds no CLIP text tower (no token_embedding or text.* weights)")
    if arch is None:
        if not openai:
            raise GscError(f"{path} is in open_clip's layout, which does not record the architecture: pass arch=, "
                           "the open_clip model name it was trained as (e.g. 'ViT-B-32')")
        return _openai_text(open_clip, state, path)
    config = open_clip.get_model_config(arch) if ":" not in arch else None
    if config is None:
        raise GscError(f"open_clip has no model named {arch!r} (a built-in name, or one registered with "
                       "open_clip.add_model_config)")
    text_cfg = config.get("text_cfg", {})
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg or "siglip" in arch.lower():
        raise GscError(f"open_clip's {arch} takes its text tower or tokenizer from the Hugging Face hub, "
                       "which gscodec never downloads from")
    quiet = _Without("initialized randomly")  # true, but the file's weights go in next
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(arch, device="cpu", precision="fp32")
    finally:
        logging.getLogger().removeFilter(quiet)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = open_clip.model.convert_to_custom_text_state_dict(state)  # as open_clip.load_checkpoint does
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # other shapes
        raise GscError(f"{path} does not fit open_clip's {arch}: {exc}") from None
    if missing or unexpected:
        raise GscError(f"{path} does not fit open_clip's {arch}: missing {sorted(missing)[:8]}, "
                       f"unexpected {sorted(unexpected)[:8]}")
    return ClipText(model, open_clip.get_tokenizer(arch))


class _Without(logging.Filter):
    """Drops the log records holding ``text`` (open_clip logs to the root logger)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _openai_text(open_clip, state: dict[str, torch.Tensor], path: str | os.PathLike) -> ClipText:
    from open_clip.model import build_model_from_openai_state_dict

    try:
        # it loads into a half-precision model (OpenAI's weights are); loading again after
        # .float() keeps a float32 checkpoint exact
        model = build_model_from_openai_state_dict(dict(state), quick_gelu=True).float()
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise GscError(f"{path} does not fit OpenAI's CLIP: {exc}") from None
    return ClipText(model, open_clip.SimpleTokenizer(context_length=model.context_length))


def encode_text(texts: Sequence[str], checkpoint: str | os.PathLike, *, arch: str | None = None) -> np.ndarray:
    """[N, D] float32 L2-normalised CLIP text embeddings of ``texts`` (see `load_text`); the
    model stays loaded for the next call with the same checkpoint and ``arch``."""
    path = Path(checkpoint).resolve()
    stamp = path.stat().st_mtime_ns if path.is_file() else 0
    features = _cached_text(path, arch, stamp).encode(texts).float()
    return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()


@functools.lru_cache(maxsize=2)
def _cached_text(path: Path, arch: str | None, stamp: int) -> ClipText:
    """`load_text`, kept while the file is unchanged (``stamp``: its modification time)."""
    return load_text(path, arch=arch)
