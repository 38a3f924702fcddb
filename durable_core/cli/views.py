"""How an instance, its payloads and its history look to an operator: plain data, no framework.

The command line, the HTTP status documents and the dashboard show the same things -- a state,
its decoded payloads, the history events, the history as a timeline of spans -- so they share
this module. It imports nothing beyond durable_core itself (the CLI runs without the
``[fastapi]`` extra).

Decoding never raises: a payload the data converter cannot read becomes
``{"$undecodable": <base64 of the stored bytes>, "error": <why>}`` -- the operator still sees
that something is there and what it is -- instead of hiding the instance or failing the page.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional, Sequence

from .. import history as h
from ..status import OrchestrationState, OrchestrationStatus

__all__ = [
    "UNDECODABLE",
    "STATUS_NAMES",
    "status_name",
    "parse_status",
    "iso",
    "iso_us",
    "decode_payload",
    "state_value",
    "failure_record",
    "state_record",
    "event_record",
    "timeline",
    "summary_text",
    "children_of",
]

#: The key that marks a payload the data converter could not decode.
UNDECODABLE = "$undecodable"

#: The Durable Functions spelling of each status (``runtimeStatus`` in HTTP documents).
STATUS_NAMES: dict[OrchestrationStatus, str] = {
    OrchestrationStatus.PENDING: "Pending",
    OrchestrationStatus.RUNNING: "Running",
    OrchestrationStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
    OrchestrationStatus.SUSPENDED: "Suspended",
    OrchestrationStatus.COMPLETED: "Completed",
    OrchestrationStatus.FAILED: "Failed",
    OrchestrationStatus.TERMINATED: "Terminated",
    OrchestrationStatus.CANCELED: "Canceled",
}
_BY_NAME = {**{v.lower(): k for k, v in STATUS_NAMES.items()},
            **{k.name.lower(): k for k in OrchestrationStatus},
            "continued-as-new": OrchestrationStatus.CONTINUED_AS_NEW,
            "continued_as_new": OrchestrationStatus.CONTINUED_AS_NEW}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def status_name(status: OrchestrationStatus) -> str:
    """``Running``, ``Completed``, ... (the Durable Functions ``runtimeStatus`` spelling)."""
    return STATUS_NAMES[OrchestrationStatus(status)]


def parse_status(text: str) -> OrchestrationStatus:
    """A status from its name in any case (``running``, ``Completed``, ``CONTINUED_AS_NEW``);
    ValueError naming the choices otherwise."""
    st = _BY_NAME.get(text.strip().lower())
    if st is None:
        choices = ", ".join(STATUS_NAMES.values())
        raise ValueError(f"unknown status {text!r} (choose from {choices})")
    return st


def iso(dt: Optional[datetime]) -> Optional[str]:
    """ISO 8601 with ``Z`` for UTC (``None`` stays ``None``)."""
    if dt is None:
        return None
    s = dt.isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def iso_us(us: Optional[int]) -> Optional[str]:
    """Microseconds since the epoch as ISO 8601 UTC."""
    if us is None:
        return None
    return iso(_EPOCH + timedelta(microseconds=us))


def _converter(converter: Any) -> Any:
    if converter is None:
        from ..converter import default_converter

        return default_converter()
    return converter


def decode_payload(data: Optional[bytes], converter: Any = None) -> Any:
    """The decoded value of stored payload bytes, or an ``$undecodable`` marker; never raises."""
    if data is None:
        return None
    try:
        return _converter(converter).deserialize(data)
    except Exception as e:  # noqa: BLE001 - poisoned data is shown, not raised
        return {UNDECODABLE: base64.b64encode(bytes(data)).decode("ascii"), "error": _why(e)}


def _why(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises
        text = ""
    text = text.replace("\n", " ")[:300]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def state_value(state: OrchestrationState, attr: str) -> Any:
    """``state.input`` / ``.output`` / ``.custom_status`` decoded, or an ``$undecodable``
    marker when the stored bytes cannot be decoded."""
    try:
        return getattr(state, attr)
    except Exception as e:  # noqa: BLE001
        raw = getattr(state, "serialized_" + attr, None)
        if raw is None:
            return None
        return {UNDECODABLE: base64.b64encode(bytes(raw)).decode("ascii"), "error": _why(e)}


def failure_record(fd: Optional[h.FailureDetails]) -> Optional[dict[str, Any]]:
    """Failure details as JSON-ready data (inner failures nested)."""
    if fd is None:
        return None
    out: dict[str, Any] = {"errorType": fd.error_type, "message": fd.message}
    if fd.stack_trace:
        out["stackTrace"] = fd.stack_trace
    if fd.is_non_retriable:
        out["isNonRetriable"] = True
    if fd.inner_failure is not None:
        out["innerFailure"] = failure_record(fd.inner_failure)
    return out


def state_record(state: OrchestrationState, *, payloads: bool = True) -> dict[str, Any]:
    """An instance as JSON-ready data: what ``show --json`` prints and the dashboard shows."""
    rec: dict[str, Any] = {
        "instanceId": state.instance_id,
        "name": state.name,
        "runtimeStatus": status_name(state.runtime_status),
        "createdAt": iso(state.created_at),
        "lastUpdatedAt": iso(state.last_updated_at),
        "parentInstanceId": state.parent_instance_id,
        "executionId": state.execution_id,
    }
    if payloads:
        rec["input"] = state_value(state, "input")
        rec["output"] = state_value(state, "output")
        rec["customStatus"] = state_value(state, "custom_status")
    rec["failure"] = failure_record(state.failure_details)
    return rec


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


_TIME_FIELDS = frozenset({"timestamp", "fire_at", "scheduled_start_time"})


def event_record(ev: Any, converter: Any = None, *, seq: Optional[int] = None) -> dict[str, Any]:
    """One history event as JSON-ready data: ``eventType``, its fields in camelCase, times in
    ISO 8601, payloads decoded (``$undecodable`` when they cannot be)."""
    d: dict[str, Any] = {"eventType": type(ev).__name__}
    if seq is not None:
        d["seq"] = seq
    for f in getattr(ev, "_fields", ()):
        v = getattr(ev, f)
        if f in _TIME_FIELDS:
            if isinstance(v, int):
                v = iso_us(v)
        elif isinstance(v, (bytes, bytearray)):
            v = decode_payload(bytes(v), converter)
        elif isinstance(v, h.FailureDetails):
            v = failure_record(v)
        elif hasattr(v, "_asdict"):
            v = dict(v._asdict())
        elif f == "status" and isinstance(v, int) and type(ev) is h.ExecutionCompleted:
            try:
                v = status_name(OrchestrationStatus(v))
            except ValueError:
                pass
        d[_camel(f)] = v
    return d


# --------------------------------------------------------------------------------------------
# The history as a timeline
# --------------------------------------------------------------------------------------------


def timeline(
    events: Sequence[Any], *, running: bool = False, now_us: Optional[int] = None
) -> dict[str, Any]:
    """The history as spans: one per activity attempt, timer, event wait, sub-orchestration
    and suspension, from when it was scheduled to when it ended, plus the orchestration's own.

    Each span: ``id``, ``kind`` (``orchestration``, ``activity``, ``timer``, ``event``,
    ``suborchestration``, ``suspended``), ``name``, ``start`` / ``end`` (microseconds since the
    epoch; ``end`` is ``None`` while open), ``outcome`` (``completed``, ``failed``, ``fired``,
    ``received``, ``running``, ``pending``, ``abandoned``), ``startSeq`` / ``endSeq`` (indexes
    of the events in the history, to fetch their payloads), ``attempt`` (an activity or
    sub-orchestration scheduled again with the same name and input after a failure is a retry:
    attempt 2, 3, ...), ``due`` for timers, ``instanceId`` for sub-orchestrations.

    An event wait is not recorded when it begins, only when the event arrives: its span starts
    at the end of the episode before the arrival (``approximate`` is set) -- exact for a
    sequential wait, an underestimate when the wait ran beside other work. Work still open at
    the end is ``running`` when the instance is, ``abandoned`` otherwise (terminated or failed
    while it was out).
    """
    spans: list[dict[str, Any]] = []
    open_tasks: dict[int, dict[str, Any]] = {}  # activity / sub-orchestration by event_id
    open_timers: dict[int, dict[str, Any]] = {}
    failed_keys: dict[tuple[Any, ...], dict[str, Any]] = {}
    orch: Optional[dict[str, Any]] = None
    suspended: Optional[dict[str, Any]] = None
    last_episode_end: Optional[int] = None
    last_ts: Optional[int] = None

    def add(span: dict[str, Any]) -> dict[str, Any]:
        span["id"] = len(spans)
        spans.append(span)
        return span

    def task_span(kind: str, ev: Any, seq: int, key: tuple[Any, ...], **extra: Any) -> None:
        prev = failed_keys.pop(key, None)
        span = add({
            "kind": kind, "name": ev.name, "start": ev.timestamp, "end": None,
            "outcome": "running", "startSeq": seq, "endSeq": None,
            "attempt": prev["attempt"] + 1 if prev else 1, "key": key, **extra,
        })
        if prev is not None:
            span["retryOf"] = prev["id"]
        open_tasks[ev.event_id] = span

    def close_task(ev: Any, seq: int, ok: bool) -> None:
        span = open_tasks.pop(ev.task_scheduled_id, None)
        if span is None:
            return
        span["end"] = ev.timestamp
        span["endSeq"] = seq
        span["outcome"] = "completed" if ok else "failed"
        if not ok:
            failed_keys[span["key"]] = span

    for seq, ev in enumerate(events):
        t = type(ev)
        last_ts = ev.timestamp
        if t is h.ExecutionStarted:
            orch = add({"kind": "orchestration", "name": ev.name, "start": ev.timestamp,
                        "end": None, "outcome": "running", "startSeq": seq, "endSeq": None,
                        "attempt": 1})
            last_episode_end = ev.timestamp
        elif t is h.OrchestratorCompleted:
            last_episode_end = ev.timestamp
        elif t is h.TaskScheduled:
            task_span("activity", ev, seq, ("activity", ev.name, ev.input))
        elif t is h.TaskCompleted:
            close_task(ev, seq, True)
        elif t is h.TaskFailed:
            close_task(ev, seq, False)
        elif t is h.SubOrchestrationInstanceCreated:
            task_span("suborchestration", ev, seq, ("suborchestration", ev.name, ev.input),
                      instanceId=ev.instance_id)
        elif t is h.SubOrchestrationInstanceCompleted:
            close_task(ev, seq, True)
        elif t is h.SubOrchestrationInstanceFailed:
            close_task(ev, seq, False)
        elif t is h.TimerCreated:
            open_timers[ev.event_id] = add({
                "kind": "timer", "name": "timer", "start": ev.timestamp, "end": None,
                "outcome": "pending", "startSeq": seq, "endSeq": None, "attempt": 1,
                "due": ev.fire_at,
            })
        elif t is h.TimerFired:
            span = open_timers.pop(ev.timer_id, None)
            if span is not None:
                span["end"] = ev.timestamp
                span["endSeq"] = seq
                span["outcome"] = "fired"
        elif t is h.EventRaised:
            start = last_episode_end if last_episode_end is not None else ev.timestamp
            add({"kind": "event", "name": ev.name, "start": min(start, ev.timestamp),
                 "end": ev.timestamp, "outcome": "received", "startSeq": seq, "endSeq": seq,
                 "attempt": 1, "approximate": True})
        elif t is h.ExecutionSuspended:
            if suspended is None:
                suspended = add({"kind": "suspended", "name": "suspended", "start": ev.timestamp,
                                 "end": None, "outcome": "pending", "startSeq": seq,
                                 "endSeq": None, "attempt": 1})
        elif t is h.ExecutionResumed:
            if suspended is not None:
                suspended["end"] = ev.timestamp
                suspended["endSeq"] = seq
                suspended["outcome"] = "completed"
                suspended = None
        elif t in (h.ExecutionCompleted, h.ExecutionTerminated):
            if orch is not None:
                orch["end"] = ev.timestamp
                orch["endSeq"] = seq
                if t is h.ExecutionTerminated:
                    orch["outcome"] = "terminated"
                else:
                    orch["outcome"] = _execution_outcome(ev.status)
        elif t is h.ContinueAsNew:
            if orch is not None:
                orch["end"] = ev.timestamp
                orch["endSeq"] = seq
                orch["outcome"] = "continued"

    left = "running" if running else "abandoned"
    for span in spans:
        span.pop("key", None)
        if span["end"] is None:
            if span["kind"] == "timer":
                span["outcome"] = "pending" if running else "abandoned"
            elif span["kind"] == "suspended":
                span["outcome"] = "pending"
            else:
                span["outcome"] = left
    start = spans[0]["start"] if spans else None
    end = now_us if running and now_us is not None else last_ts
    return {"spans": spans, "start": start, "end": end, "events": len(events)}


def _execution_outcome(status: int) -> str:
    try:
        st = OrchestrationStatus(status)
    except ValueError:
        return "completed"
    if st == OrchestrationStatus.FAILED:
        return "failed"
    if st in (OrchestrationStatus.TERMINATED, OrchestrationStatus.CANCELED):
        return "terminated"
    return "completed"


def children_of(states: Iterable[OrchestrationState]) -> list[dict[str, Any]]:
    """Sub-orchestration states as short records (id, name, status) for links."""
    return [
        {"instanceId": s.instance_id, "name": s.name, "runtimeStatus": status_name(s.runtime_status)}
        for s in states
    ]


def summary_text(state: OrchestrationState) -> str:
    """One line that says how it went: the failure, the output or reason of a finished
    instance, the custom status (progress) of one still going."""
    import json

    s = state.runtime_status
    if s == OrchestrationStatus.FAILED and state.failure_details is not None:
        fd = state.failure_details
        return f"{fd.error_type}: {fd.message}"
    attr = "output" if s.is_terminal else "custom_status"
    v = state_value(state, attr)
    if v is None:
        return ""
    if isinstance(v, dict) and UNDECODABLE in v:
        return f"<undecodable: {v.get('error', '')}>"
    try:
        return json.dumps(v, ensure_ascii=False, default=repr)
    except (ValueError, TypeError):
        return repr(v)
