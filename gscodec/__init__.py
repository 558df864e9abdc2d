"""gscodec: an image codec whose compressed form is a set of 2D Gaussian splats.

    >>> import gscodec
    >>> data = gscodec.encode(image, quality=50)      # numpy / PIL / torch -> bytes
    >>> pixels = gscodec.decode(data)                  # -> [H, W, 3] uint8
    >>> splats = gscodec.decode_splats(data)           # the splats themselves
    >>> summary = gscodec.convert("photos", "out")     # a folder tree to .gsc files, resumable
    >>> filled = gscodec.inpaint(data, mask)           # splats -> splats, the masked region repainted
    >>> vector = gscodec.embed(data)                   # splats -> an embedding (no pixels decoded)

Importing gscodec and decoding on the CPU do not import torch; encoding does.
"""

from . import _openmp  # noqa: F401  (first: before anything imports torch)
from .api import DEFAULT_QUALITY, check, decode, encode, has_cuda, read, render_image, write
from .batch import ConvertInterrupted, ConvertSummary, convert
from .encoder.plan import DEFAULT_EFFORT, DEFAULT_INIT, MAX_EFFORT
from .errors import GscError, GscWarning
from .format.codec import decode_splats
from .quant.stream import encode_splats
from .splats import Splats, SplatTensors

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EFFORT", "DEFAULT_INIT", "DEFAULT_QUALITY", "MAX_EFFORT", "ConvertInterrupted", "ConvertSummary",
    "GscError", "GscWarning", "Splats", "SplatTensors", "__version__", "check", "convert", "decode", "decode_splats",
    "embed", "embed_pixels", "embed_text", "encode", "encode_splats", "has_cuda",
    "inpaint", "read", "register_pillow", "render_image", "write",
]


def inpaint(stream, mask, /, **kwargs) -> Splats:
    """Fill ``mask``'s True pixels of a .gsc stream (bytes or `Splats`) with new splats; the
    splats away from the mask are kept unchanged (`gscodec.inpainting.fill.inpaint`). Needs torch."""
    from .inpainting import inpaint as run

    return run(stream, mask, **kwargs)


def embed(x, /, **kwargs):
    """The embedding ([D] float32, L2-normalised) of a splat stream (.gsc bytes, a path, a
    `Splats`), or [N, D] for a list; read from the splats, not from pixels
    (`gscodec.embedding.api.embed`). Needs torch."""
    from .embedding import embed as run

    return run(x, **kwargs)


def embed_text(texts, /, **kwargs):
    """Text embeddings in `embed`'s space, for a model distilled from a CLIP checkpoint with a
    text tower (`gscodec.embedding.api.embed_text`). Needs torch and open_clip."""
    from .embedding import embed_text as run

    return run(texts, **kwargs)


def embed_pixels(image, /, **kwargs):
    """The embedding model's RGB tower (its teacher's view) on an image, in `embed`'s space
    (`gscodec.embedding.api.embed_pixels`). Needs torch."""
    from .embedding import embed_pixels as run
    from .image import to_rgb_float

    return run(to_rgb_float(image), **kwargs)


def register_pillow() -> None:
    """Register the .gsc format with Pillow (the same as importing gscodec.GscImagePlugin)."""
    from . import GscImagePlugin

    GscImagePlugin.register()
