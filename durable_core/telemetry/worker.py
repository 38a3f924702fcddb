"""The worker's traces and metrics (see :mod:`durable_core.telemetry`).

Spans, and when each is emitted:

- ``orchestration_step <name>`` (INTERNAL), one per committed step: the replay and the new
  code's run, with the replayed and new event counts; timers created or fired, external events
  received or sent, suspend / resume / terminate requests are its span events. Its parent is
  the orchestration's trace context (stored with the start). A step whose commit the store
  refuses (the lease was lost: another worker redoes it) or that never commits (the worker
  died) is never ended, so never exported: replays and redone steps do not duplicate spans.
- ``orchestration <name>`` (SERVER), one per execution, from its ``ExecutionStarted`` to the
  step that ended it (completed, failed, terminated or continued as new), emitted when that
  step commits; a link names the last step's span. Same parent as the steps.
- ``activity <name>`` (SERVER), one per execution of an activity (a retry is a new activity,
  so a new span; a run after a worker died has ``attempt`` 2 and up), child of the step that
  scheduled it, current while the activity's code runs (its own spans nest under it).

When the code that started an orchestration had no trace, its first step's span is the root
and its context is recorded in the ``ExecutionStarted`` the step writes, so the later steps,
activities and sub-orchestrations still join one trace.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from typing import Any, Callable, Optional, Sequence, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from .. import __version__
from .. import history as h
from ..status import TERMINAL_STATUSES, OrchestrationStatus
from ..task import CreateSubOrchestration, CreateTimer, ScheduleTask, SendEvent
from . import attributes as A
from .context import decode, encode_span
from .metrics import Instruments

__all__ = ["WorkerTelemetry", "StepTrace", "ActivityRun"]

log = logging.getLogger("durable_core.telemetry")
_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(default: Any = None) -> Callable[[_F], _F]:
    """Telemetry never fails work: an exception from the SDK, an exporter or this module is
    logged (once per method and object) and the call returns ``default``."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except Exception:  # noqa: BLE001
                owner = getattr(self, "_tel", self)  # an ActivityRun reports through its worker's
                warned = owner.__dict__.setdefault("_warned", set())
                if fn.__name__ not in warned:
                    warned.add(fn.__name__)
                    log.warning("durable_core telemetry: %s failed; the work goes on without "
                                "it", fn.__qualname__, exc_info=True)
                return default

        return guarded  # type: ignore[return-value]

    return wrap


_INACTIVE = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
try:  # the global stand-in before a provider is set (no public name for its class)
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _ProxyMeters
except ImportError:  # pragma: no cover - a future API version moved it
    _ProxyMeters = None  # type: ignore[assignment,misc]


def _meters_inactive(mp: Any) -> bool:
    if isinstance(mp, otel_metrics.NoOpMeterProvider):
        return True
    if _ProxyMeters is not None:
        return isinstance(mp, _ProxyMeters)
    return type(mp).__name__ == "_ProxyMeterProvider"  # pragma: no cover


_ROOT = Context()
_COMPLETED = OrchestrationStatus.COMPLETED
_FAILED = OrchestrationStatus.FAILED
_TERMINATED = OrchestrationStatus.TERMINATED
_CAN = OrchestrationStatus.CONTINUED_AS_NEW


def _iso(us: int) -> str:
    return h.to_datetime(us).isoformat()


class _Execution:
    """What every step of one execution needs: its parent context, start time, version."""

    __slots__ = ("parent", "started_at", "version", "_decoded")

    def __init__(self, parent: Optional[str], started_at: int, version: Optional[str]) -> None:
        self.parent = parent
        self.started_at = started_at
        self.version = version
        self._decoded: Any = False

    def parent_context(self) -> Optional[Context]:
        """The decoded parent (decoded once per execution, not once per step)."""
        d = self._decoded
        if d is False:
            d = self._decoded = decode(self.parent)
        return d  # type: ignore[no-any-return]

    def set_parent(self, parent: Optional[str]) -> None:
        self.parent = parent
        self._decoded = False


class StepTrace:
    """One step in flight: its span (None when only metrics are on) and what the metrics
    record once it commits."""

    __slots__ = ("span", "t0", "duration", "execution", "first", "replayed", "name",
                 "instance_id", "execution_id", "traceparent")

    def __init__(self) -> None:
        self.span: Any = None
        self.t0 = 0.0
        self.duration = 0.0
        self.execution: Optional[_Execution] = None
        self.first = False
        self.replayed = 0
        self.name = ""
        self.instance_id = ""
        self.execution_id = ""
        #: the stored form of the step span's context: the parent of what the step starts
        self.traceparent: Optional[str] = None


class ActivityRun:
    """One activity execution: its span made current while the code runs."""

    def __init__(self, tel: "WorkerTelemetry", item: Any) -> None:
        self._tel = tel
        self._name = item.name
        self._span = None
        self._token = None
        tracer = tel.tracer
        if tracer is not None:
            parent = tel.parent_of_activity(item.trace_context) or _ROOT
            self._span = span = tracer.start_span(
                f"activity {item.name}", context=parent, kind=SpanKind.SERVER,
                attributes={A.ACTIVITY_NAME: item.name, A.INSTANCE_ID: item.instance_id,
                            A.EXECUTION_ID: item.execution_id, A.TASK_ID: item.task_id,
                            A.ATTEMPT: item.attempt, A.WORKER_ID: tel.owner})
            self._token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._t0 = time.perf_counter()

    @_guarded()
    def end(self, failure: Any = None, *, abandoned: bool = False,
            cancelled: bool = False) -> None:
        """The activity returned (``failure``: the FailureDetails it failed with)."""
        dt = time.perf_counter() - self._t0
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        outcome = ("abandoned" if abandoned or cancelled
                   else "failed" if failure is not None else "completed")
        span = self._span
        if span is not None:
            span.set_attribute(A.ACTIVITY_OUTCOME, outcome)
            if failure is not None:
                span.set_attribute(A.ERROR_TYPE, failure.error_type)
                span.set_status(Status(StatusCode.ERROR, failure.message))
            span.end()
        inst = self._tel.instruments
        if inst is not None:
            attrs = {A.ACTIVITY_NAME: self._name, A.ACTIVITY_OUTCOME: outcome}
            if failure is not None:
                attrs[A.ERROR_TYPE] = failure.error_type
            inst.activity_runs.add(1, attrs)
            inst.activity_duration.record(dt, {A.ACTIVITY_NAME: self._name})


class WorkerTelemetry:
    """Traces and metrics of one worker.

    ``tracer_provider`` / ``meter_provider``: OpenTelemetry providers to use; None follows the
    global ones (``opentelemetry.trace.set_tracer_provider``...), looked up at every dispatcher
    turn, so a provider set after the worker started is picked up. While neither is set the
    worker does no telemetry work at all beyond that look-up.
    """

    def __init__(self, owner: str, backend: Any, *, tracer_provider: Any = None,
                 meter_provider: Any = None, cache_size: int = 4096) -> None:
        self.owner = owner
        self._backend = backend
        self._tp = tracer_provider
        self._mp = meter_provider
        self._seen_tp: Any = None
        self._seen_mp: Any = None
        #: the tracer, when traces are on
        self.tracer: Any = None
        #: the instruments, when metrics are on
        self.instruments: Optional[Instruments] = None
        self._executions: collections.OrderedDict[tuple[str, str], _Execution] = (
            collections.OrderedDict())
        self._cache_size = max(16, cache_size)
        self._parents: dict[str, Context] = {}

    def parent_of_activity(self, value: Optional[str]) -> Optional[Context]:
        """The decoded trace context of an activity row, cached (a fan-out's activities share
        their step's); safe from any thread."""
        if not value:
            return None
        cache = self._parents
        ctx = cache.get(value)
        if ctx is None:
            if len(cache) >= 1024:
                cache.clear()
            ctx = cache[value] = decode(value) or _ROOT
        return ctx

    # -- providers ---------------------------------------------------------------------------
    @_guarded(False)
    def resolve(self) -> bool:
        """Pick up the providers (once per turn); True when traces or metrics are on."""
        tp = self._tp if self._tp is not None else trace.get_tracer_provider()
        if tp is not self._seen_tp:
            self._seen_tp = tp
            self.tracer = (None if isinstance(tp, _INACTIVE)
                           else tp.get_tracer("durable_core", __version__))
        mp = self._mp if self._mp is not None else otel_metrics.get_meter_provider()
        if mp is not self._seen_mp:
            self._seen_mp = mp
            if self.instruments is not None:
                self.instruments.close()
            self.instruments = (None if _meters_inactive(mp)
                                else Instruments(mp.get_meter("durable_core", __version__),
                                                 self._backend))
        return self.tracer is not None or self.instruments is not None

    def close(self) -> None:
        if self.instruments is not None:
            self.instruments.close()

    # -- steps -------------------------------------------------------------------------------
    def _execution(self, item: Any, new_events: list[Any], old: Optional[list[Any]],
                   load: Callable[[], list[Any]]) -> Optional[tuple[_Execution, int]]:
        """The execution's info, and the index in ``new_events`` of its ExecutionStarted
        when this is its first step (-1 otherwise)."""
        key = (item.instance_id, item.execution_id)
        ex = self._executions.get(key)
        if ex is not None:
            self._executions.move_to_end(key)
            return ex, -1
        es = None
        at = -1
        for i, e in enumerate(new_events):
            if type(e) is h.ExecutionStarted:
                es, at = e, i
                break
        if es is None:
            hist = old if old is not None else load()
            for e in hist[:4]:  # after the first step's OrchestratorStarted
                if type(e) is h.ExecutionStarted:
                    es = e
                    break
        if es is None:
            return None
        ex = _Execution(es.trace_context, es.timestamp, es.version)
        return ex, at

    @_guarded()
    def begin_step(self, item: Any, new_events: list[Any], old: Optional[list[Any]],
                   load: Callable[[], list[Any]]) -> Optional[StepTrace]:
        """A step starts. On an execution's first step without a stored trace context the
        step's span becomes the root and ``new_events``' ExecutionStarted gets its context."""
        st = StepTrace()
        st.name = item.name
        st.instance_id = item.instance_id
        st.execution_id = item.execution_id
        at = -1
        found = self._execution(item, new_events, old, load)
        if found is not None:
            st.execution, at = found
            st.first = at >= 0
        tracer = self.tracer
        if tracer is not None:
            ex = st.execution
            parent = ex.parent_context() if ex is not None else None
            attrs = {A.INSTANCE_ID: item.instance_id, A.EXECUTION_ID: item.execution_id,
                     A.ORCHESTRATION_NAME: item.name, A.WORKER_ID: self.owner}
            if ex is not None and ex.version is not None:
                attrs[A.ORCHESTRATION_VERSION] = ex.version
            st.span = span = tracer.start_span(
                f"orchestration_step {item.name}", context=parent or _ROOT,
                kind=SpanKind.INTERNAL, attributes=attrs)
            st.traceparent = encode_span(span)
            if ex is not None and parent is None and st.first:
                # no trace at the start: this span is the root; record it for what follows
                ex.set_parent(st.traceparent)
                new_events[at] = new_events[at]._replace(trace_context=st.traceparent)
        st.t0 = time.perf_counter()
        return st

    @_guarded()
    def end_step(self, st: StepTrace, write: Any, res: Any, replayed: int, sticky: bool,
                 new_events: Sequence[Any]) -> None:
        """The step ran (``res``: the engine's result, None when it failed before one)."""
        st.duration = time.perf_counter() - st.t0
        st.replayed = replayed
        span = st.span
        if span is None or not span.is_recording():
            return
        status = write.status
        attrs: dict[str, Any] = {
            A.ORCHESTRATION_STATUS: OrchestrationStatus(status).name
            if write.new_execution_id is None else _CAN.name,
            A.REPLAYED_EVENTS: replayed, A.NEW_EVENTS: len(new_events), A.STICKY: sticky}
        if res is not None:
            attrs[A.ACTIONS] = len(res.actions)
            attrs[A.HISTORY_LENGTH] = write.history_base + write.history_added
        span.set_attributes(attrs)
        for e in new_events:
            cls = type(e)
            if cls is h.TimerFired:
                span.add_event("timer fired", {A.TIMER_ID: e.timer_id, A.FIRE_AT: _iso(e.fire_at)})
            elif cls is h.EventRaised:
                span.add_event("event received", {A.EVENT_NAME: e.name})
            elif cls is h.ExecutionTerminated:
                span.add_event("terminate requested")
            elif cls is h.ExecutionSuspended:
                span.add_event("suspend requested")
            elif cls is h.ExecutionResumed:
                span.add_event("resume requested")
        if res is not None:
            for a in res.actions:
                cls = type(a)
                if cls is CreateTimer:
                    span.add_event("timer created", {A.TIMER_ID: a.id, A.FIRE_AT: _iso(a.fire_at)})
                elif cls is SendEvent:
                    span.add_event("event sent", {A.EVENT_NAME: a.name,
                                                  A.INSTANCE_ID: a.instance_id})
                elif cls is ScheduleTask:
                    span.add_event("activity scheduled", {A.ACTIVITY_NAME: a.name, A.TASK_ID: a.id})
                elif cls is CreateSubOrchestration:
                    span.add_event("sub-orchestration started",
                                   {A.ORCHESTRATION_NAME: a.name, A.INSTANCE_ID: a.instance_id})
        fd = write.failure
        if status == _FAILED and fd is not None:
            span.set_attribute(A.ERROR_TYPE, fd.error_type)
            span.set_status(Status(StatusCode.ERROR, fd.message))

    @_guarded()
    def committed(self, st: StepTrace, write: Any) -> None:
        """The step's write committed: end its span, emit the orchestration's span if the
        execution ended, record the metrics."""
        key = (st.instance_id, st.execution_id)
        status = write.status
        ended = write.new_execution_id is not None or status in TERMINAL_STATUSES
        ex = st.execution
        if ended:
            self._executions.pop(key, None)
        elif ex is not None:
            self._executions[key] = ex
            if len(self._executions) > self._cache_size:
                self._executions.popitem(last=False)
        span = st.span
        if span is not None:
            span.end()
            if ended and ex is not None and self.tracer is not None:
                self._orchestration_span(st, ex, write, span)
        inst = self.instruments
        if inst is not None:
            name = {A.ORCHESTRATION_NAME: st.name}
            if st.first:
                inst.started.add(1, name)
            inst.step_duration.record(st.duration, name)
            inst.replayed.record(st.replayed, name)
            if status == _COMPLETED and write.new_execution_id is None:
                inst.completed.add(1, name)
            elif status == _FAILED:
                attrs = dict(name)
                if write.failure is not None:
                    attrs[A.ERROR_TYPE] = write.failure.error_type
                inst.failed.add(1, attrs)
            elif status == _TERMINATED:
                inst.terminated.add(1, name)

    def refused(self, st: StepTrace) -> None:
        """The store refused the step's write (the lease was lost): its span is dropped
        unended, and the execution's cached info with it."""
        self._executions.pop((st.instance_id, st.execution_id), None)
        st.span = None

    def _orchestration_span(self, st: StepTrace, ex: _Execution, write: Any,
                            last_step: Any) -> None:
        parent = ex.parent_context()
        status = _CAN if write.new_execution_id is not None else OrchestrationStatus(write.status)
        attrs = {A.INSTANCE_ID: st.instance_id, A.EXECUTION_ID: st.execution_id,
                 A.ORCHESTRATION_NAME: st.name, A.ORCHESTRATION_STATUS: status.name}
        if ex.version is not None:
            attrs[A.ORCHESTRATION_VERSION] = ex.version
        span = self.tracer.start_span(
            f"orchestration {st.name}", context=parent or _ROOT, kind=SpanKind.SERVER,
            attributes=attrs, start_time=ex.started_at * 1000,
            links=[Link(last_step.get_span_context())])
        fd = write.failure
        if status == _FAILED:
            if fd is not None:
                span.set_attribute(A.ERROR_TYPE, fd.error_type)
            span.set_status(Status(StatusCode.ERROR, fd.message if fd is not None else None))
        span.end()

    # -- claims and activities ---------------------------------------------------------------
    @_guarded()
    def claimed(self, work: Sequence[Any], activities: Sequence[Any]) -> None:
        """Count the leases this turn's claim took over: instances whose lease expired in a
        worker's hands, activities claimed again (attempt 2 and up: the worker that held one
        died or stopped before its outcome was committed)."""
        inst = self.instruments
        if inst is None:
            return
        for w in work:
            if w.claim.taken_over:
                inst.lease_taken_over("orchestration")
        for a in activities:
            if a.attempt > 1:
                inst.lease_taken_over("activity")

    @_guarded()
    def activity(self, item: Any) -> Optional[ActivityRun]:
        """An activity starts to run in the calling thread/task (None: nothing to record)."""
        if self.tracer is None and self.instruments is None:
            return None
        return ActivityRun(self, item)
