"""Building contract rows for the conformance tests (what the store layer would write)."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from durable_core import history as h
from durable_core.backends.base import (
    ActivityOutcome,
    ActivityWork,
    Backend,
    Message,
    NewInstance,
    StepWrite,
    Turn,
)
from durable_core.status import TERMINAL_STATUSES, OrchestrationStatus as S


def new_instance(
    b: Backend,
    iid: str,
    name: str = "orch",
    input: Optional[bytes] = b"1",
    *,
    start_in_us: int = 0,
    parent: Optional[tuple[str, int, str]] = None,
    replace: bool = False,
    on_conflict: Optional[Message] = None,
    tags: Optional[dict[str, str]] = None,
    version: Optional[str] = None,
) -> NewInstance:
    now = b.now()
    eid = os.urandom(8).hex()
    vis = now + start_in_us
    ev = h.ExecutionStarted(-1, now, name, iid, input, version, parent[0] if parent else None,
                            parent[1] if parent else -1, None, tags, eid)
    return NewInstance(
        iid, eid, name, now, Message(iid, ev.EVENT_TYPE, vis, h.encode_records([ev]), eid),
        input=input, version=version, tags=tags,
        parent_instance_id=parent[0] if parent else None,
        parent_task_id=parent[1] if parent else -1,
        parent_execution_id=parent[2] if parent else None,
        scheduled_start_at=vis if start_in_us else None,
        replace_statuses=TERMINAL_STATUSES if replace else frozenset(),
        on_conflict=on_conflict,
    )


def create(b: Backend, iid: str, **kw: Any) -> NewInstance:
    new = new_instance(b, iid, **kw)
    assert b.create_instance(new) is None
    return new


def event(b: Backend, iid: str, name: str = "e", data: Optional[bytes] = None,
          *, delay_us: int = 0, execution_id: Optional[str] = None) -> Message:
    now = b.now()
    ev = h.EventRaised(-1, now, name, data)
    return Message(iid, ev.EVENT_TYPE, now + delay_us, h.encode_records([ev]), execution_id)


def claim(b: Backend, owner: str, limit: int = 10, *, activities: int = 0,
          steps: Sequence[StepWrite] = (), outcomes: Sequence[ActivityOutcome] = ()) -> Turn:
    return b.run_turn(owner, steps=steps, outcomes=outcomes, instance_limit=limit,
                      activity_limit=activities)


def events_of(claimed: Any) -> list[Any]:
    return h.decode_records(b"".join(m.event for m in claimed.messages))


def step(claimed: Any, events: Sequence[Any] = (), *, status: S = S.RUNNING,
         **kw: Any) -> StepWrite:
    """A step that consumes every claimed message and appends ``events``."""
    return StepWrite(
        claimed.instance_id, claimed.fence, status,
        consumed=[m.id for m in claimed.messages],
        history=h.encode_records(list(events)) if events else None,
        history_base=claimed.history_length, history_added=len(events), **kw)


def activity(claimed: Any, task_id: int, name: str = "act", input: Optional[bytes] = None) -> ActivityWork:
    return ActivityWork(claimed.instance_id, claimed.execution_id, task_id, name, input)


def completed(b: Backend, act: Any, result: Optional[bytes]) -> ActivityOutcome:
    ev = h.TaskCompleted(-1, b.now(), act.task_id, result)
    return ActivityOutcome(act.id, Message(act.instance_id, ev.EVENT_TYPE, b.now(),
                                           h.encode_records([ev]), act.execution_id))
