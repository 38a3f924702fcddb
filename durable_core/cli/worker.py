"""``durable-core worker MODULE[:ATTR]``: serve a module's orchestrators and activities.

``MODULE`` is imported so that its ``@dc.orchestrator`` / ``@dc.activity`` decorators register
their functions; ``ATTR``, if given, names a :class:`~durable_core.registry.Registry` in it (or
an object with a ``registry`` attribute) to serve instead of the default registry. The worker
runs until SIGINT/SIGTERM and then stops gracefully.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from .common import EXIT_OK, EXIT_USAGE, CLIError, store_url

__all__ = ["register", "load_target"]


def load_target(spec: str) -> Any:
    """Import ``module[:attr]``; return the registry to serve (``None``: the default one)."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name:
        raise CLIError(f"bad target {spec!r}: expected module or module:attr", EXIT_USAGE)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise CLIError(f"cannot import {mod_name!r}: {e}", EXIT_USAGE) from None
    if not attr:
        return None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"{mod_name!r} has no attribute {attr!r}", EXIT_USAGE) from None
    from ..registry import Registry

    if isinstance(obj, Registry):
        return obj
    reg = getattr(obj, "registry", None)
    if isinstance(reg, Registry):
        return reg
    # a decorated function or anything else: its module's decorators registered it already
    return None


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` command."""
    w = sub.add_parser(
        "worker", parents=parents, help="run a worker for the orchestrations of a module",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    w.add_argument("target", metavar="MODULE[:ATTR]", help="module or module:attr (a Registry) to import")
    w.add_argument("--activities", type=int, default=16, help="max concurrent activities")
    w.add_argument("--orchestrations", type=int, default=100,
                   help="max instances replayed per batch")
    w.add_argument("--lease-seconds", type=float, default=None,
                   help="how long a claim on work lasts without a heartbeat")
    w.add_argument("--version", dest="worker_version", default=None,
                   help="this worker's orchestration version (where the registry gives none)")
    w.add_argument("--version-match", choices=["none", "strict", "current_or_older"],
                   default="none", help="which instance versions to run (default: all)")
    w.add_argument("--on-version-mismatch", choices=["reject", "fail"], default="reject",
                   help="leave other versions for another worker (default) or fail them")
    w.add_argument("--log-level", default="INFO")
    w.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    registry = load_target(args.target)
    from ..versioning import VersionFailure, VersioningOptions, VersionMatch
    from ..worker import Worker

    url = store_url(args)
    worker = Worker(
        url,
        registry=registry,
        max_concurrent_activities=args.activities,
        max_concurrent_orchestrations=args.orchestrations,
        lease_seconds=args.lease_seconds,
        versioning=VersioningOptions(
            version=args.worker_version, match=VersionMatch(args.version_match),
            on_mismatch=VersionFailure(args.on_version_mismatch)),
    )
    logging.getLogger("durable_core").info(
        "worker %s serving %s on %s", worker.owner, args.target, url
    )
    worker.run_sync()
    return EXIT_OK
