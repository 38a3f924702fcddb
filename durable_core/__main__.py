"""``python -m durable_core``: the command line (:mod:`durable_core.cli`)."""

from __future__ import annotations

import sys

from .cli import main
from .cli.worker import load_target

__all__ = ["main", "load_target"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
