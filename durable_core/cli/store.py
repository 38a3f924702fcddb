"""``durable-core migrate``: bring the store's schema up to date (creating it if needed)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, store_url
from .output import print_json

__all__ = ["register"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``migrate``."""
    m = sub.add_parser("migrate", parents=parents, help="create or upgrade the store's schema",
                       description="Bring the store's schema up to this durable_core's version "
                       "(idempotent; creates an empty store where there is none).")
    m.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    """Run the backend's migrations; print the versions before and after."""
    from ..backends import open_backend

    url = store_url(args)
    backend = open_backend(url)  # opening runs the migrations; it says what it found
    try:
        before = backend.opened_schema_version
        _, now = backend.migrate()
    finally:
        backend.close()
    if args.json:
        print_json({"store": url, "versionBefore": before, "versionNow": now})
    elif before == now:
        print(f"{url}: schema at version {now}, nothing to do")
    else:
        print(f"{url}: schema migrated from version {before} to {now}")
    return EXIT_OK
