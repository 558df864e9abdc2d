"""Run a fuzz target: ``python -m fuzz TARGET [--structure-aware] [libFuzzer options] [corpus dirs]``.

TARGET is container, entropy or decode (`fuzz.targets`). ``--structure-aware`` repairs the
CRCs after each libFuzzer mutation. Every 100,000 inputs (and at the end, with ``-runs=N``)
a line gives the inputs so far by outcome, the inputs per second, the slowest call and the
peak memory. libFuzzer's own ``-timeout=5`` and ``-rss_limit_mb=1536`` (set here unless
given) turn a call over 5 s or a process over 1.5 GiB into a finding; findings are written
as crash-*/timeout-*/oom-* files: copy them to tests/fuzz_regressions/ (the test suite
replays that folder and the seed corpus, tests/test_fuzz_corpus.py).

Example (a long run, structure-aware, on the decoder):
    python -m fuzz decode --structure-aware -runs=100000 fuzz/corpus/decode
"""

from __future__ import annotations

import resource
import sys
import time
from collections import Counter

import atheris

with atheris.instrument_imports():
    import gscodec  # noqa: F401
    from fuzz import targets

REPORT_EVERY = 100_000


class Stats:
    def __init__(self, name: str, runs: int | None) -> None:
        self.name, self.runs = name, runs
        self.counts: Counter[str] = Counter()
        self.start = time.perf_counter()
        self.slowest = 0.0

    def record(self, result: str, seconds: float) -> None:
        self.counts[result] += 1
        self.slowest = max(self.slowest, seconds)
        n = sum(self.counts.values())
        if n % REPORT_EVERY == 0 or n == self.runs:
            self.report()

    def report(self) -> None:
        n = sum(self.counts.values())
        elapsed = time.perf_counter() - self.start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        print(f"[{self.name}] {n} inputs ({outcomes}); {n / elapsed:.0f} inputs/s; slowest call "
              f"{self.slowest:.3f} s; peak memory {peak:.0f} MiB", file=sys.stderr, flush=True)


def main() -> None:
    argv = list(sys.argv)
    if len(argv) < 2 or argv[1] not in targets.TARGETS:
        sys.exit(f"usage: python -m fuzz {{{','.join(targets.TARGETS)}}} [--structure-aware] [libFuzzer options]")
    name = argv.pop(1)
    aware = "--structure-aware" in argv
    argv = [a for a in argv if a != "--structure-aware"]
    for option in ("-timeout=5", "-rss_limit_mb=1536"):
        if not any(a.startswith(option.split("=")[0] + "=") for a in argv):
            argv.append(option)
    runs = next((int(a.split("=")[1]) for a in argv if a.startswith("-runs=")), None)
    target = targets.TARGETS[name]
    stats = Stats(name + (" (structure-aware)" if aware else ""), runs)

    def test_one(data: bytes) -> None:
        t0 = time.perf_counter()
        result = targets.outcome(target, data)
        stats.record(result, time.perf_counter() - t0)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return targets.repair_crcs(atheris.Mutate(data, max_size))

    atheris.Setup(argv, test_one, custom_mutator=mutator if aware else None)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
