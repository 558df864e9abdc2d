"""gscodec: an image codec whose compressed form is a set of 2D Gaussian splats.

    >>> import gscodec
    >>> data = gscodec.encode(image, quality=50)      # numpy / PIL / torch -> bytes
    >>> pixels = gscodec.decode(data)                  # -> [H, W, 3] uint8
    >>> splats = gscodec.decode_splats(data)           # the splats themselves
"""

from . import _openmp  # noqa: F401  (first: before anything imports torch)
from .api import DEFAULT_QUALITY, check, decode, encode, read, render, write
from .codec import decode_splats, encode_splats
from .encoder import DEFAULT_EFFORT
from .errors import GscError
from .render_cuda import has_cuda
from .splats import Splats, SplatTensors

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EFFORT", "DEFAULT_QUALITY", "GscError", "Splats", "SplatTensors", "__version__",
    "check", "decode", "decode_splats", "encode", "encode_splats", "has_cuda", "read", "register_pillow",
    "render", "write",
]


def register_pillow() -> None:
    """Register the .gsc format with Pillow (the same as importing gscodec.GscImagePlugin)."""
    from . import GscImagePlugin

    GscImagePlugin.register()
