"""Turning what callers pass as an image into one form: float32 RGB in [0, 1], [H, W, 3]."""

from __future__ import annotations

import numpy as np

from .errors import GscError


def to_rgb_float(image: object, *, drop_alpha: bool = False) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] from a numpy array, PIL image or torch tensor.

    numpy: [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; uint8 (0-255), uint16 (0-65535)
    or float (0-1). torch: the same, or channels first ([C, H, W]). Grayscale is
    replicated to RGB; an alpha channel raises GscError unless ``drop_alpha``.
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
    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        if not drop_alpha:
            raise GscError(f"image mode {mode} has an alpha channel; pass drop_alpha=True to drop it")
    if mode in ("L", "LA", "La", "1"):
        return np.asarray(image.convert("L"))
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image.convert("F"), np.float32)
        return array / (65535.0 if mode.startswith("I") and array.max() > 255 else 255.0)
    return np.asarray(image.convert("RGB"))


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
