"""What gscodec raises for bad input, and warns about when it changes a user's data."""


class GscError(ValueError):
    """Raised for any input gscodec cannot use: a corrupt or truncated stream, an
    unsupported image, an out-of-range option. The message says what was wrong."""


class GscWarning(UserWarning):
    """Warned when gscodec has to change what it was given to store it (for example
    splats dropped from an overfull patch by `gscodec.encode_splats`)."""
