"""`embed`: splat streams -> embedding vectors; `embed_text` and `embed_pixels` for the
same space from captions (a CLIP student only) and from pixels (the model's RGB tower).

Streams are embedded in batches of similar splat counts (sorted by count, at most
``MAX_BATCH_TOKENS`` splats of padding-inclusive work per batch), so one huge stream in a
list does not pad the others to its size; the output keeps the input's order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GscError
from ..format.codec import decode_splats
from ..splats import Splats
from . import model as model_io
from .network import SplatEncoder
from .tokens import features_of, footprint_of, pad_tokens
from .vit import prepare_pixels

MAX_BATCH_TOKENS = 200_000

Stream = bytes | bytearray | memoryview | str | os.PathLike | Splats


def embed(x: Stream | Sequence[Stream], /, *, model: str | os.PathLike | SplatEncoder | None = None,
          batch_size: int = 16) -> np.ndarray:
    """The L2-normalised embedding of a splat stream ([D] float32), or of each of a list ([N, D]).

    x: .gsc bytes, the path of a .gsc file, a `gscodec.Splats`, or a list of them (any number
    of splats each, none included). model: a folder of weights made by ``training.embed
    export`` (default: the shipped model, distilled from a small ViT trained here, not CLIP),
    or a loaded `SplatEncoder`. The result does not depend on the order of the splats.
    """
    many = isinstance(x, (list, tuple))
    items = list(x) if many else [x]
    if many and not items:
        raise GscError("embed needs at least one stream")
    net = _model(model)
    splats = [_splats(item) for item in items]
    inputs = [features_of(s) for s in splats]
    grid = net.config.footprint_grid
    out = np.empty((len(items), net.config.vit.output_dim), np.float32)
    order = sorted(range(len(items)), key=lambda i: len(inputs[i][0]))
    with torch.inference_mode():
        start = 0
        while start < len(order):
            longest, stop = 1, start
            while stop < len(order) and stop - start < batch_size:
                longest = max(longest, len(inputs[order[stop]][0]))
                if stop > start and (stop - start + 1) * longest > MAX_BATCH_TOKENS:
                    break
                stop += 1
            batch = order[start:stop]
            feats, pad = pad_tokens([inputs[i][0] for i in batch])
            footprints = [footprint_of(splats[i], grid) for i in batch] if grid else None
            vectors = net(feats, torch.stack([inputs[i][1] for i in batch]), pad if pad.any() else None,
                          footprints)
            out[batch] = F.normalize(vectors, dim=1).numpy()
            start = stop
    return out if many else out[0]


def embed_pixels(rgb: np.ndarray, /, *, model: str | os.PathLike | SplatEncoder | None = None) -> np.ndarray:
    """The L2-normalised embedding ([D] float32) of an [H, W, 3] RGB image (uint8, or float in
    [0, 1]) by the model's ViT reading pixels: the teacher's view, in the space of `embed`.
    `gscodec.embed_pixels` takes any image `gscodec.encode` takes."""
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise GscError(f"embed_pixels needs an [H, W, 3] RGB image, got shape {array.shape}")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    net = _model(model)
    x = torch.from_numpy(np.ascontiguousarray(array, np.float32) / scale).permute(2, 0, 1)[None]
    with torch.inference_mode():
        vector = net.vit.embed_pixels(prepare_pixels(x, net.config.vit.image_size))
    return F.normalize(vector, dim=1)[0].numpy()


def embed_text(texts: str | Sequence[str], /, *, model: str | os.PathLike | None = None) -> np.ndarray:
    """L2-normalised text embeddings ([D], or [N, D] for a list) from the text tower of the CLIP
    checkpoint the model was distilled from (its path is in the model's embed.json), for
    zero-shot use with `embed`. GscError for a model without one (the shipped model)."""
    clip = model_io.meta(model).get("clip")
    if not clip:
        raise GscError("this embedding model was distilled from a ViT trained here, which has no text side; "
                       "embed_text needs a model distilled from a CLIP checkpoint (python -m training.embed "
                       "distill --clip PATH)")
    from .clip import encode_text

    many = not isinstance(texts, str)
    vectors = encode_text(list(texts) if many else [texts], clip["checkpoint"], arch=clip.get("arch"))
    return vectors if many else vectors[0]


def _model(model: str | os.PathLike | SplatEncoder | None) -> SplatEncoder:
    return model if isinstance(model, SplatEncoder) else model_io.load(model)


def _splats(item: object) -> Splats:
    if isinstance(item, Splats):
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        return decode_splats(bytes(item))
    if isinstance(item, (str, os.PathLike)):
        try:
            data = Path(item).read_bytes()
        except OSError as exc:
            raise GscError(f"cannot read {item}: {exc.strerror or exc}") from None
        return decode_splats(data)
    raise GscError(f"embed takes .gsc bytes, a path or a Splats (or a list of them), got {type(item).__name__}")
