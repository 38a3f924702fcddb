"""Reading the store: ``list`` instances, ``show`` one, print its ``history``."""

from __future__ import annotations

import argparse
from typing import Any, Optional

from ..errors import HistoryCorruptError, OrchestrationNotFoundError
from ..status import OrchestrationState, OrchestrationStatus
from . import views
from .common import EXIT_OK, EXIT_STORE, EXIT_USAGE, CLIError, open_client, parse_statuses, parse_time
from .output import Style, payload_text, print_json, print_safe, table, truncate

__all__ = ["register"]

#: characters of a payload shown in tables and ``show`` without ``--full``
LIST_WIDTH = 48
SHOW_WIDTH = 2000
HISTORY_WIDTH = 80


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``list``, ``show`` and ``history``."""
    ls = sub.add_parser("list", parents=parents, help="list instances (filters, paging)",
                        description="List instances, oldest first, one page at a time.")
    ls.add_argument("--status", action="append", metavar="STATUS",
                    help="only these statuses (repeat or comma-separate: running,failed)")
    ls.add_argument("--name", help="only this orchestrator")
    ls.add_argument("--prefix", metavar="ID_PREFIX", help="only instance ids starting with this")
    ls.add_argument("--created-after", metavar="TIME",
                    help="created at or after (ISO 8601, or an age: 30m, 2h, 7d)")
    ls.add_argument("--created-before", metavar="TIME", help="created at or before")
    ls.add_argument("--parent", metavar="ID", help="only sub-orchestrations of this instance")
    ls.add_argument("--page-size", type=int, default=50, help="instances per page (default 50)")
    ls.add_argument("--page-token", metavar="TOKEN", help="the next page (printed after a page)")
    ls.add_argument("--all", action="store_true", help="every page, not just one")
    ls.add_argument("--full", action="store_true", help="do not truncate payloads")
    ls.set_defaults(func=run_list)

    sh = sub.add_parser("show", parents=parents, help="an instance: state, payloads, failure",
                        description="Show an instance: state, input, output, custom status, "
                        "the failure with its stack trace, parent and children.")
    sh.add_argument("instance_id", metavar="ID")
    sh.add_argument("--full", action="store_true", help="do not truncate payloads")
    sh.set_defaults(func=run_show)

    hi = sub.add_parser("history", parents=parents, help="an instance's history events",
                        description="Print an instance's decoded history, one event a line.")
    hi.add_argument("instance_id", metavar="ID")
    hi.add_argument("--full", action="store_true", help="do not truncate payloads")
    hi.set_defaults(func=run_history)


# -- list ------------------------------------------------------------------------------------


def _payload_cell(v: Any) -> str:
    if isinstance(v, dict) and views.UNDECODABLE in v:
        return f"<undecodable: {v.get('error', '')}>"
    return payload_text(v)


def _time(dt: Any) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S") if dt is not None else ""


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "runtime_status": parse_statuses(args.status),
        "name": args.name,
        "instance_id_prefix": args.prefix,
        "created_time_from": parse_time(args.created_after) if args.created_after else None,
        "created_time_to": parse_time(args.created_before) if args.created_before else None,
    }


def run_list(args: argparse.Namespace) -> int:
    """Print one page (or ``--all`` pages) of instances."""
    if args.page_size < 1 or args.page_size > 10_000:
        raise CLIError("--page-size must be 1 to 10000", EXIT_USAGE)
    filters = _filters(args)
    states: list[OrchestrationState] = []
    token: Optional[str] = args.page_token
    with open_client(args) as client:
        while True:
            page = client.query_orchestrations(
                **filters, parent_instance_id=args.parent, page_size=args.page_size,
                continuation_token=token,
            )
            states.extend(page.states)
            token = page.continuation_token
            if not args.all or token is None:
                break
    if args.json:
        print_json({"instances": [views.state_record(s) for s in states],
                    "continuationToken": token})
        return EXIT_OK
    style = Style(args.color)
    width = 0 if args.full else LIST_WIDTH
    rows = [
        [s.instance_id, s.name, views.status_name(s.runtime_status), _time(s.created_at),
         _time(s.last_updated_at), truncate(views.summary_text(s), width)]
        for s in states
    ]
    if rows:
        table(["INSTANCE ID", "NAME", "STATUS", "CREATED (UTC)", "UPDATED (UTC)", "RESULT"], rows,
              style=style, colors=[None, None, lambda c: _status_color(c), None, None, None])
    n = len(rows)
    print(f"{n} instance{'s' if n != 1 else ''}" + (
        f"; next page: --page-token {token}" if token else ""))
    return EXIT_OK


def _status_color(name: str) -> Optional[str]:
    from .output import STATUS_COLORS

    return STATUS_COLORS.get(name.strip())


# -- show ------------------------------------------------------------------------------------


def _get(client: Any, instance_id: str) -> OrchestrationState:
    st = client.get_orchestration_state(instance_id)
    if st is None:
        raise CLIError(f"no instance {instance_id!r} in the store")
    return st


def run_show(args: argparse.Namespace) -> int:
    """Print one instance."""
    with open_client(args) as client:
        st = _get(client, args.instance_id)
        children = client.query_orchestrations(
            parent_instance_id=st.instance_id, page_size=1000, fetch_payloads=False
        ).states
    if args.json:
        rec = views.state_record(st)
        rec["children"] = views.children_of(children)
        print_json(rec)
        return EXIT_OK
    style = Style(args.color)
    width = 0 if args.full else SHOW_WIDTH
    rows = [
        ("Instance", st.instance_id),
        ("Name", st.name),
        ("Status", style.status(views.status_name(st.runtime_status))),
        ("Created", views.iso(st.created_at) or ""),
        ("Updated", views.iso(st.last_updated_at) or ""),
    ]
    if st.execution_id:
        rows.append(("Execution", st.execution_id))
    if st.parent_instance_id:
        rows.append(("Parent", st.parent_instance_id))
    for label, attr in (("Input", "input"), ("Output", "output"), ("Custom status", "custom_status")):
        rows.append((label, _block(views.state_value(st, attr), width, args.full)))
    for label, value in rows:
        print_safe(style(f"{label}:".ljust(15), "bold") + value)
    fd = st.failure_details
    if fd is not None:
        print_safe(style("Failure:", "bold") + f" {fd.error_type}: {fd.message}")
        inner = fd.inner_failure
        while inner is not None:
            print_safe(f"  caused by {inner.error_type}: {inner.message}")
            inner = inner.inner_failure
        if fd.stack_trace:
            print_safe(style("Stack trace:", "bold"))
            for line in fd.stack_trace.rstrip("\n").split("\n"):
                print_safe("  " + line)
    if children:
        print_safe(style(f"Children ({len(children)}):", "bold"))
        for c in children:
            print_safe(f"  {c.instance_id}  {c.name}  {style.status(views.status_name(c.runtime_status))}")
    return EXIT_OK


def _block(value: Any, width: int, full: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and views.UNDECODABLE in value:
        raw = value[views.UNDECODABLE]
        return (f"<cannot be decoded: {value.get('error', '')}> raw (base64): "
                f"{raw if full else truncate(raw, 80)}")
    text = payload_text(value, indent=2)
    if width and len(text) > width:
        return text[:width] + f"… ({len(text)} characters; --full shows all)"
    return text


# -- history ---------------------------------------------------------------------------------

_SKIP_FIELDS = frozenset({"eventType", "seq", "timestamp", "eventId"})


def run_history(args: argparse.Namespace) -> int:
    """Print the decoded events, one a line, with their times."""
    with open_client(args) as client:
        try:
            events = client.get_orchestration_history(args.instance_id)
        except OrchestrationNotFoundError:
            raise CLIError(f"no instance {args.instance_id!r} in the store") from None
        except HistoryCorruptError as e:
            raise CLIError(
                f"the history of {args.instance_id!r} cannot be decoded: {e}", EXIT_STORE
            ) from None
    records = [views.event_record(ev, seq=i) for i, ev in enumerate(events)]
    if args.json:
        print_json(records)
        return EXIT_OK
    style = Style(args.color)
    width = 0 if args.full else HISTORY_WIDTH
    rows = []
    for rec in records:
        details = []
        eid = rec.get("eventId")
        if isinstance(eid, int) and eid >= 0:
            details.append(f"#{eid}")
        for k, v in rec.items():
            if k in _SKIP_FIELDS or v is None or v == -1 or v is False:
                continue
            details.append(f"{k}={_payload_cell(v) if not isinstance(v, str) else v}")
        ts = (rec.get("timestamp") or "").replace("T", " ").rstrip("Z")
        rows.append([str(rec["seq"]), ts, rec["eventType"], truncate(" ".join(details), width)])
    table(["SEQ", "TIME (UTC)", "EVENT", "DETAILS"], rows, style=style,
          colors=[None, None, lambda c: _event_color(c), None])
    return EXIT_OK


def _event_color(name: str) -> Optional[str]:
    n = name.strip()
    if n.endswith("Failed") or n == "ExecutionTerminated":
        return "red"
    if n.endswith("Completed") or n == "TimerFired":
        return "green"
    if n.startswith("Orchestrator"):
        return "dim"
    return None
