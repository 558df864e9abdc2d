"""``python -m gscodec``: the same as the ``gscodec`` command (see `gscodec.cli`)."""

from .cli import main

raise SystemExit(main())
