"""On-disk cache of per-image, per-setting results of ``bench.rd``.

Layout: ``<root>/<dataset>/<codec>/q<quality>/<image>.json``, one small JSON
record per (codec, quality, image). A record is reused only if it was made
by the same codec version (``Codec.version()``), so results follow library
or gscodec code changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.schema import write


class ResultCache:
    """Per-image result records under ``root/dataset``."""

    def __init__(self, root: str | Path, dataset: str) -> None:
        self.root = Path(root) / dataset

    def path(self, codec: str, quality: int, image: str) -> Path:
        return self.root / codec / f"q{quality}" / f"{image}.json"

    def get(self, codec: str, quality: int, image: str, version: str) -> dict[str, Any] | None:
        """The cached record, or ``None`` if absent, unreadable or from another version."""
        p = self.path(codec, quality, image)
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return rec if rec.get("version") == version else None

    def put(self, record: dict[str, Any]) -> None:
        write(self.path(record["codec"], record["quality"], record["image"]), record)
