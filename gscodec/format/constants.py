"""The constants of bitstream/SPEC.md: identification, limits, fixed-point units, the cut-off.

Everything here is normative: a decoder written from the spec uses these values.
"""

from __future__ import annotations

import math

import numpy as np

MAGIC = b"\x89GSC"
VERSION = (2, 0)  # what the encoder writes
READ_MAJOR = (1, 2)  # the major versions the decoder reads: 1.x has no contexts (SPEC 5.6)
COLOR_SPACE_YCBCR601 = 0

# limits on every declared size (SPEC 4.3), checked before anything is allocated
MAX_SIDE = 1 << 16  # width and height
MAX_PIXELS = 1 << 26  # width * height (a 67-megapixel image: 8192 x 8192)
MAX_LAYERS = 16
MAX_SPLATS = 1 << 22
MAX_LEVELS = 4096  # largest alphabet of any attribute
MAX_PER_PATCH = 15  # splats in one patch: the counts alphabet has 16 symbols
MAX_PATCHES = 1 << 26  # patches of all layers' grids together: bounds the count symbols to decode

# fixed-point units of the stored values
BACKGROUND_UNIT = 1 << 12  # background colour in units of 1/4096
COLOR_UNIT = 1 << 16  # colour steps in units of 1/65536

# the entropy model (SPEC 5): blocks of 16, 16, 32, ... symbols, 24-bit probabilities
FIRST_BLOCK = 16
MAX_BLOCK = 4096
PRECISION = 24

# the contexts of format 2 (SPEC 5.6), each stream's used where its layer's flags (LAYR byte 3)
# have its bit: a patch count's, by the sum of its left, upper-left, upper
# and upper-right neighbours (0, 1, 2-3, 4-6, 7 or more); a minor gap's, by its major index's
# quarter of the scale levels; a colour's, by the sign of a colour already decoded
COUNT_CONTEXTS = np.array([0, 1, 2, 2, 3, 3, 3] + [4] * (4 * MAX_PER_PATCH - 6), np.int64)
GAP_CONTEXTS = 4
SIGN_CONTEXTS = 3  # negative, zero, positive
CONTEXT_BITS = {"counts": 1, "minor_gap": 2, "Y": 4, "Cb": 8, "Cr": 16}

# The largest ratio of a splat's axis variances a renderer uses (SPEC 7): the minor variance is
# raised to at least 2^-16 times the major one (axes at most 256:1), where float32 renderers agree.
MIN_VARIANCE_RATIO = 2.0**-16

# A splat's support (SPEC 7): weight exp(-q/2) >= 1/255, i.e. q <= Q_CUT.
Q_CUT = 2.0 * math.log(255.0)
# The largest float32 <= Q_CUT: for a float32 q, ``q <= Q_CUT_F32`` decides exactly ``q <= Q_CUT``.
# (Comparing a float32 q with Q_CUT rounded to float32 would round the cut-off up.)
Q_CUT_F32 = np.float32(Q_CUT) if float(np.float32(Q_CUT)) <= Q_CUT else np.nextafter(np.float32(Q_CUT), np.float32(0))
