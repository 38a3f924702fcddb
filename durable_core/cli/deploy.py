"""Safe deploys from the command line: ``replay`` and ``export``.

``durable-core replay MODULE[:ATTR] --store URL [--status RUNNING] [--name flow] [--file F]``
replays the stored histories (and any exported history files given) against the orchestrator
code in ``MODULE`` -- the code about to be deployed -- and prints where it departs from them;
it exits 1 on any break, so it can gate a deploy in CI. Nothing is written to the store.

``durable-core export ID [-o FILE]`` writes an instance's history to a file (default
``ID.history``) that ``replay`` and :func:`durable_core.testing.read_history_file` read: keep a
few real histories next to the tests of the code that made them.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from .common import EXIT_FAILED, EXIT_OK, CLIError, open_client, parse_statuses, store_url
from .output import print_json

__all__ = ["register"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``replay`` and ``export``."""
    r = sub.add_parser(
        "replay", parents=parents,
        help="replay stored histories against new code; exit 1 on any break",
        description=(__doc__ or "").split("\n\n")[1])
    r.add_argument("target", metavar="MODULE[:ATTR]",
                   help="module (or module:attr naming a Registry) with the new code")
    r.add_argument("--file", action="append", dest="files", default=[], metavar="FILE",
                   help="an exported history file to replay too (repeatable)")
    r.add_argument("--status", action="append", metavar="STATUS",
                   help="only instances with this status (repeatable, comma-separated)")
    r.add_argument("--name", help="only instances of this orchestrator")
    r.add_argument("--id", action="append", dest="ids", metavar="ID",
                   help="only this instance (repeatable)")
    r.add_argument("--no-store", action="store_true",
                   help="replay only the given files, not the store's histories")
    r.set_defaults(func=run_replay)

    e = sub.add_parser("export", parents=parents, help="write an instance's history to a file")
    e.add_argument("instance_id", metavar="ID")
    e.add_argument("-o", "--output", metavar="FILE",
                   help="where to write it (default: ID.history in this directory)")
    e.set_defaults(func=run_export)


def run_replay(args: argparse.Namespace) -> int:
    from ..testing.replay import replay
    from .worker import load_target

    registry = load_target(args.target)
    statuses = parse_statuses(args.status)
    for f in args.files:
        if not os.path.isfile(f):
            raise CLIError(f"no history file {f!r}")
    store = None if args.no_store else store_url(args)
    if store is not None:
        with open_client(args):  # the store must exist: a mistyped URL is an error
            pass
    report = replay(store=store, files=args.files, registry=registry, statuses=statuses,
                    name=args.name, instance_ids=args.ids)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _default_name(instance_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]", "_", instance_id) + ".history"


def run_export(args: argparse.Namespace) -> int:
    from ..testing.replay import write_history_file

    with open_client(args) as client:
        events = client.get_orchestration_history(args.instance_id)
    path = args.output or _default_name(args.instance_id)
    write_history_file(path, events)
    if args.json:
        print_json({"instanceId": args.instance_id, "file": os.path.abspath(path),
                    "events": len(events)})
    else:
        print(f"{args.instance_id}: {len(events)} events written to {path}")
    return EXIT_OK
