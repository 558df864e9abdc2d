"""Write the seed corpus (fuzz/corpus/<target>/): ``python -m fuzz.make_corpus``.

container and decode: the conformance streams and three small encodes; entropy: streams
coded by `gscodec.format.entropy.StreamEncoder` in the entropy target's input layout.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

import gscodec
from gscodec.format.entropy import StreamEncoder

from .targets import entropy_streams

ROOT = Path(__file__).resolve().parent / "corpus"
CONFORMANCE = Path(__file__).resolve().parent.parent / "bitstream" / "conformance"


def save(target: str, data: bytes) -> None:
    folder = ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main() -> None:
    streams = [p.read_bytes() for p in sorted(CONFORMANCE.glob("*/input.gsc"))]
    rng = np.random.default_rng(0)
    for h, w, q in ((8, 8, 50), (16, 24, 0), (12, 5, 100)):
        streams.append(gscodec.encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), quality=q, effort=0))
    for data in streams:
        save("container", data)
        save("decode", data)
    for alphabet, count in ((2, 10), (16, 300), (300, 1000), (4096, 50)):
        enc = StreamEncoder()
        for n, size, contexts in entropy_streams(alphabet, count):
            enc.encode(rng.integers(0, size, n), size, contexts)
        head = (alphabet - 1).to_bytes(2, "little") + count.to_bytes(3, "little")
        save("entropy", head + enc.words().astype("<u4").tobytes())


if __name__ == "__main__":
    main()
