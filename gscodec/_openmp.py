"""Process-wide settings for the OpenMP runtime torch brings, made at ``import gscodec``.

1. Passive waiting, chosen before torch loads its OpenMP runtime. torch's OpenMP threads
   spin for a while after each parallel op. The encoder alternates torch ops with numba
   kernels on the same cores, so the spinning threads steal the kernels' time: on 2 cores,
   encoding kodim01 at quality 50 took 28.9 and 31.9 s in two runs with spinning, 26.1 and
   26.3 s without (same output bytes). libgomp reads the policy once, when it loads, so this
   module must be imported before torch; a value the user set wins.
2. Fork safety. A child forked after torch ran a multi-threaded op inherits an OpenMP pool
   whose threads do not exist in it, and its next parallel op waits for them forever (an
   encode in a ``multiprocessing`` "fork" worker hung that way). In a forked child, torch is
   set to one thread, which never enters the pool. torch is not imported for this: if the
   parent had not imported it, the child starts it fresh.
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _single_threaded_torch_after_fork() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_threaded_torch_after_fork)
