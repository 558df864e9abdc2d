"""Replay the fuzz seed corpus and every kept finding through the fuzz targets: each input
ends in success or GscError, within the time bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fuzz import targets

ROOT = Path(__file__).resolve().parent.parent
CASES = [(p.parent.name, p) for p in sorted((ROOT / "fuzz" / "corpus").glob("*/*"))]
CASES += [(p.name.split("-")[0], p) for p in sorted((ROOT / "tests" / "fuzz_regressions").glob("*-*"))]


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_replay(target: str, path: Path) -> None:
    data = path.read_bytes()
    start = time.perf_counter()
    targets.outcome(targets.TARGETS[target], data)
    targets.outcome(targets.TARGETS[target], targets.repair_crcs(data))
    assert time.perf_counter() - start < 10.0


def test_repair_crcs_makes_mutations_reach_the_decoder() -> None:
    from gscodec import GscError, decode_splats

    data = bytearray((ROOT / "bitstream" / "conformance" / "typical" / "input.gsc").read_bytes())
    data[60] ^= 0x55  # inside the first LAYR payload
    with pytest.raises(GscError, match="CRC"):
        decode_splats(bytes(data))
    try:
        decode_splats(targets.repair_crcs(bytes(data)))
    except GscError as exc:
        assert "CRC" not in str(exc)
