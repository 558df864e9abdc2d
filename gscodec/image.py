"""Turning what callers pass as an image into one form: float32 RGB in [0, 1], [H, W, 3]."""

from __future__ import annotations

import numpy as np

from .errors import GscError

_ORIENTATION = 0x0112  # the EXIF tag


def to_rgb_float(image: object, *, drop_alpha: bool = False) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] from a numpy array, PIL image or torch tensor.

    numpy: [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; uint8 (0-255), uint16 (0-65535)
    or float (0-1). torch: the same, or channels first ([C, H, W]); float16 and
    bfloat16 are read exactly. Grayscale is replicated to RGB; an alpha channel raises
    GscError unless ``drop_alpha``.

    PIL images are turned upright first by their EXIF Orientation tag, as viewers show
    them. The value range follows the mode, never the data: "I;16*" is 0-65535; "I"
    (32-bit) must lie in 0-65535, read as 16-bit; "F" must lie in [0, 1], as float
    arrays; 8-bit modes are 0-255. Values outside raise GscError.
    """
    if _is_torch(image):
        array = _from_torch(image)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)
    elif _is_pil(image):
        array = _from_pil(image, drop_alpha)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise GscError(f"cannot encode a {type(image).__name__}: pass a numpy array, PIL image or torch tensor")

    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise GscError(f"image must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise GscError(f"image is empty (shape {array.shape})")
    if array.shape[2] == 4:
        if not drop_alpha:
            raise GscError("image has an alpha channel, which .gsc cannot store; pass drop_alpha=True to drop it")
        array = array[:, :, :3]
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        out = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32)
        if not np.isfinite(out).all():
            raise GscError("image holds NaN or infinite values")
        if out.min() < -1e-3 or out.max() > 1.0 + 1e-3:
            raise GscError(f"float image values must lie in [0, 1], got [{out.min():.3g}, {out.max():.3g}]")
        out = np.clip(out, 0.0, 1.0)
    elif array.dtype == np.bool_:
        out = array.astype(np.float32)
    else:
        raise GscError(f"unsupported image dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def _is_pil(image: object) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(image, Image.Image)


def _from_pil(image, drop_alpha: bool) -> np.ndarray:
    image = _upright(image)
    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        if not drop_alpha:
            raise GscError(f"image mode {mode} has an alpha channel; pass drop_alpha=True to drop it")
    if mode in ("L", "LA", "La", "1"):
        return np.asarray(image.convert("L"))
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)  # native byte order; scaled as uint16 arrays are
    if mode == "I":
        return _checked_uint16(np.asarray(image))
    if mode == "F":
        return np.asarray(image, np.float32)  # checked and used as a float array: [0, 1]
    return np.asarray(image.convert("RGB"))


def _upright(image):
    """``image`` turned as its EXIF Orientation tag says (a viewer's view); itself when upright."""
    from PIL import ImageOps

    if image.getexif().get(_ORIENTATION, 1) == 1:
        return image  # no copy for the common case
    return ImageOps.exif_transpose(image)


def _checked_uint16(values: np.ndarray) -> np.ndarray:
    """Mode "I" (int32) as uint16; GscError outside 0..65535 rather than a guessed scale."""
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise GscError(f"mode I image values must lie in 0..65535 (16-bit), got {low}..{high}")
    return values.astype(np.uint16)


def _is_torch(image: object) -> bool:
    """A torch tensor, told without importing torch (a caller holding one has imported it)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(image, torch.Tensor)


def _from_torch(image) -> np.ndarray:
    import torch

    tensor = image.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()  # numpy has no bfloat16; both are exact in float32
    try:
        return tensor.numpy()
    except TypeError as exc:
        raise GscError(f"unsupported tensor dtype {tensor.dtype}: {exc}") from None
