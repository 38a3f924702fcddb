"""Changing the store: ``start``, ``raise-event``, ``terminate``, ``suspend``, ``resume``,
``restart`` and ``purge``.

Each checks the instance first and refuses what would silently do nothing (terminating a
finished instance, resuming one that is not suspended, purging a running one) with one line and
exit status 1, so a script learns that its command had no effect.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from ..errors import OrchestrationAlreadyExistsError, OrchestrationNotFoundError, PayloadError
from ..status import TERMINAL_STATUSES, OrchestrationState, OrchestrationStatus
from . import views
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    open_client,
    parse_json_arg,
    parse_statuses,
    parse_time,
)
from .output import Progress, payload_text, print_json, print_safe

__all__ = ["register"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the commands that change instances."""
    st = sub.add_parser("start", parents=parents, help="start an orchestration",
                        description="Start orchestrator NAME; prints the new instance id.")
    st.add_argument("name", metavar="NAME", help="the orchestrator's registered name")
    st.add_argument("--input", metavar="JSON", help="its input: JSON, @file or - (stdin)")
    st.add_argument("--id", dest="instance_id", metavar="ID", help="choose the instance id")
    st.add_argument("--module", metavar="MODULE[:ATTR]",
                    help="check NAME against the orchestrators this module registers")
    st.add_argument("--force", action="store_true",
                    help="start even when NAME is not known (no instance of it yet, no --module)")
    st.add_argument("--wait", type=float, metavar="SECONDS",
                    help="wait this long for it to finish and print its output")
    st.set_defaults(func=run_start)

    ev = sub.add_parser("raise-event", parents=parents, help="send an external event",
                        description="Send event NAME (with --data) to instance ID.")
    ev.add_argument("instance_id", metavar="ID")
    ev.add_argument("event_name", metavar="NAME")
    ev.add_argument("--data", metavar="JSON", help="the event's data: JSON, @file or - (stdin)")
    ev.set_defaults(func=run_raise_event)

    te = sub.add_parser("terminate", parents=parents, help="terminate a running instance")
    te.add_argument("instance_id", metavar="ID")
    te.add_argument("--reason", help="recorded as the instance's output")
    te.add_argument("--no-recursive", action="store_true",
                    help="leave its sub-orchestrations running")
    te.set_defaults(func=run_terminate)

    su = sub.add_parser("suspend", parents=parents, help="suspend a running instance")
    su.add_argument("instance_id", metavar="ID")
    su.add_argument("--reason")
    su.set_defaults(func=run_suspend)

    re_ = sub.add_parser("resume", parents=parents, help="resume a suspended instance")
    re_.add_argument("instance_id", metavar="ID")
    re_.add_argument("--reason")
    re_.set_defaults(func=run_resume)

    rs = sub.add_parser("restart", parents=parents,
                        help="run a finished instance again with its original input")
    rs.add_argument("instance_id", metavar="ID")
    rs.add_argument("--new-id", action="store_true",
                    help="as a new instance (the old one is kept; works while it runs)")
    rs.set_defaults(func=run_restart)

    pu = sub.add_parser(
        "purge", parents=parents, help="delete finished instances: one, or by filter",
        description="Delete a finished instance (ID), or every finished instance matching the "
        "filters, with their histories and sub-orchestrations.",
    )
    pu.add_argument("instance_id", metavar="ID", nargs="?")
    pu.add_argument("--status", action="append", metavar="STATUS",
                    help="only these finished statuses (default: completed, failed, terminated, canceled)")
    pu.add_argument("--name", help="only this orchestrator")
    pu.add_argument("--prefix", metavar="ID_PREFIX", help="only ids starting with this")
    pu.add_argument("--created-after", metavar="TIME", help="created at or after (ISO 8601 or 7d)")
    pu.add_argument("--created-before", metavar="TIME", help="created at or before")
    pu.add_argument("--all-finished", action="store_true",
                    help="no filter: every finished instance")
    pu.add_argument("--dry-run", action="store_true", help="only count what would go")
    pu.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    pu.add_argument("--no-recursive", action="store_true", help="keep sub-orchestrations")
    pu.set_defaults(func=run_purge)


def _get(client: Any, instance_id: str) -> OrchestrationState:
    st = client.get_orchestration_state(instance_id, fetch_payloads=False)
    if st is None:
        raise CLIError(f"no instance {instance_id!r} in the store")
    return st


def _done(args: argparse.Namespace, text: str, record: dict[str, Any]) -> int:
    if args.json:
        print_json(record)
    else:
        print_safe(text)
    return EXIT_OK


# -- start -----------------------------------------------------------------------------------


def _known_names(module: str) -> set[str]:
    from ..registry import default_registry
    from .worker import load_target

    reg = load_target(module) or default_registry
    return set(reg.orchestrator_names())


def run_start(args: argparse.Namespace) -> int:
    """Schedule a new instance."""
    value = parse_json_arg(args.input, "--input")
    with open_client(args, create=True) as client:
        if args.module:
            names = _known_names(args.module)
            if args.name not in names:
                raise CLIError(
                    f"unknown orchestrator {args.name!r}: {args.module} registers "
                    f"{', '.join(sorted(names)) or 'none'}"
                )
        elif not args.force:
            seen = sum(client.count_orchestrations(name=args.name).values())
            if not seen:
                raise CLIError(
                    f"unknown orchestrator {args.name!r}: no instance of it in the store "
                    f"(pass --module to check against your code, or --force)"
                )
        try:
            iid = client.schedule_new_orchestration(
                args.name, input=value, instance_id=args.instance_id
            )
        except OrchestrationAlreadyExistsError:
            raise CLIError(f"instance {args.instance_id!r} already exists") from None
        except PayloadError as e:
            raise CLIError(f"--input cannot be stored: {e}", EXIT_USAGE) from None
        except ValueError as e:
            raise CLIError(str(e), EXIT_USAGE) from None
        if args.wait is None:
            return _done(args, iid, {"instanceId": iid, "name": args.name})
        try:
            st = client.wait_for_orchestration_completion(iid, timeout=args.wait)
        except TimeoutError:
            raise CLIError(f"started {iid}; not finished after {args.wait:g} s") from None
    rec = views.state_record(st)
    if args.json:
        print_json(rec)
    else:
        print_safe(f"{iid} {rec['runtimeStatus']}: {payload_text(rec['output'])}")
    return EXIT_OK if st.runtime_status == OrchestrationStatus.COMPLETED else EXIT_FAILED


# -- events and lifecycle --------------------------------------------------------------------


def run_raise_event(args: argparse.Namespace) -> int:
    """Send an external event."""
    data = parse_json_arg(args.data, "--data")
    with open_client(args) as client:
        st = _get(client, args.instance_id)
        if st.runtime_status in TERMINAL_STATUSES:
            raise CLIError(
                f"instance {args.instance_id!r} is {views.status_name(st.runtime_status)}: "
                f"nothing will receive the event"
            )
        try:
            client.raise_orchestration_event(args.instance_id, args.event_name, data=data)
        except PayloadError as e:
            raise CLIError(f"--data cannot be stored: {e}", EXIT_USAGE) from None
        except ValueError as e:
            raise CLIError(str(e), EXIT_USAGE) from None
        except OrchestrationNotFoundError:
            raise CLIError(f"no instance {args.instance_id!r} in the store") from None
    return _done(args, f"raised {args.event_name!r} on {args.instance_id}",
                 {"instanceId": args.instance_id, "event": args.event_name})


def run_terminate(args: argparse.Namespace) -> int:
    """Terminate a running instance."""
    with open_client(args) as client:
        st = _get(client, args.instance_id)
        if st.runtime_status in TERMINAL_STATUSES:
            raise CLIError(
                f"instance {args.instance_id!r} already {views.status_name(st.runtime_status)}"
            )
        client.terminate_orchestration(
            args.instance_id, output=args.reason, recursive=not args.no_recursive
        )
    return _done(args, f"terminating {args.instance_id}", {"instanceId": args.instance_id,
                                                           "action": "terminate"})


def run_suspend(args: argparse.Namespace) -> int:
    """Suspend a running instance."""
    with open_client(args) as client:
        st = _get(client, args.instance_id)
        if st.runtime_status not in (OrchestrationStatus.RUNNING, OrchestrationStatus.PENDING):
            raise CLIError(
                f"instance {args.instance_id!r} is {views.status_name(st.runtime_status)}: "
                f"only running instances can be suspended"
            )
        client.suspend_orchestration(args.instance_id, reason=args.reason)
    return _done(args, f"suspending {args.instance_id}", {"instanceId": args.instance_id,
                                                          "action": "suspend"})


def run_resume(args: argparse.Namespace) -> int:
    """Resume a suspended instance."""
    with open_client(args) as client:
        st = _get(client, args.instance_id)
        if st.runtime_status != OrchestrationStatus.SUSPENDED:
            raise CLIError(
                f"instance {args.instance_id!r} is {views.status_name(st.runtime_status)}, "
                f"not Suspended"
            )
        client.resume_orchestration(args.instance_id, reason=args.reason)
    return _done(args, f"resuming {args.instance_id}", {"instanceId": args.instance_id,
                                                        "action": "resume"})


def run_restart(args: argparse.Namespace) -> int:
    """Start the instance's orchestrator again with its original input."""
    with open_client(args) as client:
        _get(client, args.instance_id)
        try:
            iid = client.restart_orchestration(
                args.instance_id, restart_with_new_instance_id=args.new_id
            )
        except OrchestrationAlreadyExistsError:
            raise CLIError(
                f"instance {args.instance_id!r} is still running: restart it in place once it "
                f"finished, or pass --new-id"
            ) from None
        except OrchestrationNotFoundError:
            raise CLIError(f"no instance {args.instance_id!r} in the store") from None
    return _done(args, iid, {"instanceId": iid, "restartedFrom": args.instance_id})


# -- purge -----------------------------------------------------------------------------------


def run_purge(args: argparse.Namespace) -> int:
    """Purge one finished instance, or every finished one matching the filters."""
    filtered = any([args.status, args.name, args.prefix, args.created_after,
                    args.created_before, args.all_finished])
    if args.instance_id is not None:
        if filtered:
            raise CLIError("purge takes an ID or filters, not both", EXIT_USAGE)
        return _purge_one(args)
    if not filtered:
        raise CLIError(
            "purge what? give an ID, filters (--status, --name, --prefix, --created-before, "
            "--created-after) or --all-finished", EXIT_USAGE,
        )
    statuses = parse_statuses(args.status) or sorted(TERMINAL_STATUSES)
    running = [views.status_name(s) for s in statuses if s not in TERMINAL_STATUSES]
    if running:
        raise CLIError(f"only finished instances can be purged, not {', '.join(running)}",
                       EXIT_USAGE)
    created_from = parse_time(args.created_after) if args.created_after else None
    created_to = parse_time(args.created_before) if args.created_before else None
    with open_client(args) as client:
        ids: list[str] = []
        token: Optional[str] = None
        while True:
            page = client.query_orchestrations(
                runtime_status=statuses, name=args.name, instance_id_prefix=args.prefix,
                created_time_from=created_from, created_time_to=created_to, page_size=1000,
                continuation_token=token, fetch_payloads=False,
            )
            ids.extend(s.instance_id for s in page.states)
            token = page.continuation_token
            if token is None:
                break
        if args.dry_run:
            return _done(args, f"would purge {len(ids)} instance{'s' if len(ids) != 1 else ''}",
                         {"matched": len(ids), "purged": 0, "dryRun": True})
        if ids and not args.yes:
            _confirm(len(ids))
        progress = Progress(len(ids), "purging")
        purged = 0
        for iid in ids:
            purged += client.purge_orchestration(iid, recursive=not args.no_recursive)
            progress.advance()
        progress.close()
    return _done(args, f"purged {purged} instance{'s' if purged != 1 else ''}",
                 {"matched": len(ids), "purged": purged})


def _confirm(n: int) -> None:
    if not sys.stdin.isatty():
        raise CLIError(f"refusing to purge {n} instances without --yes (standard input is not "
                       f"a terminal to ask)", EXIT_USAGE)
    sys.stderr.write(f"purge {n} instance{'s' if n != 1 else ''} and their histories? [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CLIError("nothing purged")


def _purge_one(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        st = _get(client, args.instance_id)
        if st.runtime_status not in TERMINAL_STATUSES:
            raise CLIError(
                f"instance {args.instance_id!r} is {views.status_name(st.runtime_status)}: "
                f"terminate it first"
            )
        n = client.purge_orchestration(args.instance_id, recursive=not args.no_recursive)
    return _done(args, f"purged {n} instance{'s' if n != 1 else ''}",
                 {"matched": 1, "purged": n})
