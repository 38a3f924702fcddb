"""History events: what the runtime records for every orchestration instance.

Every event is an immutable ``NamedTuple`` whose first two fields are ``event_id`` (the
orchestrator's sequence number for events that answer or record an action, ``-1`` where there
is none) and ``timestamp`` (UTC, integer microseconds since the Unix epoch; ``.time`` gives an
aware ``datetime``). Payload fields (``input``, ``result``) are opaque ``bytes`` produced by the
data converter, or ``None``.

The binary codec (``encode``, ``encode_records``, ``decode``) is implemented in C and in a
pure-Python twin that produce identical bytes; :mod:`durable_core._impl` chooses which one runs.

Each class carries ``EVENT_TYPE``, its stable numeric tag in the binary format: never renumber.

Fields added to an event after it first shipped are optional and trailing (``trace_context``
of :class:`ExecutionStarted`, ``version`` of :class:`SubOrchestrationInstanceCreated`): events
stored before they existed decode with their defaults, and an event that leaves them at their
defaults encodes to the same bytes as before (see the format spec in ``_codec_py``).
"""

from __future__ import annotations

import time as _time
from datetime import datetime, timezone
from typing import Mapping, NamedTuple, Optional, Union

__all__ = [
    "FailureDetails",
    "ExecutionStarted",
    "ExecutionCompleted",
    "ExecutionTerminated",
    "ExecutionSuspended",
    "ExecutionResumed",
    "ContinueAsNew",
    "OrchestratorStarted",
    "OrchestratorCompleted",
    "TaskScheduled",
    "TaskCompleted",
    "TaskFailed",
    "SubOrchestrationInstanceCreated",
    "SubOrchestrationInstanceCompleted",
    "SubOrchestrationInstanceFailed",
    "TimerCreated",
    "TimerFired",
    "EventRaised",
    "EventSent",
    "PatchMarker",
    "HistoryEvent",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "encode",
    "encode_records",
    "decode",
    "decode_records",
    "to_datetime",
    "from_datetime",
    "utc_now_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_datetime(us: int) -> datetime:
    """Microseconds since the Unix epoch (UTC) -> aware UTC ``datetime``."""
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=us)


def from_datetime(dt: datetime) -> int:
    """Aware ``datetime`` (or naive, taken as UTC) -> microseconds since the Unix epoch."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def utc_now_us() -> int:
    """The current time as microseconds since the Unix epoch."""
    return _time.time_ns() // 1000


class FailureDetails(NamedTuple):
    """Why a task or orchestration failed: error type, message, stack trace, inner failure."""

    error_type: str
    message: str
    stack_trace: Optional[str] = None
    inner_failure: Optional["FailureDetails"] = None
    is_non_retriable: bool = False


class ExecutionStarted(NamedTuple):
    """First event of every execution: which orchestrator, its input and its parentage.

    ``version`` is the orchestration version the execution runs (``ctx.version``);
    ``trace_context`` a W3C trace context (``traceparent``, optionally ``;tracestate``) that the
    engine carries without reading it (added later: trailing, optional).
    """

    event_id: int
    timestamp: int
    name: str
    instance_id: str
    input: Optional[bytes] = None
    version: Optional[str] = None
    parent_instance_id: Optional[str] = None
    parent_task_id: int = -1
    scheduled_start_time: Optional[int] = None
    tags: Optional[Mapping[str, str]] = None
    execution_id: Optional[str] = None
    trace_context: Optional[str] = None
    EVENT_TYPE = 1

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class ExecutionCompleted(NamedTuple):
    """Last event of an execution: final status (an ``OrchestrationStatus`` value) and outcome."""

    event_id: int
    timestamp: int
    status: int
    result: Optional[bytes] = None
    failure_details: Optional[FailureDetails] = None
    EVENT_TYPE = 2

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class ExecutionTerminated(NamedTuple):
    """The instance was terminated by a client; ``input`` is the serialized reason/output."""

    event_id: int
    timestamp: int
    input: Optional[bytes] = None
    recurse: bool = False
    EVENT_TYPE = 3

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class ExecutionSuspended(NamedTuple):
    """The instance was suspended; new events are buffered until it is resumed."""

    event_id: int
    timestamp: int
    input: Optional[bytes] = None
    EVENT_TYPE = 4

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class ExecutionResumed(NamedTuple):
    """A suspended instance was resumed."""

    event_id: int
    timestamp: int
    input: Optional[bytes] = None
    EVENT_TYPE = 5

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class ContinueAsNew(NamedTuple):
    """The orchestrator called ``continue_as_new``; ``input`` starts the next execution."""

    event_id: int
    timestamp: int
    input: Optional[bytes] = None
    EVENT_TYPE = 6

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class OrchestratorStarted(NamedTuple):
    """Marks the start of one episode; its timestamp is ``ctx.current_utc_datetime``."""

    event_id: int
    timestamp: int
    EVENT_TYPE = 7

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class OrchestratorCompleted(NamedTuple):
    """Marks the end of one episode."""

    event_id: int
    timestamp: int
    EVENT_TYPE = 8

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class TaskScheduled(NamedTuple):
    """The orchestrator scheduled activity ``name``; ``event_id`` is its sequence number."""

    event_id: int
    timestamp: int
    name: str
    input: Optional[bytes] = None
    EVENT_TYPE = 9

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class TaskCompleted(NamedTuple):
    """An activity returned; ``task_scheduled_id`` is the ``event_id`` of its TaskScheduled."""

    event_id: int
    timestamp: int
    task_scheduled_id: int
    result: Optional[bytes] = None
    EVENT_TYPE = 10

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class TaskFailed(NamedTuple):
    """An activity raised; ``task_scheduled_id`` is the ``event_id`` of its TaskScheduled."""

    event_id: int
    timestamp: int
    task_scheduled_id: int
    failure_details: Optional[FailureDetails] = None
    EVENT_TYPE = 11

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class SubOrchestrationInstanceCreated(NamedTuple):
    """The orchestrator started a child orchestration; ``event_id`` is its sequence number.

    ``version`` is the child's orchestration version (added later: trailing, optional).
    """

    event_id: int
    timestamp: int
    name: str
    instance_id: str
    input: Optional[bytes] = None
    version: Optional[str] = None
    EVENT_TYPE = 12

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class SubOrchestrationInstanceCompleted(NamedTuple):
    """A child orchestration completed with ``result``."""

    event_id: int
    timestamp: int
    task_scheduled_id: int
    result: Optional[bytes] = None
    EVENT_TYPE = 13

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class SubOrchestrationInstanceFailed(NamedTuple):
    """A child orchestration failed."""

    event_id: int
    timestamp: int
    task_scheduled_id: int
    failure_details: Optional[FailureDetails] = None
    EVENT_TYPE = 14

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class TimerCreated(NamedTuple):
    """The orchestrator created a durable timer due at ``fire_at`` (µs since the epoch)."""

    event_id: int
    timestamp: int
    fire_at: int
    EVENT_TYPE = 15

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class TimerFired(NamedTuple):
    """A durable timer fired; ``timer_id`` is the ``event_id`` of its TimerCreated."""

    event_id: int
    timestamp: int
    fire_at: int
    timer_id: int
    EVENT_TYPE = 16

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class EventRaised(NamedTuple):
    """An external event arrived (names match case-insensitively)."""

    event_id: int
    timestamp: int
    name: str
    input: Optional[bytes] = None
    EVENT_TYPE = 17

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class EventSent(NamedTuple):
    """The orchestrator sent event ``name`` to ``instance_id``; ``event_id`` is its sequence."""

    event_id: int
    timestamp: int
    instance_id: str
    name: str
    input: Optional[bytes] = None
    EVENT_TYPE = 18

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


class PatchMarker(NamedTuple):
    """``ctx.is_patched(patch_id)`` (or ``deprecate_patch``) first answered True in a new step:
    replays of this execution take the patched code path.

    It takes no sequence number (``event_id`` is -1), so adding or removing a patch check
    never shifts the sequence numbers of the actions around it.
    """

    event_id: int
    timestamp: int
    patch_id: str
    EVENT_TYPE = 19

    @property
    def time(self) -> datetime:
        return to_datetime(self.timestamp)


HistoryEvent = Union[
    ExecutionStarted,
    ExecutionCompleted,
    ExecutionTerminated,
    ExecutionSuspended,
    ExecutionResumed,
    ContinueAsNew,
    OrchestratorStarted,
    OrchestratorCompleted,
    TaskScheduled,
    TaskCompleted,
    TaskFailed,
    SubOrchestrationInstanceCreated,
    SubOrchestrationInstanceCompleted,
    SubOrchestrationInstanceFailed,
    TimerCreated,
    TimerFired,
    EventRaised,
    EventSent,
    PatchMarker,
]

#: Every event class, in ``EVENT_TYPE`` order.
EVENT_CLASSES: tuple[type, ...] = (
    ExecutionStarted,
    ExecutionCompleted,
    ExecutionTerminated,
    ExecutionSuspended,
    ExecutionResumed,
    ContinueAsNew,
    OrchestratorStarted,
    OrchestratorCompleted,
    TaskScheduled,
    TaskCompleted,
    TaskFailed,
    SubOrchestrationInstanceCreated,
    SubOrchestrationInstanceCompleted,
    SubOrchestrationInstanceFailed,
    TimerCreated,
    TimerFired,
    EventRaised,
    EventSent,
    PatchMarker,
)
#: ``EVENT_TYPE`` -> class.
EVENT_TYPES: dict[int, type] = {cls.EVENT_TYPE: cls for cls in EVENT_CLASSES}  # type: ignore[attr-defined]

# --- the codec (C or twin) -------------------------------------------------------------------
# CODEC-SECTION: owned by the codec implementation; binds encode / encode_records / decode.
from . import _impl  # noqa: E402  (the codec needs the classes above)

#: ``encode(events) -> bytes``: a complete history (header + one record per event).
encode = _impl.pick("encode", "durable_core._codec_py")
#: ``encode_records(events) -> bytes``: records only, to append to an existing history.
encode_records = _impl.pick("encode_records", "durable_core._codec_py")
#: ``decode(data, *, lenient=False) -> list``: a complete history back into events.
decode = _impl.pick("decode", "durable_core._codec_py")
#: ``decode_records(data, *, lenient=False) -> list``: headerless records back into events.
decode_records = _impl.pick("decode_records", "durable_core._codec_py")
if _impl.core is not None:
    # Hand the C codec the classes it builds on decode and accepts on encode.
    _impl.core._codec_register(EVENT_CLASSES, FailureDetails)
