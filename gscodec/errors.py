"""The one exception gscodec raises for bad input."""


class GscError(ValueError):
    """Raised for any input gscodec cannot use: a corrupt or truncated stream, an
    unsupported image, an out-of-range option. The message says what was wrong."""
