"""The replay engine: run orchestrator code against its history and collect the new actions.

One call of :meth:`OrchestrationExecutor.execute` is one *episode*: the old history is replayed
(``ctx.is_replaying`` is True), the new events are applied, and the result says what the store
must do -- the actions (activities to run, timers, sub-orchestrations, events to send, the
completion) and the exact events to append to the history (``new_history``: the new events,
a ``PatchMarker`` per patch first found applied in this episode, one event per action, then
``OrchestratorCompleted``).

A :class:`StickySession` keeps the instance's code suspended between episodes: the next episode
applies only its new events (no replay) and gives exactly what a full replay would. The runtime
caches sessions by instance id.

While an instance is suspended (``ExecutionSuspended``), the inputs that would run its code --
activity and sub-orchestration outcomes, timer firings, external events -- are held back in
arrival order and applied at ``ExecutionResumed``; ``ExecutionTerminated`` applies at once.

The per-event work runs in C (``csrc/replay.c``) or in the pure-Python twin
(``_engine_py``); :mod:`durable_core._impl` picks one. Deviation from the Durable Task SDK: a
retried activity or sub-orchestration gets a new sequence number for each attempt (after the
back-off timer's), instead of reusing the first one.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Union

from . import _impl
from . import history as h
from . import protocol
from .context import OrchestrationContext
from .converter import DataConverter, JsonDataConverter, default_converter
from .registry import Registry, default_registry
from .status import OrchestrationStatus
from .task import (
    CompleteOrchestration,
    CreateSubOrchestration,
    CreateTimer,
    ScheduleTask,
    SendEvent,
)

__all__ = [
    "OrchestrationExecutor",
    "ExecutionResult",
    "StickySession",
    "Action",
    "ScheduleTask",
    "CreateTimer",
    "CreateSubOrchestration",
    "SendEvent",
    "CompleteOrchestration",
    "action_event",
]

Action = Union[ScheduleTask, CreateTimer, CreateSubOrchestration, SendEvent, CompleteOrchestration]
Events = Union[bytes, bytearray, memoryview, Sequence[Any]]

#: The engine core in use: the C type, or the twin's class.
ContextCore = _impl.pick("ContextCore", "durable_core._engine_py")


def _register_c_engine() -> None:
    """Hand the C engine (when built) its classes; make its tasks awaitable and ``Task``s.

    Done for the C variant even when the twin is selected, so tests can run both.
    """
    from . import _engine_py
    from .task import Task

    for register in _impl.implementations("_replay_register", "durable_core._engine_py").values():
        # the C core compares every constant with the one it was compiled with (ImportError)
        register(h.EVENT_CLASSES, ScheduleTask, dict(protocol.CONSTANTS))
    c_task = _impl.implementations("Task", "durable_core._engine_py").get("c")
    if c_task is not None:
        # ``await task`` yields the task itself to the engine and returns what it sends back
        c_task.__await__ = _engine_py.Task.__await__
        Task.register(c_task)


_register_c_engine()

_context_classes: dict[type, type] = {}


def _context_class(core: type) -> type:
    """The concrete context class for an engine core: core (hot path) + policy."""
    cls = _context_classes.get(core)
    if cls is None:
        cls = type("OrchestrationContext", (core, OrchestrationContext),
                   {"__module__": __name__, "__doc__": OrchestrationContext.__doc__})
        _context_classes[core] = cls
    return cls


def _as_events(data: Events, what: str) -> Sequence[Any]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
        if not buf:
            return []
        if buf[:3] == b"DCH":
            return h.decode(buf)
        return h.decode_records(buf)
    if isinstance(data, (list, tuple)):
        return data  # type: ignore[return-value]  # only read, never changed
    if isinstance(data, str):
        raise TypeError(f"{what} must be encoded bytes or a sequence of events, not str")
    try:
        return list(data)
    except TypeError:
        raise TypeError(f"{what} must be encoded bytes or a sequence of events") from None


def action_event(action: Any, timestamp: int) -> Any:
    """The history event that records ``action`` (event_id = its sequence number)."""
    cls = type(action)
    if cls is ScheduleTask:
        return h.TaskScheduled(action.id, timestamp, action.name, action.input)
    if cls is CreateTimer:
        return h.TimerCreated(action.id, timestamp, action.fire_at)
    if cls is CreateSubOrchestration:
        return h.SubOrchestrationInstanceCreated(action.id, timestamp, action.name,
                                                 action.instance_id, action.input,
                                                 action.version)
    if cls is SendEvent:
        return h.EventSent(action.id, timestamp, action.instance_id, action.name, action.input)
    if cls is CompleteOrchestration:
        return h.ExecutionCompleted(action.id, timestamp, int(action.status), action.result,
                                    action.failure_details)
    raise TypeError(f"not an action: {cls.__name__}")


class ExecutionResult(NamedTuple):
    """What one episode produced (see the module docs)."""

    actions: list[Any]
    new_history: list[Any]
    custom_status: Optional[bytes]
    completion: Optional[CompleteOrchestration]
    is_suspended: bool
    session: Optional["StickySession"]


class StickySession:
    """A live instance between episodes; :meth:`execute` applies only new events.

    Valid only while the stored history has ``history_length`` events (the runtime checks).
    Not thread-safe: one episode at a time.
    """

    __slots__ = ("_ctx", "_instance_id", "history_length", "_closed")

    def __init__(self, ctx: Any, instance_id: str, history_length: int) -> None:
        self._ctx = ctx
        self._instance_id = instance_id
        self.history_length = history_length
        self._closed = False

    @property
    def instance_id(self) -> str:
        """The instance this session belongs to."""
        return self._instance_id

    def execute(self, new_events: Events) -> ExecutionResult:
        """Apply ``new_events`` (encoded records or events); same result as a full replay."""
        if self._closed:
            raise RuntimeError("this session has ended (its instance completed or it was used up)")
        events = _as_events(new_events, "new_events")
        self._closed = True  # a session serves exactly one next episode
        return _episode(self._ctx, self._instance_id, [], events, self.history_length)

    def close(self) -> None:
        """Drop the suspended code (it is closed, running its ``finally`` blocks)."""
        self._closed = True
        ctx, self._ctx = self._ctx, None
        gen = getattr(ctx, "_gen", None)
        if gen is not None:
            try:
                gen.close()
            except BaseException:  # noqa: BLE001 - user code in finally blocks, sys.exit too
                pass


def _episode(ctx: Any, instance_id: str, old: Sequence[Any], new: Sequence[Any],
             base_length: int) -> ExecutionResult:
    if old:
        ctx._run(old, True)
    used = ctx._run(new, False)
    actions = ctx._take_actions()
    completion = ctx._completion
    if completion is not None:
        if completion.status == OrchestrationStatus.CONTINUED_AS_NEW:
            carry = ctx._carryover(new[used:])
            if carry:
                completion = completion._replace(carryover_events=carry)
        actions.append(completion)
    ts = ctx._now_us
    for ev in new:
        if type(ev) is h.OrchestratorStarted:
            ts = ev.timestamp
            break
    new_history = list(new)
    patches = ctx.__dict__.pop("_new_patches", None)
    if patches:  # is_patched answered True in this step: replays take the same path
        new_history.extend(h.PatchMarker(-1, ts, p) for p in patches)
    new_history.extend(action_event(a, ts) for a in actions)
    new_history.append(h.OrchestratorCompleted(-1, ts))
    session = None
    if completion is None:
        session = StickySession(ctx, instance_id, base_length + len(old) + len(new_history))
    elif ctx._gen is not None:
        gen, ctx._gen = ctx._gen, None
        try:
            gen.close()
        except BaseException:  # noqa: BLE001 - user code in finally blocks, sys.exit too:
            pass  # the instance is complete already
    return ExecutionResult(actions, new_history, ctx.__dict__.get("_custom_status"),
                           completion, bool(ctx._is_suspended), session)


class OrchestrationExecutor:
    """Replays orchestrations of ``registry`` (default: the decorators' registry).

    ``implementation`` selects the engine core (the C type or the twin's class); by default the
    one :mod:`durable_core._impl` picked. Tests use it to run both side by side.
    """

    def __init__(self, registry: Optional[Registry] = None,
                 converter: Optional[DataConverter] = None, *,
                 implementation: Optional[type] = None) -> None:
        self.registry = registry if registry is not None else default_registry
        self.converter = converter if converter is not None else default_converter()
        core = implementation if implementation is not None else ContextCore
        self._ctx_cls = _context_class(core)
        self._scanner = None
        if type(self.converter) is JsonDataConverter:
            fast = getattr(self.converter, "json_scanner", None)
            self._scanner = fast() if fast is not None else None

    def new_context(self, instance_id: str) -> Any:
        """A fresh context (engine core + policy) for ``instance_id``."""
        ctx = self._ctx_cls(instance_id, self.converter, self._scanner)
        ctx.__dict__["_registry"] = self.registry
        return ctx

    def execute(self, instance_id: str, old_events: Events, new_events: Events) -> ExecutionResult:
        """Replay ``old_events``, apply ``new_events``; return this episode's result.

        Orchestrator failures (whatever its code raises -- ``SystemExit``,
        ``KeyboardInterrupt`` and other ``BaseException`` subclasses too -- non-determinism, an
        unknown name) complete the instance as FAILED; this method raises only for bad
        arguments and :class:`~durable_core.errors.HistoryCorruptError` for undecodable bytes.
        """
        if not isinstance(instance_id, str):
            raise TypeError("instance_id must be a string")
        old = _as_events(old_events, "old_events")
        new = _as_events(new_events, "new_events")
        ctx = self.new_context(instance_id)
        return _episode(ctx, instance_id, old, new, 0)
