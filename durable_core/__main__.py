"""Command line: ``python -m durable_core worker module[:attr] --db sqlite:///durable.db``.

``module`` is imported so that its ``@dc.orchestrator`` / ``@dc.activity`` decorators register
their functions; ``attr``, if given, names a :class:`~durable_core.registry.Registry` in it (or
an object with a ``registry`` attribute) to serve instead of the default registry. The worker
runs until SIGINT/SIGTERM and then stops gracefully.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Optional, Sequence

from .backends import DEFAULT_URL

__all__ = ["main", "load_target"]


def load_target(spec: str) -> Any:
    """Import ``module[:attr]``; return the registry to serve (``None``: the default one)."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name:
        raise SystemExit(f"bad target {spec!r}: expected module or module:attr")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(mod_name)
    if not attr:
        return None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"{mod_name!r} has no attribute {attr!r}") from None
    from .registry import Registry

    if isinstance(obj, Registry):
        return obj
    reg = getattr(obj, "registry", None)
    if isinstance(reg, Registry):
        return reg
    # a decorated function or anything else: its module's decorators registered it already
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m durable_core`` and the ``durable-core`` script."""
    parser = argparse.ArgumentParser(
        prog="durable_core", description="durable_core: run a worker on a store."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a worker for the orchestrations of a module")
    w.add_argument("target", help="module or module:attr (a Registry) to import")
    w.add_argument("--db", default=os.environ.get("DURABLE_CORE_DB", DEFAULT_URL),
                   help="store URL (default: %(default)s)")
    w.add_argument("--activities", type=int, default=16, help="max concurrent activities")
    w.add_argument("--orchestrations", type=int, default=100,
                   help="max instances replayed per batch")
    w.add_argument("--lease-seconds", type=float, default=None,
                   help="how long a claim on work lasts without a heartbeat")
    w.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if args.command == "worker":
        registry = load_target(args.target)
        from .errors import DurableError
        from .worker import Worker

        try:
            worker = Worker(
                args.db,
                registry=registry,
                max_concurrent_activities=args.activities,
                max_concurrent_orchestrations=args.orchestrations,
                lease_seconds=args.lease_seconds,
            )
        except DurableError as exc:
            print(f"durable_core: {exc}", file=sys.stderr)
            return 1
        logging.getLogger("durable_core").info(
            "worker %s serving %s on %s", worker.owner, args.target, args.db
        )
        worker.run_sync()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
