"""The benchmarks' progress bar: tqdm on stderr, one bar per codec.

``with Progress(total, "jpeg") as bar: ... bar.update()``. On a terminal the bar redraws
in place with elapsed time and ETA; elsewhere (a log file) tqdm prints a line about
every 10 % (``mininterval`` scaled to the run).
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, label: str = "", stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        quiet_log = not stream.isatty()
        self.bar = tqdm(total=total, desc=label, file=stream, unit="item", dynamic_ncols=True,
                        mininterval=60.0 if quiet_log else 0.1, miniters=max(1, total // 10) if quiet_log else 1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
