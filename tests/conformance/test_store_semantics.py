"""The store layer's rules over every backend: what a step's actions become, which messages are
delivered, deferred or dropped, and how a stored history is checked on load."""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Optional

import pytest

from durable_core import history as h
from durable_core.errors import HistoryCorruptError, OrchestrationAlreadyExistsError
from durable_core.engine import CompleteOrchestration
from durable_core.status import OrchestrationStatus as S
from durable_core.store import Store
from durable_core.task import CreateSubOrchestration, CreateTimer, ScheduleTask, SendEvent

pytestmark = pytest.mark.timeout(120)


class Result(NamedTuple):
    """The parts of an engine ExecutionResult the store reads."""

    actions: list
    new_history: list
    custom_status: Optional[bytes] = None
    completion: Any = None
    is_suspended: bool = False


def turn(store: Store, steps=(), outcomes=(), limit=10, activities=0):
    return store.turn("w", steps=list(steps), outcomes=list(outcomes), instance_limit=limit,
                      activity_limit=activities)


def run(store: Store, iid: Optional[str] = None, actions=(), completion=None):
    """Claim work, commit one step of ``iid`` (the only claimable instance when None) with
    ``actions``; other claimed instances are released untouched. Returns the work item."""
    from durable_core.backends.base import StepWrite

    t = turn(store, limit=100)
    items = [w for w in t.work if iid is None or w.instance_id == iid]
    assert len(items) == 1, t
    item = items[0]
    hist = [h.OrchestratorStarted(-1, 1)] + list(item.new_events)
    hist.append(h.OrchestratorCompleted(-1, 1))
    res = Result(list(actions) + ([completion] if completion else []), hist, completion=completion)
    others = [StepWrite(w.instance_id, w.claim.fence, w.claim.status, touch=False)
              for w in t.work if w is not item]
    assert turn(store, steps=[store.step_write(item, res)] + others + t.settlements,
                limit=0).refused == []
    return item


@pytest.fixture
def store(backend):
    return Store(backend)


def test_actions_become_work_timers_children_and_events(store):
    b = store.backend
    store.create("p", "parent", b"1")
    store.create("target", "t", None)
    fire = b.now() + 300_000
    run(store, "p", [
        ScheduleTask(0, "act", b"2"),
        CreateTimer(1, fire),
        CreateSubOrchestration(2, "child", "p:kid", b"3"),
        SendEvent(3, "target", "hello", b"4"),
        SendEvent(4, "nobody", "lost", None),
    ])
    acts = turn(store, limit=0, activities=10).activities
    assert [(a.task_id, a.name, a.input) for a in acts] == [(0, "act", b"2")]
    kid = b.get_instance("p:kid")
    assert kid.parent_instance_id == "p" and kid.parent_task_id == 2 and kid.input == b"3"
    t = turn(store, limit=10)
    got = {w.instance_id: [type(e).__name__ for e in w.new_events] for w in t.work}
    assert got == {"target": ["ExecutionStarted", "EventRaised"], "p:kid": ["ExecutionStarted"]}
    ev = next(w for w in t.work if w.instance_id == "target").new_events[1]
    assert (ev.name, ev.input) == ("hello", b"4")
    assert b.get_instance("nobody") is None
    turn(store, steps=[store.step_write(w, Result([], list(w.new_events))) for w in t.work],
         limit=0)
    assert b.next_visible(b.now() + 10_000_000) == [fire]
    time.sleep(0.35)
    t = turn(store)
    assert [type(e).__name__ for e in t.work[0].new_events] == ["TimerFired"]
    assert t.work[0].new_events[0].timer_id == 1


def test_a_child_id_held_by_a_live_instance_fails_the_parents_task(store):
    store.create("taken", "other", None)
    store.create("p", "parent", None)
    # p asks for a child whose id a live instance holds
    run(store, "p", [CreateSubOrchestration(0, "child", "taken", None)])
    run(store, "taken")
    t = turn(store)
    ev = t.work[0].new_events[0]
    assert t.work[0].instance_id == "p" and isinstance(ev, h.SubOrchestrationInstanceFailed)
    assert ev.task_scheduled_id == 0
    assert ev.failure_details.error_type == "OrchestrationAlreadyExistsError"
    assert store.backend.get_instance("taken").name == "other"


def test_completion_reaches_the_parent_and_cancels_activities(store):
    b = store.backend
    store.create("p", "parent", None)
    run(store, None, [CreateSubOrchestration(0, "child", "p:c", None)])
    # the child schedules an activity, then completes
    t = turn(store)
    kid = t.work[0]
    assert kid.instance_id == "p:c"
    turn(store, steps=[store.step_write(kid, Result([ScheduleTask(0, "a", None)],
                                                     list(kid.new_events)))], limit=0)
    b.enqueue([])
    store.raise_event("p:c", "done", None)
    done = CompleteOrchestration(1, S.COMPLETED, b'"ok"', None, ())
    run(store, completion=done)
    assert b.get_instance("p:c").status == S.COMPLETED
    assert turn(store, limit=0, activities=10).activities == []  # cancelled
    t = turn(store)
    ev = t.work[0].new_events[0]
    assert isinstance(ev, h.SubOrchestrationInstanceCompleted) and ev.result == b'"ok"'


def test_continue_as_new_resets_history_and_carries_events(store):
    b = store.backend
    store.create("a", "loop", b"0")
    run(store)
    store.raise_event("a", "next", None)
    carry = (h.EventRaised(-1, 5, "kept", b"7"),)
    item = run(store, completion=CompleteOrchestration(0, S.CONTINUED_AS_NEW, b"1", None, carry))
    row = b.get_instance("a")
    assert row.execution_id != item.execution_id and row.input == b"1"
    assert row.status == S.RUNNING and row.history_length == 0
    t = turn(store)
    kinds = [(type(e).__name__, getattr(e, "name", None)) for e in t.work[0].new_events]
    assert kinds == [("ExecutionStarted", "loop"), ("EventRaised", "kept")]
    assert t.work[0].new_events[0].input == b"1"


def test_messages_for_an_earlier_execution_are_consumed_unread(store):
    b = store.backend
    store.create("a", "loop", b"0")
    first = run(store, None, [CreateTimer(0, b.now() + 200_000)])
    store.raise_event("a", "next", None)
    run(store, completion=CompleteOrchestration(1, S.CONTINUED_AS_NEW, b"1", None, ()))
    run(store)  # the new execution's first step
    time.sleep(0.3)  # the old execution's timer comes due
    t = turn(store)
    assert t.work == [] and len(t.settlements) == 1  # consumed, not delivered
    turn(store, steps=t.settlements)
    assert turn(store).work == [] and b.next_visible(b.now() + 10**9) == []
    assert first.execution_id != b.get_instance("a").execution_id


def test_messages_to_a_finished_instance_are_dropped(store):
    b = store.backend
    store.create("a", "x", None)
    run(store, completion=CompleteOrchestration(0, S.COMPLETED, None, None, ()))
    store.raise_event("a", "late", None)
    t = turn(store)
    assert t.work == [] and len(t.settlements) == 1
    turn(store, steps=t.settlements)
    assert turn(store).work == [] and turn(store).settlements == []
    assert b.get_instance("a").status == S.COMPLETED


def test_events_before_a_delayed_start_wait_for_it(store):
    b = store.backend
    store.create("a", "x", None, start_at=b.now() + 400_000)
    store.raise_event("a", "early", b"1")
    t = turn(store)
    assert t.work == [] and len(t.settlements) == 1
    turn(store, steps=t.settlements)
    assert turn(store).work == []
    time.sleep(0.5)
    t = turn(store)
    assert [type(e).__name__ for e in t.work[0].new_events] == ["ExecutionStarted", "EventRaised"]


def test_terminate_before_a_delayed_start_ends_it_unrun(store):
    b = store.backend
    store.create("a", "x", None, start_at=b.now() + 60_000_000)
    store.terminate("a", b'"stop"', recursive=True)
    t = turn(store)
    assert t.work == []
    turn(store, steps=t.settlements)
    row = b.get_instance("a")
    assert row.status == S.TERMINATED and row.output == b'"stop"'
    assert b.next_visible(b.now() + 120_000_000) == []  # the start is gone too


def test_terminate_recursive_reaches_live_descendants(store):
    b = store.backend
    store.create("p", "parent", None)
    run(store, None, [CreateSubOrchestration(0, "child", "p:c", None)])
    t = turn(store)
    turn(store, steps=[store.step_write(t.work[0], Result(
        [CreateSubOrchestration(0, "grandchild", "p:c:g", None)], list(t.work[0].new_events)))],
        limit=0)
    store.terminate("p", None, recursive=True)
    t = turn(store, limit=10)
    got = {w.instance_id: [type(e).__name__ for e in w.new_events] for w in t.work}
    assert got["p"] == ["ExecutionTerminated"] and got["p:c"] == ["ExecutionTerminated"]
    assert "ExecutionTerminated" in got["p:c:g"]


def test_create_conflicts_and_replace(store):
    store.create("a", "x", None)
    with pytest.raises(OrchestrationAlreadyExistsError, match="PENDING"):
        store.create("a", "x", None)
    for bad in ("", "a\x00b", "x" * 2000, "a\nb"):
        with pytest.raises(ValueError):
            store.create(bad, "x", None)
    with pytest.raises(TypeError):
        store.create(5, "x", None)  # type: ignore[arg-type]
    assert store.backend.get_instance("a\x00b") is None


def test_a_history_chunk_that_lost_events_is_corruption(store):
    b = store.backend
    store.create("a", "x", None)
    t = turn(store)
    item = t.work[0]
    w = store.step_write(item, Result([], [h.OrchestratorStarted(-1, 1)] + item.new_events))
    w.history = b""  # the store is told 2 events, the chunk holds none
    turn(store, steps=[w], limit=0)
    with pytest.raises(HistoryCorruptError, match="holds 0 events, the store wrote 2"):
        store.history("a")
    store.raise_event("a", "e", None)
    t = turn(store)
    with pytest.raises(HistoryCorruptError):
        store.load_history(t.work[0])


def test_purge_recursive_and_by_filter(store):
    from durable_core.backends.base import InstanceFilter

    b = store.backend
    store.create("p", "parent", None)
    run(store, None, [CreateSubOrchestration(0, "child", "p:c", None)])
    assert store.purge("p", recursive=True) == 0  # live
    t = turn(store)
    done = CompleteOrchestration(0, S.COMPLETED, None, None, ())
    turn(store, steps=[store.step_write(t.work[0], Result([done], list(t.work[0].new_events),
                                                          completion=done))], limit=0)
    run(store, completion=CompleteOrchestration(1, S.COMPLETED, None, None, ()))
    assert store.purge("p", recursive=True) == 2
    assert b.get_instance("p:c") is None
    for i in range(7):
        store.create(f"f{i}", "x", None)
    for i in range(3):
        run(store, f"f{i}", completion=CompleteOrchestration(0, S.FAILED, None, None, ()))
    progress = []
    n = store.purge_by(InstanceFilter(statuses=frozenset({S.FAILED, S.PENDING})),
                       progress=progress.append)
    assert n == 3 and progress[-1] == 3
    assert sum(b.count(InstanceFilter()).values()) == 4
