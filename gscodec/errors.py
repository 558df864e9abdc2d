"""What gscodec raises for bad input, warns about when it changes a user's data, and which
errors are about the user's files rather than a bug."""

import struct


class GscError(ValueError):
    """Raised for any input gscodec cannot use: a corrupt or truncated stream, an
    unsupported image, an out-of-range option. The message says what was wrong."""


class GscWarning(UserWarning):
    """Warned when gscodec has to change what it was given to store it (for example
    splats dropped from an overfull patch by `gscodec.encode_splats`)."""


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the user's files or options rather than a bug: GscError,
    OSError, or an error Pillow raised while reading or writing an image (its own classes
    such as DecompressionBombError, or ValueError/SyntaxError/EOFError/struct.error raised
    inside PIL on a malformed file). A plain ValueError from gscodec is a bug."""
    if isinstance(exc, (GscError, OSError)) or type(exc).__module__.startswith("PIL"):
        return True
    return isinstance(exc, (ValueError, SyntaxError, EOFError, struct.error)) and _raised_in_pillow(exc)


def _raised_in_pillow(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("PIL.")
