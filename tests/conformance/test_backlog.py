"""Backend.backlog(): the work ready for a worker now -- instances with visible, due inbox rows
that nobody holds a live lease on, activity rows nobody holds, and the oldest such inbox row."""

from __future__ import annotations

import time

import pytest

from durable_core import history as h
from durable_core.backends.base import Backlog
from durable_core.status import OrchestrationStatus as S

from .rows import activity, claim, create, event, step

pytestmark = pytest.mark.timeout(120)

EV1 = [h.OrchestratorStarted(-1, 1), h.OrchestratorCompleted(-1, 1)]
EMPTY = (0, 0, None)


def settle(b, owner="w-settle"):
    """Claim every ready instance and consume its rows (a step each): nothing ready is left."""
    t = claim(b, owner, 100)
    assert claim(b, owner, 0, steps=[step(i, EV1) for i in t.instances]).refused == []
    return t.instances


def test_an_empty_store_has_no_backlog(backend):
    got = backend.backlog()
    assert isinstance(got, Backlog)
    assert got == EMPTY
    assert (got.instances, got.activities, got.oldest_visible_at) == EMPTY


def test_ready_instances_are_counted_once_and_the_oldest_row_is_reported(backend):
    b = backend
    a = create(b, "a")
    bb = create(b, "b")
    assert b.enqueue([event(b, "a", "one"), event(b, "a", "two"), event(b, "b", "x")]) == [True] * 3
    got = b.backlog()
    assert (got.instances, got.activities) == (2, 0)  # four rows of a, two of b: two instances
    assert got.oldest_visible_at == a.start.visible_at
    # once a's rows are consumed, b's start is the oldest ready row
    t = claim(b, "w", 1)
    assert [i.instance_id for i in t.instances] == ["a"]
    claim(b, "w", 0, steps=[step(t.instances[0], EV1)])
    assert b.backlog() == (1, 0, bb.start.visible_at)


def test_a_leased_instance_is_not_ready_until_its_lease_expires(make_backend):
    b = make_backend(lease_seconds=0.4)
    a = create(b, "a")
    bb = create(b, "b")
    t = claim(b, "w1", 1)
    assert [i.instance_id for i in t.instances] == ["a"]
    got = b.backlog()
    assert got.instances == 1 and got.oldest_visible_at == bb.start.visible_at
    b.enqueue([event(b, "a", "while-leased")])  # more rows for a leased instance: still held
    assert b.backlog().instances == 1
    claim(b, "w2", 1)  # b leased too: nothing is ready
    assert b.backlog() == EMPTY
    time.sleep(0.6)  # both leases expire: both instances are ready again
    got = b.backlog()
    assert got.instances == 2 and got.oldest_visible_at == a.start.visible_at


def test_rows_visible_later_are_not_ready_until_due(backend):
    b = backend
    create(b, "later", start_in_us=60_000_000)  # a delayed start
    create(b, "a")
    settle(b)
    assert b.backlog() == EMPTY
    far = event(b, "a", "far", delay_us=60_000_000)
    soon = event(b, "a", "soon", delay_us=400_000)
    b.enqueue([far, soon])
    assert b.backlog() == EMPTY
    time.sleep(0.5)
    got = b.backlog()
    assert got == (1, 0, soon.visible_at)


def test_activities_are_counted_while_nobody_holds_them(make_backend):
    b = make_backend(lease_seconds=0.4)
    create(b, "a")
    it = claim(b, "w").instances[0]
    claim(b, "w", 0, steps=[step(it, EV1, activities=[activity(it, k) for k in range(3)])])
    # activity rows count, and carry no due time: no instance is ready, so no oldest row
    assert b.backlog() == (0, 3, None)
    t = claim(b, "w", 0, activities=2)
    assert len(t.activities) == 2
    assert b.backlog() == (0, 1, None)
    claim(b, "w", 0, activities=1)
    assert b.backlog() == (0, 0, None)
    time.sleep(0.6)  # their leases expire: queued again
    assert b.backlog() == (0, 3, None)


def test_finished_instances_leave_nothing_ready(backend):
    b = backend
    for k in range(20):
        create(b, f"done{k}", input=b"x" * 100)
    ready = settle(b)
    assert len(ready) == 20
    # each of them queues an activity and then finishes: outputs, history and cancelled
    # activities are left behind, none of it ready work
    b.enqueue([event(b, f"done{k}", "go") for k in range(20)])
    t = claim(b, "w", 100)
    claim(b, "w", 0, steps=[step(it, EV1, activities=[activity(it, 0)]) for it in t.instances])
    assert b.backlog() == (0, 20, None)
    b.enqueue([event(b, f"done{k}", "end") for k in range(20)])
    t = claim(b, "w", 100)
    fin = [step(it, EV1, status=S.COMPLETED if k % 2 else S.FAILED, set_result=True,
                output=b'"ok"', cancel_activities=True) for k, it in enumerate(t.instances)]
    assert claim(b, "w", 0, steps=fin).refused == []
    assert all(b.get_instance(f"done{k}").status in (S.COMPLETED, S.FAILED) for k in range(20))
    assert b.backlog() == EMPTY
    # a live instance beside them is the only ready one
    live = create(b, "live")
    assert b.backlog() == (1, 0, live.start.visible_at)
