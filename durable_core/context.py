"""The contexts user code receives: :class:`OrchestrationContext` and :class:`ActivityContext`.

Orchestrator code must be deterministic: replaying it against its history must make the same
calls in the same order. So it reads time only from ``ctx.current_utc_datetime``, makes ids only
with ``ctx.new_uuid()``, uses no randomness, and does I/O only inside activities.

Layout: the replay engine core (C, or the pure-Python twin in ``_engine_py``) implements the hot
path -- walking history, the task table, resuming the code, ``call_activity`` -- and calls back
into the policy methods below (``_on_*``) for everything that is not per-event work: starting
the orchestrator, external events, retries, timeouts, termination, failures. The context object
user code gets is an instance of a class deriving from both the core and
:class:`OrchestrationContext`.
"""

from __future__ import annotations

import logging
import types
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .errors import (
    EventTimeoutError,
    NonDeterminismError,
    OrchestratorNotFoundError,
    TaskCancelledError,
    TaskFailedError,
)
from .failure import failure_details_of
from .history import FailureDetails, from_datetime, to_datetime
from .protocol import (  # shared with the engine cores
    A_SEND,
    A_SUBORCH,
    A_TASK,
    A_TIMER,
    K_ACTIVITY,
    K_DONE,
    K_EVENT,
    K_SUBORCH,
    K_TIMER,
    T_RETRY,
    T_TIMEOUT,
    T_USER,
)
from .registry import name_of
from .status import OrchestrationStatus
from .task import (
    CompleteOrchestration,
    CreateSubOrchestration,
    CreateTimer,
    RetryPolicy,
    ScheduleTask,
    SendEvent,
    Task,
)

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registry

__all__ = ["OrchestrationContext", "ActivityContext", "ReplaySafeLogger", "failure_details_of"]

_ACTION_WORDS = {
    A_TASK: "scheduled activity",
    A_TIMER: "created a timer",
    A_SUBORCH: "started sub-orchestration",
    A_SEND: "sent event",
}

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "9e952958-5e33-4daf-827f-2fa12937b875")
_LOG = logging.getLogger("durable_core.orchestration")


class ReplaySafeLogger:
    """A logger that writes only while the orchestrator is not replaying.

    Replays re-run the code from the start; logging through ``ctx.logger`` keeps each message
    to one occurrence (when the step first ran). Methods mirror :class:`logging.Logger`. Each
    record carries ``instance_id`` and ``orchestration_name`` as structured fields (``extra``),
    which formatters (``%(instance_id)s``) and OpenTelemetry's logging handler pick up.
    """

    __slots__ = ("_ctx", "_logger")

    def __init__(self, ctx: "OrchestrationContext", logger: logging.Logger = _LOG) -> None:
        self._ctx = ctx
        self._logger = logger

    def _ok(self) -> bool:
        return not self._ctx.is_replaying

    def _fields(self, kwargs: dict[str, Any]) -> None:
        """The record names its orchestration: ``instance_id`` and ``orchestration_name`` as
        structured fields (``extra``; the caller's own ``extra`` keys win)."""
        kwargs.setdefault("stacklevel", 2)
        ctx = self._ctx
        fields = {"instance_id": ctx.instance_id, "orchestration_name": ctx.__dict__.get("_name")}
        extra = kwargs.get("extra")
        if extra:
            fields.update(extra)
        kwargs["extra"] = fields

    @property
    def logger(self) -> logging.Logger:
        """The wrapped logger."""
        return self._logger

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's spelling
        """False while replaying, else whether the wrapped logger logs at ``level``."""
        return self._ok() and self._logger.isEnabledFor(level)

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` at ``level`` unless replaying."""
        if self._ok():
            self._fields(kwargs)
            self._logger.log(level, msg, *args, **kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at DEBUG unless replaying."""
        if self._ok():
            self._fields(kwargs)
            self._logger.debug(msg, *args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at INFO unless replaying."""
        if self._ok():
            self._fields(kwargs)
            self._logger.info(msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at WARNING unless replaying."""
        if self._ok():
            self._fields(kwargs)
            self._logger.warning(msg, *args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at ERROR unless replaying."""
        if self._ok():
            self._fields(kwargs)
            self._logger.error(msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at ERROR with the current exception unless replaying."""
        if self._ok():
            self._fields(kwargs)
            self._logger.exception(msg, *args, **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at CRITICAL unless replaying."""
        if self._ok():
            self._fields(kwargs)
            self._logger.critical(msg, *args, **kwargs)


class _RetryState:
    """Bookkeeping of a task with a retry policy: what to reschedule, attempts so far."""

    __slots__ = ("policy", "kind", "name", "input", "instance_id", "attempts", "first_us",
                 "version")

    def __init__(self, policy: RetryPolicy, kind: int, name: str, input: Optional[bytes],
                 instance_id: Optional[str], first_us: int, version: Optional[str] = None) -> None:
        self.version = version
        self.policy = policy
        self.kind = kind
        self.name = name
        self.input = input
        self.instance_id = instance_id
        self.attempts = 1
        self.first_us = first_us


class OrchestrationContext:
    """What an orchestrator function receives: its identity, the clock, and the durable calls.

    Every ``call_*``/``create_timer``/``wait_for_external_event`` returns a :class:`Task` to
    ``yield`` (generator orchestrators) or ``await`` (``async def`` orchestrators). Each call
    takes the next sequence number; replays must make the same calls in the same order.

    Attributes provided by the engine: ``instance_id``, ``parent_instance_id`` (None for a
    top-level instance), ``is_replaying`` (True while old history is being re-applied).
    """

    __slots__ = ()

    # -- provided by the engine core (declared for type checkers) ---------------------------
    if TYPE_CHECKING:  # pragma: no cover
        instance_id: str
        parent_instance_id: Optional[str]
        is_replaying: bool
        _now_us: int
        _completion: Optional[CompleteOrchestration]
        _converter: Any
        _patch_ids: Optional[set[str]]

        def call_activity(self, activity: Union[str, Callable[..., Any]], *,
                          input: Any = None, retry_policy: Optional[RetryPolicy] = None) -> Task: ...
        def _next_seq(self) -> int: ...
        def _add_action(self, kind: int, action: Any, task: Optional[Task]) -> None: ...
        def _unregister(self, seq: int) -> None: ...
        def _new_task(self, kind: int) -> Any: ...

    # -- public API ---------------------------------------------------------------------------
    @property
    def current_utc_datetime(self) -> datetime:
        """The orchestration's current time: the start of the current episode, as an *aware*
        UTC ``datetime`` (``tzinfo=timezone.utc``).

        Deterministic: during replay it is the time the replayed step originally ran.

        The Durable Task SDK gives a naive datetime holding UTC. Aware is kept on purpose: a
        naive value's ``.timestamp()`` and ``.astimezone()`` read it as *local* time, wrong on
        every server not set to UTC, and Python deprecated the naive ``utcnow()`` in 3.12.
        Every API here that takes a datetime accepts both (naive is taken as UTC); code that
        compares this value with naive datetimes uses ``.replace(tzinfo=None)``.
        """
        return to_datetime(self._now_us)

    @property
    def logger(self) -> ReplaySafeLogger:
        """A logger that is silent while replaying (each message appears once)."""
        lg = self.__dict__.get("_logger")
        if lg is None:
            lg = self.__dict__["_logger"] = ReplaySafeLogger(self)
        return lg

    def create_replay_safe_logger(self, logger: logging.Logger) -> ReplaySafeLogger:
        """``logger`` wrapped so that it is silent while replaying (the Durable Task SDK's
        spelling; :attr:`logger` is the same over ``durable_core.orchestration``)."""
        if not isinstance(logger, logging.Logger):
            raise TypeError(f"expected a logging.Logger, got {type(logger).__name__}")
        return ReplaySafeLogger(self, logger)

    def create_timer(self, fire_at: Union[datetime, timedelta]) -> Task:
        """A durable timer firing at ``fire_at`` (aware or naive-UTC datetime) or after a delay."""
        return self._create_timer_us(self._fire_at_us(fire_at), T_USER, None)

    def call_sub_orchestrator(
        self,
        orchestrator: Union[str, Callable[..., Any]],
        *,
        input: Any = None,
        instance_id: Optional[str] = None,
        retry_policy: Optional[RetryPolicy] = None,
        version: Optional[str] = None,
    ) -> Task:
        """Start a child orchestration; the task's result is the child's output.

        The child id defaults to ``f"{this_instance_id}:{sequence_number:04x}"``. If the child
        fails, the task fails with :class:`~durable_core.TaskFailedError`.

        ``version`` is the child's orchestration version (its ``ctx.version``); by default the
        child inherits this orchestration's :attr:`version`. It is recorded with the call
        (``SubOrchestrationInstanceCreated.version``); replays check the child's name, not its
        version, so changing the version a call passes is not a non-deterministic change.
        """
        if instance_id is not None and not isinstance(instance_id, str):
            raise TypeError("instance_id must be a string")
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError("retry_policy must be a RetryPolicy")
        if version is not None and not isinstance(version, str):
            raise TypeError("version must be a string or None")
        if version is None:
            version = self.version
        name = name_of(orchestrator)
        payload = self._converter.serialize(input)
        task = self._new_task(K_SUBORCH)
        seq = self._next_seq()
        if instance_id is None:
            instance_id = f"{self.instance_id}:{seq:04x}"
        if retry_policy is not None:
            task._extra = _RetryState(retry_policy, K_SUBORCH, name, payload, instance_id,
                                      self._now_us, version)
        self._add_action(A_SUBORCH,
                         CreateSubOrchestration(seq, name, instance_id, payload, version), task)
        return task

    def wait_for_external_event(self, name: str, *, timeout: Optional[timedelta] = None) -> Task:
        """A task completed by the next external event called ``name`` (case-insensitive).

        Events that arrived before the wait are buffered in arrival order and consumed one per
        wait. With ``timeout`` a durable timer is created; if it fires first the task fails with
        :class:`~durable_core.errors.EventTimeoutError`. The task can be cancelled.
        """
        if not isinstance(name, str):
            raise TypeError("event name must be a string")
        if timeout is not None and not isinstance(timeout, timedelta):
            raise TypeError("timeout must be a timedelta")
        key = name.casefold()
        task = self._new_task(K_EVENT)
        task._extra = key
        received = self._received_events()
        queue = received.get(key)
        if queue:
            ev = queue.pop(0)[1]
            if not queue:
                del received[key]
            task._complete_raw(ev.input)
            return task
        self._event_waiters().setdefault(key, []).append(task)
        if timeout is not None:
            fire_at = self._now_us + _td_us(timeout)
            task._link = self._create_timer_us(fire_at, T_TIMEOUT, task)
        return task

    def send_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Send external event ``event_name`` with ``data`` to another instance (fire and forget)."""
        if not isinstance(instance_id, str) or not isinstance(event_name, str):
            raise TypeError("instance_id and event_name must be strings")
        payload = self._converter.serialize(data)
        seq = self._next_seq()
        self._add_action(A_SEND, SendEvent(seq, instance_id, event_name, payload), None)

    def continue_as_new(self, new_input: Any = None, *, save_events: bool = False) -> None:
        """Restart this instance with a fresh history and ``new_input`` once the code returns.

        With ``save_events=True`` external events that arrived but were not consumed are handed
        to the new execution. Code after this call should return; further tasks are ignored.
        """
        if self._completion is not None:
            return
        payload = self._converter.serialize(new_input)
        self.__dict__["_save_events"] = bool(save_events)
        self._finish(OrchestrationStatus.CONTINUED_AS_NEW, payload, None)

    def set_custom_status(self, value: Any) -> None:
        """Publish a JSON-able status value for clients (``OrchestrationState.custom_status``)."""
        self.__dict__["_custom_status"] = self._converter.serialize(value)

    @property
    def version(self) -> Optional[str]:
        """The orchestration version this execution runs (``ExecutionStarted.version``), or
        None.

        Set when the instance is scheduled (``schedule_new_orchestration(version=...)``, else
        the version registered with ``@dc.orchestrator(version=...)``) or inherited from the
        parent by a sub-orchestration. Code branches on it to keep instances started under an
        older version on the code path they began with; :meth:`is_patched` does the same for
        one change at a time without a version number.
        """
        return self.__dict__.get("_version")  # type: ignore[no-any-return]

    def is_patched(self, patch_id: str) -> bool:
        """Whether this execution takes the code path of patch ``patch_id``: deploy a change to
        orchestrator code while instances started under the old code are still running.

        ``if ctx.is_patched("send-receipt"): <new code> else: <old code>`` -- True for new
        executions, and for replays whose history recorded the patch; False while replaying a
        history from before the patch (the old code path, which that history recorded). The
        first answer sticks for the rest of the execution. When it is True in a new step, a
        ``PatchMarker`` event is recorded (it takes no sequence number, so adding the check
        shifts nothing). Once no instance from before the patch is left, replace the call by
        :meth:`deprecate_patch` and delete the old branch; later, delete that call too.

        Ids are case-sensitive strings; ids starting with ``durable_core/`` are reserved.
        """
        return self._patched(_check_patch_id(patch_id))

    def deprecate_patch(self, patch_id: str) -> None:
        """Patch ``patch_id``'s code path is now the only one (the step after :meth:`is_patched`).

        Records the patch like a first True of :meth:`is_patched`, so instances started under
        this code replay under the code before it too. Replaying a history from before the
        patch (one that took the old code path) fails the instance with a
        :class:`~durable_core.errors.NonDeterminismError` naming the patch: deploy this only
        once no such instance is running. When none started before this call shipped is left
        either, the call can be deleted (no sequence numbers are involved).
        """
        pid = _check_patch_id(patch_id)
        memo = self._patch_memo()
        known = memo.get(pid)
        if known is None and (not self.is_replaying or pid in (self._patch_ids or ())):
            self._patched(pid)
            return
        if known:
            return
        err = NonDeterminismError(
            f"non-deterministic orchestration {self.instance_id!r}: the code deprecates patch "
            f"{pid!r} but this instance predates it (its history took the code path from "
            f"before the patch); let such instances finish on code that still calls "
            f"is_patched({pid!r})", instance_id=self.instance_id, expected=f"patch {pid!r} absent",
            actual=f"deprecate_patch({pid!r})")
        self._on_error(err)
        raise err

    def new_uuid(self) -> str:
        """A deterministic UUID (the same on every replay): uuid5 of instance, time and counter."""
        n = self.__dict__.get("_uuid_counter", 0)
        self.__dict__["_uuid_counter"] = n + 1
        stamp = self.current_utc_datetime.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{self.instance_id}_{stamp}_{n}"))

    # -- internals ------------------------------------------------------------------------------
    def _patch_memo(self) -> dict[str, bool]:
        d = self.__dict__.get("_patches")
        if d is None:
            d = self.__dict__["_patches"] = {}
        return d  # type: ignore[no-any-return]

    def _patched(self, patch_id: str) -> bool:
        """is_patched's rule (also the engine's own, for _WHEN_ALL_WAITS): the first answer
        sticks; while replaying, whether the history holds the marker; else True, recorded."""
        memo = self._patch_memo()
        known = memo.get(patch_id)
        if known is not None:
            return known
        if self.is_replaying:
            known = patch_id in (self._patch_ids or ())
        else:
            known = True
            self.__dict__.setdefault("_new_patches", []).append(patch_id)
        memo[patch_id] = known
        return known

    def _when_all_waits(self) -> bool:
        """Whether when_all waits for every task in this execution (the engine asks once, at
        the first failure that leaves a when_all's other tasks running). A history recorded by
        the fail-fast when_all of earlier versions lacks the marker and replays as it ran."""
        return self._patched(_WHEN_ALL_WAITS)

    def _fire_at_us(self, fire_at: Union[datetime, timedelta]) -> int:
        if isinstance(fire_at, timedelta):
            return self._now_us + _td_us(fire_at)
        if isinstance(fire_at, datetime):
            return from_datetime(fire_at)
        raise TypeError("fire_at must be a datetime or a timedelta")

    def _create_timer_us(self, fire_at: int, role: Any, link: Any) -> Any:
        task = self._new_task(K_TIMER)
        task._extra = role
        task._link = link
        seq = self._next_seq()
        self._add_action(A_TIMER, CreateTimer(seq, int(fire_at)), task)
        return task

    def _received_events(self) -> dict[str, list[tuple[int, Any]]]:
        d = self.__dict__.get("_received")
        if d is None:
            d = self.__dict__["_received"] = {}
        return d

    def _event_waiters(self) -> dict[str, list[Any]]:
        d = self.__dict__.get("_waiters")
        if d is None:
            d = self.__dict__["_waiters"] = {}
        return d

    def _call_activity_retry(self, name: str, input: Any, retry_policy: RetryPolicy) -> Task:
        if not isinstance(retry_policy, RetryPolicy):
            raise TypeError("retry_policy must be a RetryPolicy")
        payload = self._converter.serialize(input)
        task = self._new_task(K_ACTIVITY)
        task._extra = _RetryState(retry_policy, K_ACTIVITY, name, payload, None, self._now_us)
        seq = self._next_seq()
        self._add_action(A_TASK, ScheduleTask(seq, name, payload), task)
        return task

    def _finish(self, status: OrchestrationStatus, result: Optional[bytes],
                failure: Optional[FailureDetails]) -> None:
        """Complete the instance (first call wins); the completion takes the next sequence id."""
        if self._completion is not None:
            return
        self._completion = CompleteOrchestration(  # type: ignore[misc]  # engine attribute
            self._next_seq(), status, result, failure, ())

    # -- callbacks from the engine core ---------------------------------------------------------
    def _on_execution_started(self, ev: Any) -> Any:
        """Start the orchestrator; return the generator/coroutine to drive, or None when done."""
        self.parent_instance_id = ev.parent_instance_id  # type: ignore[misc]
        self.__dict__["_name"] = ev.name
        self.__dict__["_version"] = ev.version
        # carried for the tracing layer, never read by the engine
        self.__dict__["_trace_context"] = getattr(ev, "trace_context", None)
        registry: Registry = self.__dict__["_registry"]
        fn = registry.get_orchestrator(ev.name)
        if fn is None:
            exc = OrchestratorNotFoundError(f"no orchestrator named {ev.name!r} is registered")
            self._finish(OrchestrationStatus.FAILED, None,
                         FailureDetails("OrchestratorNotFoundError", str(exc)))
            return None
        try:
            if registry.orchestrator_takes_input(ev.name):
                out = fn(self, self._converter.deserialize(ev.input))
            else:
                out = fn(self)
        except BaseException as exc:  # noqa: BLE001 - user code (the orchestrator, the
            self._on_error(exc)  # converter): whatever it raises, SystemExit too, fails it
            return None
        if isinstance(out, (types.GeneratorType, types.CoroutineType)):
            return out
        self._on_return(out)
        return None

    def _on_return(self, value: Any) -> None:
        """The orchestrator returned ``value``."""
        if self._completion is not None:
            return
        try:
            payload = self._converter.serialize(value)
        except BaseException as exc:  # noqa: BLE001 - the converter and the value's own code
            self._on_error(exc)
            return
        self._finish(OrchestrationStatus.COMPLETED, payload, None)

    def _on_error(self, exc: BaseException) -> None:
        """The orchestrator raised ``exc`` (or the engine found a fault): fail the instance.

        ``exc`` may be any ``BaseException`` user code raised; its details must be built
        whatever its ``__str__`` does (``failure_details_of`` copes with one that raises an
        ``Exception``; one raising ``SystemExit`` and the like is handled here).
        """
        try:
            fd = failure_details_of(exc)
        except BaseException:  # noqa: BLE001 - e.g. a __str__ that calls sys.exit()
            fd = _opaque_failure(exc)
        self._finish(OrchestrationStatus.FAILED, None, fd)

    def _on_nondeterminism(self, ev: Any, code_kind: int, code_name: Optional[str],
                           code_target: Optional[str] = None) -> None:
        """History recorded ``ev`` but the code did something else at that sequence number.

        ``code_kind`` is the kind of the code's pending action there (-1: none);
        ``code_name`` / ``code_target`` its name and, for a sent event, its target instance.
        """
        seq = ev.event_id
        what = type(ev).__name__
        name = getattr(ev, "name", None)
        history_side = f"{what} {name!r}" if name is not None else what
        if what == "EventSent":
            history_side += f" to {ev.instance_id!r}"
        if code_kind < 0:
            code_side = "made no call with this sequence number"
        else:
            code_side = _ACTION_WORDS.get(code_kind, "did something else")
            if code_name is not None:
                code_side += f" {code_name!r}"
            if code_target is not None:
                code_side += f" to {code_target!r}"
        msg = (f"non-deterministic orchestration {self.instance_id!r}: at sequence number "
               f"{seq} the history has {history_side} but the code {code_side}")
        self._on_error(NonDeterminismError(msg, instance_id=self.instance_id,
                                           sequence_number=seq, expected=history_side,
                                           actual=code_side))

    def _on_task_failed(self, task: Any, ev: Any) -> None:
        """An activity/sub-orchestration failed: retry per its policy or fail the task."""
        details = ev.failure_details or FailureDetails("Exception", "unknown failure")
        state = task._extra
        if isinstance(state, _RetryState) and not details.is_non_retriable:
            try:  # a RetryPolicy subclass's next_delay_us is user code
                delay = state.policy.next_delay_us(state.attempts, state.first_us, self._now_us)
            except BaseException as exc:  # noqa: BLE001
                self._on_error(exc)
                return
            if delay is not None:
                self._create_timer_us(self._now_us + delay, T_RETRY, task)
                return
        what = "activity" if task._kind == K_ACTIVITY else "sub-orchestration"
        name = state.name if isinstance(state, _RetryState) else None
        label = f"{what} {name!r}" if name else what
        task._fail(TaskFailedError(
            f"{label} (task {ev.task_scheduled_id}) failed: {details.error_type}: "
            f"{details.message}", details))

    def _on_timer_link(self, timer: Any, ev: Any) -> None:
        """A timer with a role fired: a retry back-off ended or an event wait timed out."""
        target = timer._link
        if timer._extra == T_RETRY:
            state: _RetryState = target._extra
            state.attempts += 1
            seq = self._next_seq()
            if state.kind == K_ACTIVITY:
                action: Any = ScheduleTask(seq, state.name, state.input)
                self._add_action(A_TASK, action, target)
            else:
                action = CreateSubOrchestration(seq, state.name, state.instance_id or "",
                                                state.input, state.version)
                self._add_action(A_SUBORCH, action, target)
        elif timer._extra == T_TIMEOUT:
            if target.is_complete:
                return
            self._drop_waiter(target)
            target._fail(EventTimeoutError(
                f"timed out waiting for external event {target._extra!r}", target._extra))

    def _drop_waiter(self, task: Any) -> None:
        waiters = self._event_waiters()
        lst = waiters.get(task._extra)
        if lst is not None:
            try:
                lst.remove(task)
            except ValueError:
                pass
            if not lst:
                del waiters[task._extra]

    def _on_event_raised(self, ev: Any) -> None:
        """An external event arrived: complete the oldest waiter for its name, or buffer it."""
        if not self.is_replaying:
            _LOG.debug("%s: event %r received", self.instance_id, ev.name)
        key = ev.name.casefold() if isinstance(ev.name, str) else ev.name
        waiters = self._event_waiters()
        lst = waiters.get(key)
        if lst:
            task = lst.pop(0)
            if not lst:
                del waiters[key]
            timer = task._link
            if timer is not None and not timer.is_complete:
                self._unregister(timer._seq)
                timer._link = None
            task._complete_raw(ev.input)
            return
        n = self.__dict__.get("_arrivals", 0)
        self.__dict__["_arrivals"] = n + 1
        self._received_events().setdefault(key, []).append((n, ev))

    def _on_cancel(self, task: Any) -> None:
        """``task.cancel()`` on a pending timer or event wait."""
        if task._kind == K_EVENT:
            self._drop_waiter(task)
            timer = task._link
            if timer is not None and not timer.is_complete:
                self._unregister(timer._seq)
        else:
            self._unregister(task._seq)
        task._fail(TaskCancelledError(
            "the event wait was cancelled" if task._kind == K_EVENT else "the timer was cancelled"))

    def _on_terminated(self, ev: Any) -> None:
        """A client terminated the instance; ``ev.input`` is the serialized reason."""
        self._finish(OrchestrationStatus.TERMINATED, ev.input, None)

    def _adopt(self, obj: Any) -> Any:
        """A yielded object that is not this engine's task: accept a finished foreign task."""
        if isinstance(obj, Task):
            t = self._new_task(K_DONE)
            if not obj.is_complete:
                raise TypeError("the orchestrator yielded a task of another orchestration")
            if obj.is_failed:
                t._fail(obj.get_exception())
            else:
                t._complete(obj.get_result())
            return t
        raise TypeError(
            f"the orchestrator yielded {type(obj).__name__!s} {obj!r:.80}; orchestrators must "
            "yield (or await) tasks from the context (call_activity, create_timer, "
            "wait_for_external_event, call_sub_orchestrator, when_all, when_any)")

    def _carryover(self, rest: Any) -> tuple[Any, ...]:
        """EventRaised events for a continue-as-new with ``save_events``: unconsumed, in order."""
        if not self.__dict__.get("_save_events"):
            return ()
        buffered = sorted(
            (item for q in self._received_events().values() for item in q), key=lambda x: x[0])
        out = [ev for _, ev in buffered]
        out.extend(ev for ev in rest if type(ev).__name__ == "EventRaised")
        return tuple(out)


#: The engine's own patch: when_all waits for all its tasks before failing (earlier versions
#: failed at the first failure; histories they recorded replay that way).
_WHEN_ALL_WAITS = "durable_core/when_all-waits-for-all"
_RESERVED = "durable_core/"


def _check_patch_id(patch_id: Any) -> str:
    if not isinstance(patch_id, str) or not patch_id:
        raise TypeError("a patch id must be a non-empty string")
    if patch_id.startswith(_RESERVED):
        raise ValueError(f"patch ids starting with {_RESERVED!r} are reserved")
    return patch_id


def _opaque_failure(exc: BaseException) -> FailureDetails:
    """Details of an exception whose message cannot be rendered at all (no user code runs)."""
    from .failure import _type_name

    name = _type_name(exc)  # no address in the text: a replay must record the same message
    return FailureDetails(name, f"<{name} object> (the exception's message could not be "
                          "rendered: its __str__ raised)")


def _td_us(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


class ActivityContext:
    """What an activity function receives: which orchestration called it and as which task."""

    __slots__ = ("orchestration_id", "task_id", "name")

    def __init__(self, orchestration_id: str, task_id: int, name: str) -> None:
        self.orchestration_id = orchestration_id
        self.task_id = task_id
        self.name = name

    @property
    def instance_id(self) -> str:
        """Alias of ``orchestration_id``."""
        return self.orchestration_id

    def __repr__(self) -> str:
        return (f"ActivityContext(orchestration_id={self.orchestration_id!r}, "
                f"task_id={self.task_id!r}, name={self.name!r})")

