"""Passive OpenMP waiting, chosen before torch loads its OpenMP runtime.

torch's OpenMP threads spin for a while after each parallel op. The encoder alternates
torch ops with numba kernels on the same cores, so the spinning threads steal the
kernels' time: on 2 cores, encoding kodim01 at quality 50 took 28.9 and 31.9 s in two
runs with spinning, 26.1 and 26.3 s without (same output bytes). libgomp reads the policy once, when it loads,
so this module must be imported before torch; a value the user set wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
