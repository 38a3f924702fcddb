"""The replay engine core in pure Python: the twin of ``csrc/replay.c``.

Same interface and behaviour as the C core; :mod:`durable_core.engine` picks one through
:mod:`durable_core._impl`. What the core does (the per-event work):

- walk the events of an episode; ``OrchestratorStarted`` sets the clock;
- match ``TaskScheduled``/``TimerCreated``/``SubOrchestrationInstanceCreated``/``EventSent`` to
  the pending action with the same sequence number (type and name must agree);
- route ``TaskCompleted``/``TaskFailed``/``SubOrchestration*``/``TimerFired`` to the pending
  task by its scheduled id and resume the code (``send``, or ``throw`` for a failure);
- while suspended, hold back the inputs (completions, timers, external events) until resumed;
- ``call_activity``, the hottest user call.

Everything else (starting the orchestrator, events, retries, timeouts, failures) is policy in
:class:`durable_core.context.OrchestrationContext`, which the core calls back (``_on_*``).

Payloads are deserialized only when code receives them (a task keeps the raw bytes until then).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional, Sequence

from . import history as h
from . import protocol
from . import task as _task
from .protocol import (
    A_SEND,
    A_SUBORCH,
    A_TASK,
    A_TIMER,
    K_ACTIVITY,
    K_ALL,
    K_ANY,
    K_DONE,
    K_EVENT,
    K_TIMER,
)
from .registry import name_of
from .task import ScheduleTask

__all__ = ["Task", "when_all", "when_any", "ContextCore", "_replay_register"]

_PENDING, _DONE, _FAILED = 0, 1, 2
# JSON scalars the engine handles without the converter (same rules as csrc/replay.c)
_JSON_INT = re.compile(rb"-?(?:0|[1-9][0-9]{0,17})")
_JSON_PLAIN_STR = re.compile(rb'"[^"\\\x00-\x1f]*"')
_JSON_CONSTANTS: dict[bytes, Any] = {b"true": True, b"false": False, b"null": None}
_JSON_ESCAPES = re.compile(r'[\x00-\x1f"\\]')
_I64 = 2**63
_NO_RAW = object()


class Task(_task.Task):
    """A task of the Python engine (see :class:`durable_core.task.Task` for the interface)."""

    __slots__ = ("_kind", "_state", "_value", "_raw", "_parents", "_children", "_count",
                 "_seq", "_extra", "_link", "_ctx", "_fail_fast")

    def __init__(self, kind: int, ctx: Any = None) -> None:
        self._kind = kind
        self._state = _PENDING
        self._value: Any = None
        self._raw: Any = _NO_RAW
        self._parents: Any = None
        self._children: Optional[tuple[Any, ...]] = None
        self._count = 0
        self._seq = -1
        self._extra: Any = None
        self._link: Any = None
        self._ctx = ctx
        self._fail_fast = False

    # -- public interface -----------------------------------------------------------------------
    @property
    def is_complete(self) -> bool:
        return self._state != _PENDING

    @property
    def is_failed(self) -> bool:
        return self._state == _FAILED

    def get_result(self) -> Any:
        state = self._state
        if state == _DONE:
            if self._raw is not _NO_RAW:
                raw = self._raw
                self._value = self._ctx._decode(raw)
                self._raw = _NO_RAW
            elif self._kind == K_ALL and self._value is None:
                self._value = [c.get_result() for c in self._children]  # type: ignore[union-attr]
            return self._value
        if state == _FAILED:
            raise self._value
        raise RuntimeError("the task is not complete yet")

    def get_exception(self) -> Optional[BaseException]:
        return self._value if self._state == _FAILED else None

    def cancel(self) -> bool:
        """Cancel a pending timer or event wait (False if it already finished)."""
        if self._kind not in (K_TIMER, K_EVENT):
            raise TypeError("only timers and event waits can be cancelled")
        if self._state != _PENDING:
            return False
        self._ctx._on_cancel(self)
        return True

    def __await__(self) -> Any:
        return (yield self)

    def __repr__(self) -> str:
        state = ("pending", "completed", "failed")[self._state]
        return f"<Task kind={self._kind} seq={self._seq} {state}>"

    # -- engine interface -----------------------------------------------------------------------
    def _complete(self, value: Any) -> None:
        if self._state != _PENDING:
            return
        self._state = _DONE
        self._value = value
        if self._parents is not None:
            self._notify()

    def _complete_raw(self, raw: Optional[bytes]) -> None:
        if self._state != _PENDING:
            return
        self._state = _DONE
        if raw is not None:
            self._raw = raw
        if self._parents is not None:
            self._notify()

    def _fail(self, exc: BaseException) -> None:
        if self._state != _PENDING:
            return
        self._state = _FAILED
        self._value = exc
        if self._parents is not None:
            self._notify()

    def _notify(self) -> None:
        parents = self._parents
        self._parents = None  # never needed again: composites hold their children
        if type(parents) is list:
            for p in parents:
                p._child_done(self)
        else:
            parents._child_done(self)

    def _child_done(self, child: "Task") -> None:
        if self._state != _PENDING:
            return
        if self._kind == K_ANY:
            self._complete(child)
            return
        if child._state == _FAILED:
            now = self._fail_fast
            if (not now and self._value is None
                    and self._count + 1 < len(self._children)):  # type: ignore[arg-type]
                # The first failure while other tasks still run: where the old fail-fast
                # when_all and this one part. Executions that replay a history recorded with
                # the old one keep it (the policy decides, once per execution).
                now = _when_all_legacy(self._ctx)
                if self._state != _PENDING:
                    return
            if now:
                self._fail(child._value)
                return
            if self._value is None:  # the first failure (in completion order) is reported
                self._value = child._value
        self._count += 1
        if self._count == len(self._children):  # type: ignore[arg-type]
            exc, self._value = self._value, None
            if exc is not None:
                self._fail(exc)
            else:
                self._complete(None)

    def _add_parent(self, parent: "Task") -> None:
        p = self._parents
        if p is None:
            self._parents = parent
        elif type(p) is list:
            p.append(parent)
        else:
            self._parents = [p, parent]


def _composite(kind: int, tasks: Sequence[Any], fail_fast: bool = False) -> Task:
    for t in tasks:
        if type(t) is not Task:
            raise TypeError(f"expected tasks, got {type(t).__name__}")
    ctx = next((t._ctx for t in tasks if t._ctx is not None), None)
    parent = Task(kind, ctx)
    parent._children = tuple(tasks)
    parent._fail_fast = bool(fail_fast)
    for t in tasks:
        if t._state == _PENDING:
            t._add_parent(parent)
    for t in tasks:
        if t._state != _PENDING:
            parent._child_done(t)
            if parent._state != _PENDING:
                break
    if kind == K_ALL and not tasks:
        parent._complete([])
    return parent


def _when_all_legacy(ctx: Any) -> bool:
    """True when the execution owning a when_all keeps the legacy fail-fast semantics (asked
    once per execution; the answer is memoized in ``_when_all_mode`` as in C)."""
    if ctx is None:
        return False
    mode = ctx._when_all_mode
    if mode is None:
        ask = getattr(ctx, "_when_all_waits", None)
        mode = ctx._when_all_mode = bool(ask()) if ask is not None else True
    return not mode


def when_all(tasks: Sequence[Any], *, fail_fast: bool = False) -> Task:
    """A task completing with all results once every task finished; if any failed, it fails
    with the first failure (``fail_fast``: as soon as one fails)."""
    return _composite(K_ALL, tasks, fail_fast)


def when_any(tasks: Sequence[Any]) -> Task:
    """A task completing with the first task to finish."""
    if not tasks:
        raise ValueError("when_any needs at least one task")
    return _composite(K_ANY, tasks)


def _replay_register(event_classes: Any, schedule_task: type,
                     constants: Mapping[str, Any]) -> None:
    """Interface twin of the C registration: check what would be handed over.

    This core uses :mod:`durable_core.history` and :mod:`durable_core.protocol` directly, so
    it keeps nothing; like the C core it refuses (``ImportError``) classes or protocol
    constants other than its own, naming the first that differs.
    """
    classes = tuple(event_classes)
    if classes != tuple(h.EVENT_CLASSES):
        raise ImportError("durable_core._engine_py: the event classes are not those of "
                          "durable_core.history in EVENT_TYPE order")
    if not isinstance(schedule_task, type):
        raise TypeError("ScheduleTask must be a class")
    if not isinstance(constants, dict):
        raise TypeError("_replay_register: the protocol table must be a dict")
    own = protocol.CONSTANTS
    for name, value in own.items():
        if name not in constants:
            raise ImportError(f"durable_core._engine_py: protocol constant {name} ({value!r} "
                              "here) is missing from the table")
        got = constants[name]
        if type(got) is not type(value) or got != value:
            raise ImportError(f"durable_core._engine_py: protocol constant {name} is {got!r} "
                              f"in the table but {value!r} here")
    for name in constants:
        if name not in own:
            raise ImportError(f"durable_core._engine_py: the table defines {name!r}, which "
                              "this engine does not know")


class ContextCore:
    """The per-instance replay state: clock, sequence numbers, pending actions and tasks.

    ``_run(events, replaying)`` applies events; ``_take_actions()`` hands over the actions that
    history has not recorded yet. One core lives as long as its instance's sticky session.
    """

    def __init__(self, instance_id: str, converter: Any, scanner: Optional[Callable[..., Any]] = None) -> None:
        if not isinstance(instance_id, str):
            raise TypeError("instance_id must be a string")
        self.instance_id = instance_id
        self.parent_instance_id: Optional[str] = None
        self.is_replaying = False
        self._now_us = 0
        self._is_suspended = False
        self._running = False
        self._suspended: list[Any] = []
        self._completion: Any = None
        self._converter = converter
        self._scanner = scanner
        self._gen: Any = None
        self._awaiting: Any = None
        self._seq = 0
        self._tasks: dict[int, Task] = {}
        self._patch_ids: Optional[set[str]] = None  # PatchMarker ids of the replayed history
        self._when_all_mode: Optional[bool] = None  # None: not asked; False: legacy; True
        # seq -> (action kind, name to match or None, action, unused)
        self._actions: dict[int, tuple[int, Optional[str], Any, Any]] = {}

    # -- payloads -------------------------------------------------------------------------------
    def _decode(self, raw: bytes) -> Any:
        """Payload -> value. With the default JSON converter (a scanner was given) scalars are
        decoded directly and other JSON through the scanner, as in C; the converter decides
        everything else (and names the errors)."""
        scan = self._scanner
        if scan is not None and type(raw) is bytes:
            if _JSON_INT.fullmatch(raw):
                return int(raw)
            if _JSON_PLAIN_STR.fullmatch(raw):
                try:
                    return raw[1:-1].decode("utf-8")
                except UnicodeDecodeError:
                    pass
            elif raw in _JSON_CONSTANTS:
                return _JSON_CONSTANTS[raw]
            try:
                text = raw.decode("utf-8")
                value, end = scan(text, 0)
                if end == len(text):
                    return value
            except Exception:  # noqa: BLE001 - the converter decides and names the error
                pass
        return self._converter.deserialize(raw)

    def _encode(self, value: Any) -> Optional[bytes]:
        """Value -> payload; JSON scalars directly with the default converter (as in C)."""
        if self._scanner is not None:
            if value is None:
                return None
            t = type(value)
            if t is int and -_I64 <= value < _I64:
                return str(value).encode()
            if t is bool:
                return b"true" if value else b"false"
            if t is str and not _JSON_ESCAPES.search(value):
                try:
                    return b'"' + value.encode("utf-8") + b'"'
                except UnicodeEncodeError:
                    pass
        return self._converter.serialize(value)  # type: ignore[no-any-return]

    # -- primitives for the policy ----------------------------------------------------------
    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = seq + 1
        return seq

    def _new_task(self, kind: int) -> Task:
        return Task(kind, self)

    def _add_action(self, kind: int, action: Any, task: Optional[Task]) -> None:
        seq = action.id
        name = getattr(action, "name", None) if kind in (A_TASK, A_SUBORCH) else None
        self._actions[seq] = (kind, name, action, None)
        if task is not None:
            task._seq = seq
            self._tasks[seq] = task

    def _unregister(self, seq: int) -> None:
        self._tasks.pop(seq, None)

    def _take_actions(self) -> list[Any]:
        out = []
        for seq in sorted(self._actions):
            out.append(self._actions[seq][2])
        self._actions.clear()
        return out

    def call_activity(self, activity: Any, *, input: Any = None,
                      retry_policy: Optional[_task.RetryPolicy] = None) -> Task:
        """Schedule activity ``activity`` (function or name) with ``input``; returns its task.

        With ``retry_policy`` a failed attempt is retried after a durable back-off timer.
        """
        name = activity if type(activity) is str else name_of(activity)
        if retry_policy is not None:
            return self._call_activity_retry(name, input, retry_policy)  # type: ignore[attr-defined, no-any-return]
        # serialized now, replaying or not: a payload error reaches the code on every replay
        payload = self._encode(input)
        seq = self._seq
        rec = (A_TASK, name, ScheduleTask(seq, name, payload), None)
        self._seq = seq + 1
        task = Task(K_ACTIVITY, self)
        task._seq = seq
        self._actions[seq] = rec
        self._tasks[seq] = task
        return task

    # -- the event loop ---------------------------------------------------------------------
    def _run(self, events: Sequence[Any], replaying: bool) -> int:
        """Apply ``events``; stop once the instance completes. Returns how many were used."""
        if self._running:
            raise RuntimeError("the orchestration is already running")
        if replaying:
            # A marker is recorded after the step whose is_patched call it answers, so
            # replaying code asks before reaching it: read them all first.
            for ev in events:
                if type(ev) is h.PatchMarker:
                    if self._patch_ids is None:
                        self._patch_ids = set()
                    self._patch_ids.add(ev.patch_id)
        self.is_replaying = bool(replaying)
        self._running = True
        n = 0
        try:
            for ev in events:
                if self._completion is not None:
                    break
                n += 1
                self._dispatch(ev)
        finally:
            self._running = False
        return n

    def _dispatch(self, ev: Any) -> None:
        cls = type(ev)
        if self._is_suspended and cls in _SUSPENDABLE:
            self._suspended.append(ev)
            return
        handler = _HANDLERS.get(cls)
        if handler is None:
            raise TypeError(f"not a history event: {cls.__name__}")
        handler(self, ev)

    def _resume(self) -> None:
        """Drive the code while the task it waits for is finished."""
        while self._completion is None:
            t = self._awaiting
            if t is None or t._state == _PENDING:
                return
            if t._state == _FAILED:
                self._step(True, t._value)
            else:
                try:
                    value = t.get_result()
                except BaseException as exc:  # noqa: BLE001 - the converter's, whatever it is:
                    self._step(True, exc)  # the code gets it where it waits
                else:
                    self._step(False, value)

    def _step(self, throw: bool, value: Any) -> None:
        """Send ``value`` into (or throw it into) the code; record what it yields next."""
        self._awaiting = None
        gen = self._gen
        try:
            nxt = gen.throw(value) if throw else gen.send(value)
        except StopIteration as stop:
            self._gen = None
            self._on_return(stop.value)  # type: ignore[attr-defined]
            return
        except BaseException as exc:  # noqa: BLE001 - user code: whatever it raises (SystemExit,
            self._gen = None  # KeyboardInterrupt, CancelledError too) fails the instance
            tb = exc.__traceback__
            if tb is not None and tb.tb_frame.f_code is _STEP_CODE:
                exc.__traceback__ = tb.tb_next  # the stack trace starts in user code (as in C)
            self._on_error(exc)  # type: ignore[attr-defined]
            return
        if self._completion is not None:  # e.g. continue_as_new was called
            return
        if type(nxt) is not Task:
            try:
                nxt = self._adopt(nxt)  # type: ignore[attr-defined]
            except BaseException as exc:  # noqa: BLE001 - e.g. the object's __repr__ raised
                self._on_error(exc)  # type: ignore[attr-defined]
                return
        self._awaiting = nxt

    # -- handlers ---------------------------------------------------------------------------
    def _h_orchestrator_started(self, ev: Any) -> None:
        self._now_us = ev.timestamp

    def _h_execution_started(self, ev: Any) -> None:
        if self._gen is not None:
            return
        gen = self._on_execution_started(ev)  # type: ignore[attr-defined]
        if gen is not None and self._completion is None:
            self._gen = gen
            self._step(False, None)
            self._resume()

    def _match(self, ev: Any, kind: int, name: Optional[str]) -> None:
        """``ev`` records an action: the pending one with its sequence number must agree."""
        rec = self._actions.pop(ev.event_id, None)
        if rec is None:
            self._on_nondeterminism(ev, -1, None, None)  # type: ignore[attr-defined]
            return
        try:
            same = rec[0] == kind and (name is None or bool(rec[1] == name))
        except BaseException as exc:  # noqa: BLE001 - a name object's __eq__ (user code)
            self._on_error(exc)  # type: ignore[attr-defined]
            return
        if not same:
            self._on_nondeterminism(ev, rec[0], *_code_side(rec))  # type: ignore[attr-defined]

    def _h_task_scheduled(self, ev: Any) -> None:
        self._match(ev, A_TASK, ev.name)

    def _h_timer_created(self, ev: Any) -> None:
        self._match(ev, A_TIMER, None)

    def _h_suborch_created(self, ev: Any) -> None:
        self._match(ev, A_SUBORCH, ev.name)

    def _h_event_sent(self, ev: Any) -> None:
        # target and event name must agree too; event names case-insensitively (as the C core)
        rec = self._actions.pop(ev.event_id, None)
        if rec is None:
            self._on_nondeterminism(ev, -1, None, None)  # type: ignore[attr-defined]
            return
        if rec[0] == A_SEND:
            action = rec[2]
            try:
                if bool(action.instance_id == ev.instance_id) and (
                        bool(action.name == ev.name) or _same_name(action.name, ev.name)):
                    return
            except BaseException as exc:  # noqa: BLE001 - a name object's __eq__ (user code)
                self._on_error(exc)  # type: ignore[attr-defined]
                return
        self._on_nondeterminism(ev, rec[0], *_code_side(rec))  # type: ignore[attr-defined]

    def _h_completed(self, ev: Any) -> None:
        t = self._tasks.pop(ev.task_scheduled_id, None)
        if t is None:
            return
        t._complete_raw(ev.result)
        self._resume()

    def _h_failed(self, ev: Any) -> None:
        t = self._tasks.pop(ev.task_scheduled_id, None)
        if t is None:
            return
        self._on_task_failed(t, ev)  # type: ignore[attr-defined]
        self._resume()

    def _h_timer_fired(self, ev: Any) -> None:
        t = self._tasks.pop(ev.timer_id, None)
        if t is None:
            return
        t._complete(None)
        if t._link is not None:
            self._on_timer_link(t, ev)  # type: ignore[attr-defined]
        self._resume()

    def _h_event_raised(self, ev: Any) -> None:
        self._on_event_raised(ev)  # type: ignore[attr-defined]
        self._resume()

    def _h_suspended(self, ev: Any) -> None:
        self._is_suspended = True

    def _h_resumed(self, ev: Any) -> None:
        self._is_suspended = False
        buffered, self._suspended = self._suspended, []
        for i, e in enumerate(buffered):
            if self._completion is not None:
                self._suspended[:0] = buffered[i:]
                return
            self._dispatch(e)

    def _h_terminated(self, ev: Any) -> None:
        self._on_terminated(ev)  # type: ignore[attr-defined]

    def _h_ignore(self, ev: Any) -> None:
        pass


def _code_side(rec: tuple[int, Optional[str], Any, Any]) -> tuple[Any, Any]:
    """(name, target) of a pending action, for a non-determinism report."""
    if rec[0] == A_SEND:
        return rec[2].name, rec[2].instance_id
    return rec[1], None


def _same_name(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.casefold() == b.casefold()


_HANDLERS: dict[type, Callable[[ContextCore, Any], None]] = {
    h.OrchestratorStarted: ContextCore._h_orchestrator_started,
    h.OrchestratorCompleted: ContextCore._h_ignore,
    h.ExecutionStarted: ContextCore._h_execution_started,
    h.ExecutionCompleted: ContextCore._h_ignore,
    h.ContinueAsNew: ContextCore._h_ignore,
    h.TaskScheduled: ContextCore._h_task_scheduled,
    h.TaskCompleted: ContextCore._h_completed,
    h.TaskFailed: ContextCore._h_failed,
    h.SubOrchestrationInstanceCreated: ContextCore._h_suborch_created,
    h.SubOrchestrationInstanceCompleted: ContextCore._h_completed,
    h.SubOrchestrationInstanceFailed: ContextCore._h_failed,
    h.TimerCreated: ContextCore._h_timer_created,
    h.TimerFired: ContextCore._h_timer_fired,
    h.EventRaised: ContextCore._h_event_raised,
    h.EventSent: ContextCore._h_event_sent,
    h.ExecutionSuspended: ContextCore._h_suspended,
    h.ExecutionResumed: ContextCore._h_resumed,
    h.ExecutionTerminated: ContextCore._h_terminated,
    h.PatchMarker: ContextCore._h_ignore,  # read before the replay (_run)
}

# While suspended, inputs that would run the code wait for the resume, in arrival order.
# Everything else applies at once: the clock, suspend/resume/terminate, and the events that
# record the code's own actions (they must meet their pending actions, or a replay that crosses
# a suspension would see them as missing).
_SUSPENDABLE = frozenset({
    h.ExecutionStarted, h.TaskCompleted, h.TaskFailed, h.SubOrchestrationInstanceCompleted,
    h.SubOrchestrationInstanceFailed, h.TimerFired, h.EventRaised,
})

_STEP_CODE = ContextCore._step.__code__
_ = K_DONE  # kinds used by the policy
