"""The store layer: what persisting orchestrations means, written once for every backend.

Between the worker / clients above and a backend (:mod:`durable_core.backends.base`, which
only persists rows) this module owns the orchestration semantics of persistence:

- **A committed step's rows.** :meth:`Store.step_write` takes the engine's result as it is --
  its actions by class, its new history events, its completion -- and produces the rows: the
  history records to append, activity work, durable timers (inbox messages visible when due),
  sub-orchestrations to create (a live instance already holding the child id fails the
  parent's task instead), events sent to other instances (dropped when the target does not
  exist, as in the Durable Task SDK), the completion sent to a parent, continue-as-new (a new
  execution id, the history reset, the unconsumed events carried over), and the instance
  row's new state. Activities of an instance that finished or moved on are cancelled.
- **Delivering messages.** :meth:`Store.turn` claims instances through the backend and decides
  for each what its messages mean: messages for an earlier execution are consumed unread;
  messages for a finished instance are dropped; events for an instance whose (delayed) start
  is not due yet wait for the start; a terminate that arrives before the start ends the
  instance without running it. What cannot be delivered is settled by a write in the next turn.
- **History framing and checking.** History is stored as chunks of codec records (no header;
  :func:`encode_history` adds one for export). Loading checks that the chunks hold exactly as
  many events as the store wrote: a chunk emptied or cut at a record boundary is corruption
  (:class:`~durable_core.errors.HistoryCorruptError`), not a shorter history.
- **History events.** Every event the runtime itself records (``ExecutionStarted``,
  ``TimerFired``, ``EventRaised``, ``TaskCompleted``/``TaskFailed``, ``SubOrchestration*``,
  ``ExecutionTerminated``/``Suspended``/``Resumed``) is built here.
- **Client operations** (create, raise event, suspend/resume, terminate recursively, restart,
  purge recursively or by filter) with their validation.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, NamedTuple, Optional, Sequence

from . import history as h
from .backends.base import (
    ActivityOutcome,
    ActivityWork,
    Backend,
    ClaimedActivity,
    ClaimedInstance,
    InstanceFilter,
    InstanceRow,
    Message,
    NewInstance,
    QueryPage,
    ReuseIdPolicy,
    StepWrite,
)
from .errors import HistoryCorruptError, OrchestrationAlreadyExistsError, OrchestrationNotFoundError
from .history import FailureDetails
from .status import TERMINAL_STATUSES, OrchestrationStatus
from .task import CompleteOrchestration, CreateSubOrchestration, CreateTimer, ScheduleTask, SendEvent

__all__ = [
    "Store",
    "WorkItem",
    "TurnResult",
    "validate_instance_id",
    "validate_name",
    "encode_history",
    "MAX_ID_LENGTH",
]

#: longest instance id / orchestrator, activity or event name the store accepts
MAX_ID_LENGTH = 1024

_RUNNING = OrchestrationStatus.RUNNING
_PENDING = OrchestrationStatus.PENDING
_SUSPENDED = OrchestrationStatus.SUSPENDED
_FAILED = OrchestrationStatus.FAILED
_COMPLETED = OrchestrationStatus.COMPLETED
_TERMINATED = OrchestrationStatus.TERMINATED
_CAN = OrchestrationStatus.CONTINUED_AS_NEW
_K_START = h.ExecutionStarted.EVENT_TYPE
_K_TERMINATE = h.ExecutionTerminated.EVENT_TYPE
_K_TIMER = h.TimerFired.EVENT_TYPE
_K_EVENT = h.EventRaised.EVENT_TYPE
_K_SUB_FAILED = h.SubOrchestrationInstanceFailed.EVENT_TYPE


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


def _problem_in(value: str) -> Optional[str]:
    if _CONTROL.search(value) is not None:
        return "contains a control character (NUL, newline, ...)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (a lone surrogate)"
    return None


def validate_instance_id(value: Any, what: str = "instance_id") -> str:
    """``value`` if it is a usable instance id, else ``ValueError``/``TypeError`` saying why.

    Ids are non-empty strings of at most :data:`MAX_ID_LENGTH` characters without control
    characters. (The HTTP layer accepts a stricter set from the network.)
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    problem = _problem_in(value)
    if problem is not None:
        raise ValueError(f"{what} {value!r} {problem}")
    return value


def validate_name(value: Any, what: str) -> str:
    """Orchestrator, activity and event names: the same rules as instance ids."""
    return validate_instance_id(value, what)


def _new_execution_id() -> str:
    return os.urandom(16).hex()


def encode_history(events: Sequence[Any]) -> bytes:
    """A complete, self-describing history (codec header + records), e.g. for export files."""
    return h.encode(list(events))


def _decode_chunks(instance_id: str, length: int, starts: Sequence[int],
                   chunks: Sequence[bytes]) -> list[Any]:
    """The events of a stored history, checked against how many the store says it wrote."""
    data = b"".join(chunks)
    try:
        events = h.decode_records(data)
    except HistoryCorruptError as exc:
        raise HistoryCorruptError(
            f"history of {instance_id!r}: {exc}", exc.offset, exc.torn_tail) from None
    if len(events) == length and (not starts or starts[0] == 0):
        return events
    # find the chunk that does not hold what was written, for the message
    offset = 0
    for i, chunk in enumerate(chunks):
        expected = (starts[i + 1] if i + 1 < len(starts) else length) - starts[i]
        got = len(h.decode_records(chunk))
        if got != expected:
            raise HistoryCorruptError(
                f"history of {instance_id!r}: the chunk starting at event {starts[i]} holds "
                f"{got} events, the store wrote {expected}", offset, False)
        offset += len(chunk)
    raise HistoryCorruptError(
        f"history of {instance_id!r} holds {len(events)} events, the store wrote {length}",
        len(data), False)


class WorkItem(NamedTuple):
    """A claimed instance with the events to deliver to its orchestrator (decoded)."""

    claim: ClaimedInstance
    new_events: list[Any]
    consumed: list[int]

    @property
    def instance_id(self) -> str:
        return self.claim.instance_id

    @property
    def execution_id(self) -> str:
        return self.claim.execution_id

    @property
    def history_length(self) -> int:
        return self.claim.history_length

    @property
    def name(self) -> str:
        return self.claim.name


class TurnResult(NamedTuple):
    """:meth:`Store.turn`: refused writes, work for the engine, activities to run, and the
    writes that settle undeliverable messages (to pass in the next turn's ``steps``)."""

    refused: list[StepWrite]
    work: list[WorkItem]
    activities: list[ClaimedActivity]
    settlements: list[StepWrite]


class Store:
    """The store layer over ``backend`` (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._now: Callable[[], int] = backend.now

    # -- client side -------------------------------------------------------------------------
    def create(
        self,
        instance_id: str,
        name: str,
        input: Optional[bytes],
        *,
        version: Optional[str] = None,
        start_at: Optional[int] = None,
        tags: Optional[dict[str, str]] = None,
        reuse_policy: ReuseIdPolicy = ReuseIdPolicy.ERROR,
        trace_context: Optional[str] = None,
    ) -> None:
        """Create an instance (PENDING) and queue its start (visible at ``start_at``)."""
        validate_instance_id(instance_id)
        validate_name(name, "orchestrator name")
        now = self._now()
        new = self._new_instance(
            instance_id, name, input, version=version, now=now, start_at=start_at, tags=tags,
            parent=None, trace_context=trace_context,
            replace=TERMINAL_STATUSES if reuse_policy is ReuseIdPolicy.REPLACE_IF_TERMINAL
            else frozenset())
        blocked = self.backend.create_instance(new)
        if blocked is not None:
            raise OrchestrationAlreadyExistsError(
                f"an orchestration instance with id {instance_id!r} already exists "
                f"(status {blocked.name})"
                + ("; pass reuse_policy=ReuseIdPolicy.REPLACE_IF_TERMINAL to replace it"
                   if blocked in TERMINAL_STATUSES else "")
            )

    def _new_instance(
        self,
        instance_id: str,
        name: str,
        input: Optional[bytes],
        *,
        version: Optional[str],
        now: int,
        start_at: Optional[int],
        tags: Optional[dict[str, str]],
        parent: Optional[tuple[str, int, str]],
        trace_context: Optional[str],
        replace: frozenset[OrchestrationStatus],
        on_conflict: Optional[Message] = None,
    ) -> NewInstance:
        eid = _new_execution_id()
        visible = now if start_at is None or start_at < now else start_at
        start = self._started_event(instance_id, eid, name, input, version, parent,
                                    start_at, tags, trace_context, now)
        return NewInstance(
            instance_id=instance_id, execution_id=eid, name=name, created_at=now,
            start=Message(instance_id, _K_START, visible, h.encode_records([start]), eid),
            input=input, version=version, tags=dict(tags) if tags else None,
            parent_instance_id=parent[0] if parent else None,
            parent_task_id=parent[1] if parent else -1,
            parent_execution_id=parent[2] if parent else None,
            scheduled_start_at=visible if visible > now else None,
            replace_statuses=replace, on_conflict=on_conflict,
        )

    @staticmethod
    def _started_event(instance_id: str, eid: str, name: str, input: Optional[bytes],
                       version: Optional[str], parent: Optional[tuple[str, int, str]],
                       start_at: Optional[int], tags: Optional[dict[str, str]],
                       trace_context: Optional[str], now: int) -> Any:
        return h.ExecutionStarted(
            -1, now, name, instance_id, input, version,
            parent[0] if parent else None, parent[1] if parent else -1,
            start_at, dict(tags) if tags else None, eid, trace_context,
        )

    def _send(self, instance_id: str, event: Any) -> None:
        validate_instance_id(instance_id)
        m = Message(instance_id, event.EVENT_TYPE, self._now(), h.encode_records([event]))
        if not self.backend.enqueue([m])[0]:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")

    def raise_event(self, instance_id: str, name: str, data: Optional[bytes]) -> None:
        """Queue external event ``name`` for the instance (OrchestrationNotFoundError if none)."""
        validate_name(name, "event name")
        self._send(instance_id, h.EventRaised(-1, self._now(), name, data))

    def suspend(self, instance_id: str, reason: Optional[bytes]) -> None:
        self._send(instance_id, h.ExecutionSuspended(-1, self._now(), reason))

    def resume(self, instance_id: str, reason: Optional[bytes]) -> None:
        self._send(instance_id, h.ExecutionResumed(-1, self._now(), reason))

    def terminate(self, instance_id: str, reason: Optional[bytes], *, recursive: bool) -> None:
        """Queue ExecutionTerminated for the instance (and its live descendants if
        ``recursive``). Finished instances in the tree are left alone."""
        validate_instance_id(instance_id)
        root = self.backend.get_instance(instance_id, payloads=False)
        if root is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        ids = [instance_id]
        if recursive:
            ids = self._tree(instance_id, live=True)
        now = self._now()
        ev = h.encode_records([h.ExecutionTerminated(-1, now, reason, recursive)])
        msgs = [Message(iid, _K_TERMINATE, now, ev) for iid in ids]
        if root.status in TERMINAL_STATUSES:
            msgs = msgs[1:]
        if msgs:
            self.backend.enqueue(msgs)

    def _tree(self, root: str, *, live: bool) -> list[str]:
        """``root`` and its descendants (only the live ones, or only the finished ones)."""
        out: list[str] = [root]
        seen = {root}
        todo = [root]
        while todo:
            parent = todo.pop()
            token: Optional[str] = None
            while True:
                page = self.backend.query(InstanceFilter(parent_instance_id=parent),
                                          page_size=500, continuation_token=token,
                                          payloads=False)
                for r in page.rows:
                    if r.instance_id in seen:
                        continue
                    if (r.status in TERMINAL_STATUSES) == live:
                        continue
                    seen.add(r.instance_id)
                    out.append(r.instance_id)
                    todo.append(r.instance_id)
                token = page.continuation_token
                if token is None:
                    break
        return out

    def restart(self, instance_id: str, new_instance_id: Optional[str]) -> str:
        """Start the instance's orchestrator again with its original input; returns the id."""
        row = self.backend.get_instance(validate_instance_id(instance_id))
        if row is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        target = new_instance_id or instance_id
        policy = ReuseIdPolicy.ERROR if new_instance_id else ReuseIdPolicy.REPLACE_IF_TERMINAL
        self.create(target, row.name, row.input, version=row.version, tags=row.tags,
                    reuse_policy=policy)
        return target

    def purge(self, instance_id: str, *, recursive: bool) -> int:
        """Delete a finished instance (and its finished descendants); returns how many."""
        row = self.backend.get_instance(validate_instance_id(instance_id), payloads=False)
        if row is None or row.status not in TERMINAL_STATUSES:
            return 0
        ids = self._tree(instance_id, live=False) if recursive else [instance_id]
        return len(self.backend.delete_instances(ids, statuses=TERMINAL_STATUSES))

    def purge_by(self, flt: InstanceFilter, *,
                 progress: Optional[Callable[[int], None]] = None) -> int:
        """Delete the finished instances matching ``flt``, a page at a time; returns how many.
        ``progress(deleted_so_far)`` is called after each page."""
        statuses = TERMINAL_STATUSES if flt.statuses is None else (
            frozenset(flt.statuses) & TERMINAL_STATUSES)
        if not statuses:
            return 0
        flt = InstanceFilter(flt.created_from, flt.created_to, frozenset(statuses),
                             flt.instance_id_prefix, flt.name, flt.parent_instance_id)
        total = 0
        while True:
            page = self.backend.query(flt, page_size=500, continuation_token=None,
                                      payloads=False)
            if not page.rows:
                return total
            deleted = self.backend.delete_instances([r.instance_id for r in page.rows],
                                                    statuses=TERMINAL_STATUSES)
            total += len(deleted)
            if progress is not None:
                progress(total)
            if not deleted:  # pragma: no cover - all changed status meanwhile
                return total

    def get(self, instance_id: str, *, payloads: bool = True) -> Optional[InstanceRow]:
        return self.backend.get_instance(instance_id, payloads=payloads)

    def query(self, flt: InstanceFilter, *, page_size: int, continuation_token: Optional[str],
              payloads: bool) -> QueryPage:
        return self.backend.query(flt, page_size=page_size, continuation_token=continuation_token,
                                  payloads=payloads)

    def count(self, flt: InstanceFilter) -> dict[OrchestrationStatus, int]:
        return self.backend.count(flt)

    def history(self, instance_id: str) -> Optional[list[Any]]:
        """The instance's history, decoded and checked (``None`` for an unknown id)."""
        stored = self.backend.load_history(instance_id)
        if stored is None:
            return None
        return _decode_chunks(instance_id, stored.length, stored.starts, stored.chunks)

    # -- worker side -------------------------------------------------------------------------
    def turn(
        self,
        owner: str,
        *,
        steps: Sequence[StepWrite],
        outcomes: Sequence[ActivityOutcome],
        instance_limit: int,
        activity_limit: int,
    ) -> TurnResult:
        """Commit ``steps`` and ``outcomes`` and claim the next work, in one backend turn."""
        t = self.backend.run_turn(owner, steps=steps, outcomes=outcomes,
                                  instance_limit=instance_limit, activity_limit=activity_limit)
        work: list[WorkItem] = []
        settle: list[StepWrite] = []
        for claim in t.instances:
            self._deliver(claim, work, settle)
        return TurnResult(t.refused, work, t.activities, settle)

    def _deliver(self, claim: ClaimedInstance, work: list[WorkItem], settle: list[StepWrite]) -> None:
        eid = claim.execution_id
        consumed = []
        deliver = []
        has_start = has_term = False
        for m in claim.messages:
            consumed.append(m.id)
            if m.execution_id is not None and m.execution_id != eid:
                continue  # a message for an earlier execution: consume, do not deliver
            if m.kind == _K_START:
                has_start = True
            elif m.kind == _K_TERMINATE:
                has_term = True
            deliver.append(m)
        status = claim.status
        if status in TERMINAL_STATUSES or not deliver:
            # finished, or only stale messages: consume them
            settle.append(StepWrite(claim.instance_id, claim.fence, status, touch=False,
                                    consumed=consumed))
            return
        if status == _PENDING and not has_start:
            base = StepWrite(claim.instance_id, claim.fence, status, touch=False,
                             consumed=consumed)
            if has_term:
                # terminated before its (delayed) start: it never runs
                reason = None
                for m in deliver:
                    if m.kind == _K_TERMINATE:
                        reason = h.decode_records(m.event)[0].input
                base.touch = True
                base.status = _TERMINATED
                base.clear_inbox = True
                base.set_result = True
                base.output = reason
                base.cancel_activities = True
                settle.append(base)
            elif claim.scheduled_start_at is not None:
                # events for an instance whose start is not due: they wait for the start
                base.consumed = [m.id for m in claim.messages if m not in deliver]
                base.deferrals = [(m.id, claim.scheduled_start_at) for m in deliver]
                settle.append(base)
            else:  # pragma: no cover - a pending instance without a start: drop the events
                settle.append(base)
            return
        try:
            events = h.decode_records(deliver[0].event if len(deliver) == 1
                                      else b"".join([m.event for m in deliver]))
        except HistoryCorruptError as exc:
            fd = FailureDetails(
                "HistoryCorruptError",
                f"a message for {claim.instance_id!r} is corrupt (byte offset {exc.offset}): "
                f"{exc}", None, None, True)
            settle.append(self.failed_write(WorkItem(claim, [], consumed), fd))
            return
        work.append(WorkItem(claim, events, consumed))

    def load_history(self, item: WorkItem) -> list[Any]:
        """The stored history of ``item``'s instance, checked (HistoryCorruptError if not)."""
        if item.history_length == 0:
            return []
        stored = self.backend.load_history(item.instance_id)
        if stored is None:
            raise HistoryCorruptError(f"history of {item.instance_id!r} is gone", 0, False)
        return _decode_chunks(item.instance_id, item.history_length, stored.starts,
                              stored.chunks)

    def failed_write(self, item: WorkItem, failure: FailureDetails) -> StepWrite:
        """Fail ``item``'s instance with ``failure`` (history kept as it is)."""
        w = StepWrite(item.instance_id, item.claim.fence, _FAILED, consumed=item.consumed,
                      history_base=item.history_length, set_result=True, failure=failure,
                      cancel_activities=True)
        self._notify_parent(w, item.claim, _FAILED, None, failure, self._now())
        return w

    def step_write(self, item: WorkItem, res: Any, *, trace_context: Optional[str] = None,
                   now: Optional[int] = None) -> StepWrite:
        """The rows of one orchestration step (``res``: the engine's ExecutionResult).

        ``now``: the store clock's time of the step (read from the backend when None).

        ``trace_context`` (the step's span, when tracing) is stored with what the step starts
        -- its activities, sub-orchestrations and continue-as-new execution -- so their spans
        are children of the step's."""
        claim = item.claim
        iid = claim.instance_id
        eid = claim.execution_id
        if now is None:
            now = self._now()
        new_history = res.new_history
        w = StepWrite(iid, claim.fence, _RUNNING, consumed=item.consumed,
                      history=h.encode_records(new_history), history_base=claim.history_length,
                      history_added=len(new_history))
        cs = res.custom_status
        if cs is not None or claim.has_custom_status:
            w.set_custom_status = True
            w.custom_status = cs
        comp = res.completion
        if comp is not None:
            status = OrchestrationStatus(comp.status)
            w.cancel_activities = True
            w.set_result = True
            if status == _CAN:
                self._continue_as_new(w, claim, comp, now, trace_context)
            else:
                w.status = status
                w.output = comp.result
                w.failure = comp.failure_details
                self._notify_parent(w, claim, status, comp.result, comp.failure_details, now)
        elif res.is_suspended:
            w.status = _SUSPENDED
        for a in res.actions:
            cls = type(a)
            if cls is ScheduleTask:
                w.activities.append(ActivityWork(iid, eid, a.id, a.name, a.input, trace_context))
            elif cls is CreateTimer:
                ev = h.TimerFired(-1, a.fire_at, a.fire_at, a.id)
                w.messages.append(Message(iid, _K_TIMER, a.fire_at, h.encode_records([ev]), eid))
            elif cls is CreateSubOrchestration:
                self._sub_orchestration(w, claim, a, now, trace_context)
            elif cls is SendEvent:
                ev = h.EventRaised(-1, now, a.name, a.input)
                try:
                    validate_instance_id(a.instance_id, "send_event target")
                except (TypeError, ValueError):
                    continue  # no such instance can exist: dropped, like any unknown target
                w.targeted.append(Message(a.instance_id, _K_EVENT, now, h.encode_records([ev])))
            elif cls is CompleteOrchestration:
                pass  # the completion is handled above
            else:  # pragma: no cover - a new action kind the store does not know
                raise TypeError(f"the store cannot persist a {cls.__name__} action")
        return w

    def _continue_as_new(self, w: StepWrite, claim: ClaimedInstance, comp: Any, now: int,
                         trace_context: Optional[str]) -> None:
        new_eid = _new_execution_id()
        w.status = _RUNNING
        w.reset_history = True
        w.history = None
        w.history_added = 0
        w.history_base = 0
        w.new_execution_id = new_eid
        w.new_input = comp.result
        parent = ((claim.parent_instance_id, claim.parent_task_id, claim.parent_execution_id or "")
                  if claim.parent_instance_id is not None else None)
        start = self._started_event(claim.instance_id, new_eid, claim.name, comp.result,
                                    claim.version, parent, None, None, trace_context, now)
        w.messages.append(Message(claim.instance_id, _K_START, now, h.encode_records([start]),
                                  new_eid))
        for ev in comp.carryover_events or ():
            w.messages.append(Message(claim.instance_id, ev.EVENT_TYPE, now,
                                      h.encode_records([ev])))

    def _sub_orchestration(self, w: StepWrite, claim: ClaimedInstance, a: Any, now: int,
                           trace_context: Optional[str]) -> None:
        iid = claim.instance_id
        eid = claim.execution_id

        def failure_message(error_type: str, message: str) -> Message:
            ev = h.SubOrchestrationInstanceFailed(
                -1, now, a.id, FailureDetails(error_type, message, None, None, True))
            return Message(iid, _K_SUB_FAILED, now, h.encode_records([ev]), eid)

        try:
            validate_instance_id(a.instance_id, "sub-orchestration instance_id")
            validate_name(a.name, "sub-orchestration name")
        except (TypeError, ValueError) as exc:
            w.messages.append(failure_message(type(exc).__name__, str(exc)))
            return
        new = self._new_instance(
            a.instance_id, a.name, a.input, version=a.version, now=now, start_at=None,
            tags=None, parent=(iid, a.id, eid), trace_context=trace_context,
            replace=TERMINAL_STATUSES,
            on_conflict=failure_message(
                "OrchestrationAlreadyExistsError",
                f"a live orchestration instance with id {a.instance_id!r} already exists"))
        w.instances.append(new)

    @staticmethod
    def _notify_parent(w: StepWrite, claim: ClaimedInstance, status: OrchestrationStatus,
                       output: Optional[bytes], failure: Optional[FailureDetails], now: int) -> None:
        if claim.parent_instance_id is None or status not in TERMINAL_STATUSES:
            return
        if status == _COMPLETED:
            ev: Any = h.SubOrchestrationInstanceCompleted(-1, now, claim.parent_task_id, output)
        else:
            fd = failure
            if fd is None:
                fd = FailureDetails(
                    "OrchestrationTerminatedError" if status == _TERMINATED
                    else "OrchestrationFailedError",
                    f"sub-orchestration {claim.instance_id!r} ended with status {status.name}",
                )
            ev = h.SubOrchestrationInstanceFailed(-1, now, claim.parent_task_id, fd)
        w.messages.append(Message(claim.parent_instance_id, ev.EVENT_TYPE, now,
                                  h.encode_records([ev]), claim.parent_execution_id))

    def activity_outcome(self, act: ClaimedActivity, result: Optional[bytes],
                         failure: Optional[FailureDetails]) -> ActivityOutcome:
        """The message that answers activity ``act`` (TaskCompleted, or TaskFailed)."""
        now = self._now()
        if failure is None:
            ev: Any = h.TaskCompleted(-1, now, act.task_id, result)
        else:
            ev = h.TaskFailed(-1, now, act.task_id, failure)
        return ActivityOutcome(act.id, Message(act.instance_id, ev.EVENT_TYPE, now,
                                               h.encode_records([ev]), act.execution_id))

