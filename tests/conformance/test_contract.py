"""The backend contract, backend by backend: leases, fencing, expiry and take-over, batched
commits, inbox ordering, visible-at times, payloads, purge, query paging, change notification."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_core import history as h
from durable_core.backends.base import InstanceFilter, StepWrite
from durable_core.history import FailureDetails
from durable_core.status import TERMINAL_STATUSES, OrchestrationStatus as S

from .rows import activity, claim, completed, create, event, events_of, new_instance, step

pytestmark = pytest.mark.timeout(120)

EV1 = [h.OrchestratorStarted(-1, 1), h.OrchestratorCompleted(-1, 1)]


def finish(b, iid, status=S.COMPLETED, owner="w-finish", output=b'"done"'):
    """Drive ``iid`` to ``status`` through the contract (a message, a claim, a terminal step)."""
    assert b.enqueue([event(b, iid, "finish")]) == [True]
    t = claim(b, owner, 50)
    it = next(i for i in t.instances if i.instance_id == iid)
    others = [step(i, touch=False) for i in t.instances if i.instance_id != iid]
    w = step(it, EV1, status=status, set_result=True, output=output)
    assert claim(b, owner, 0, steps=[w] + others).refused == []


def test_lifecycle_and_migrate_is_idempotent(make_backend):
    b = make_backend()
    before, now = b.migrate()
    assert before == now and now >= 1
    assert isinstance(b.url, str) and b.lease_seconds > 0
    assert b.concurrency in ("inline", "thread")
    create(b, "a")
    b2 = make_backend(shared=b)
    assert b2.get_instance("a").name == "orch"


def test_create_get_and_conflicts(backend):
    b = backend
    create(b, "a", tags={"k": "v"}, version="2")
    row = b.get_instance("a")
    assert row.status == S.PENDING and row.input == b"1" and row.tags == {"k": "v"}
    assert row.version == "2" and row.history_length == 0 and row.created_at <= b.now()
    assert b.get_instance("nope") is None
    # a live instance is never replaced; nothing is written
    assert b.create_instance(new_instance(b, "a", input=b"2", replace=True)) == S.PENDING
    assert b.get_instance("a").input == b"1"
    # a blocked create delivers its on_conflict message instead
    create(b, "parent")
    conflict = event(b, "parent", "child-exists")
    assert b.create_instance(new_instance(b, "a", on_conflict=conflict)) == S.PENDING
    t = claim(b, "w")
    par = next(i for i in t.instances if i.instance_id == "parent")
    assert [type(e).__name__ for e in events_of(par)] == ["ExecutionStarted", "EventRaised"]
    claim(b, "w", 0, steps=[step(i, touch=False) for i in t.instances])
    # a finished instance is replaced when the policy says so: history and inbox dropped
    finish(b, "a", S.FAILED)
    assert b.create_instance(new_instance(b, "a", input=b"3")) == S.FAILED
    new = new_instance(b, "a", input=b"3", replace=True)
    assert b.create_instance(new) is None
    row = b.get_instance("a")
    assert (row.status, row.input, row.output, row.history_length) == (S.PENDING, b"3", None, 0)
    assert row.execution_id == new.execution_id
    assert b.load_history("a").chunks == []


def test_claim_leases_with_fencing_and_arrival_order(backend):
    b = backend
    create(b, "a")
    assert b.enqueue([event(b, "a", "one"), event(b, "a", "two")]) == [True, True]
    t = claim(b, "w1")
    assert [i.instance_id for i in t.instances] == ["a"]
    it = t.instances[0]
    assert [getattr(e, "name", None) for e in events_of(it)] == ["orch", "one", "two"]
    ids = [m.id for m in it.messages]
    assert ids == sorted(ids)
    # leased: nobody else gets it, and more messages wait for the lease to end
    b.enqueue([event(b, "a", "three")])
    assert claim(b, "w2").instances == []
    # a stale fence is refused, the right one commits (and releases the lease)
    stale = step(it, EV1)
    stale.fence -= 1
    assert claim(b, "w1", 0, steps=[stale]).refused == [stale]
    assert b.get_instance("a").history_length == 0
    good = step(it, EV1)
    assert claim(b, "w1", 0, steps=[good]).refused == []
    row = b.get_instance("a")
    assert row.status == S.RUNNING and row.history_length == 2
    t2 = claim(b, "w2")
    assert [e.name for e in events_of(t2.instances[0])] == ["three"]
    assert t2.instances[0].fence > it.fence
    assert t2.instances[0].history_length == 2


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_commit(make_backend):
    b = make_backend(lease_seconds=0.4)
    create(b, "a")
    first = claim(b, "w1").instances[0]
    assert claim(b, "w2").instances == []
    time.sleep(0.6)
    taken = claim(b, "w2").instances
    assert [i.instance_id for i in taken] == ["a"] and taken[0].fence > first.fence
    assert claim(b, "w1", 0, steps=[step(first, EV1)]).refused != []
    assert claim(b, "w2", 0, steps=[step(taken[0], EV1)]).refused == []
    assert b.get_instance("a").history_length == 2


def test_a_claim_says_whether_it_took_over_a_lost_lease(make_backend):
    b = make_backend(lease_seconds=0.4)
    create(b, "a")
    create(b, "b")
    first = {i.instance_id: i for i in claim(b, "w1").instances}
    assert set(first) == {"a", "b"}
    assert [i.taken_over for i in first.values()] == [False, False]  # never leased before
    # w1 commits a's step (the lease is released) and stalls on b past its lease
    assert claim(b, "w1", 0, steps=[step(first["a"], EV1)]).refused == []
    b.enqueue([event(b, "a", "more")])
    time.sleep(0.6)
    second = {i.instance_id: i for i in claim(b, "w2").instances}
    assert set(second) == {"a", "b"}
    assert second["b"].taken_over is True
    assert second["a"].taken_over is False
    # w2 settles b without consuming (a release): the next claim takes no lease over
    keep = StepWrite("b", second["b"].fence, second["b"].status, touch=False)
    assert claim(b, "w2", 0, steps=[keep, step(second["a"], EV1)]).refused == []
    third = claim(b, "w3").instances
    assert [(i.instance_id, i.taken_over) for i in third] == [("b", False)]
    # a worker that unregisters releases its leases: no take-over either
    b.unregister_worker("w3")
    fourth = claim(b, "w4").instances
    assert [(i.instance_id, i.taken_over) for i in fourth] == [("b", False)]
    # and a lease left to expire again is a take-over again
    time.sleep(0.6)
    fifth = claim(b, "w5").instances
    assert [(i.instance_id, i.taken_over) for i in fifth] == [("b", True)]


def test_batched_commit_writes_every_step_in_one_turn(backend):
    b = backend
    for i in range(30):
        create(b, f"i{i:02d}")
    t = claim(b, "w", 100)
    assert len(t.instances) == 30
    steps = [step(it, EV1, activities=[activity(it, 0)]) for it in t.instances]
    steps[3].fence += 1000  # one lost lease: only it is refused
    t2 = claim(b, "w", 0, activities=100, steps=steps)
    assert t2.refused == [steps[3]]
    assert len(t2.activities) == 29
    assert b.get_instance("i03").history_length == 0
    assert all(b.get_instance(f"i{i:02d}").history_length == 2 for i in range(30) if i != 3)


def test_claims_are_bounded_per_turn(backend):
    b = backend
    for i in range(12):
        create(b, f"i{i:02d}")
    assert len(claim(b, "w", 5).instances) == 5
    assert len(claim(b, "w", 5).instances) == 5
    assert len(claim(b, "w", 5).instances) == 2


def test_visible_at_delays_delivery_and_next_visible_reports_it(backend):
    b = backend
    create(b, "a")
    t = claim(b, "w")
    claim(b, "w", 0, steps=[step(t.instances[0], EV1)])
    b.enqueue([event(b, "a", "later", delay_us=400_000)])
    assert claim(b, "w").instances == []
    due = b.next_visible(b.now() + 10_000_000)
    assert len(due) == 1 and b.now() < due[0] <= b.now() + 400_000
    time.sleep(0.5)
    got = claim(b, "w").instances
    assert [e.name for e in events_of(got[0])] == ["later"]
    assert b.next_visible(b.now() + 10_000_000) == []


def test_enqueue_and_targeted_messages_need_an_existing_instance(backend):
    b = backend
    create(b, "a")
    assert b.enqueue([event(b, "zz"), event(b, "a")]) == [False, True]
    t = claim(b, "w")
    it = t.instances[0]
    w = step(it, EV1, targeted=[event(b, "nobody"), event(b, "a", "self")])
    claim(b, "w", 0, steps=[w])
    got = claim(b, "w").instances
    assert [e.name for e in events_of(got[0])] == ["self"]


def test_activities_are_leased_retried_and_answered(make_backend):
    b = make_backend(lease_seconds=0.4)
    create(b, "a")
    it = claim(b, "w1").instances[0]
    w = step(it, EV1, activities=[activity(it, 0, "x", b"1"), activity(it, 1, "y")])
    t = claim(b, "w1", 0, activities=1, steps=[w])
    assert [(a.task_id, a.name, a.input, a.attempt) for a in t.activities] == [(0, "x", b"1", 1)]
    first = t.activities[0]
    rest = claim(b, "w2", 0, activities=10).activities
    assert [a.task_id for a in rest] == [1]
    assert b.heartbeat("w1", [first.id]) == {first.id}
    assert b.heartbeat("w2", [first.id]) == set()  # not w2's
    time.sleep(0.6)  # both leases expire; w2 runs them again (at-least-once)
    again = claim(b, "w2", 0, activities=10).activities
    assert sorted((a.task_id, a.attempt) for a in again) == [(0, 2), (1, 2)]
    assert b.heartbeat("w1", [first.id]) == set()  # w1 lost it
    # w1's late outcome is dropped; w2's are delivered
    t = claim(b, "w1", 0, outcomes=[completed(b, first, b"late")])
    assert claim(b, "w9").instances == []
    claim(b, "w2", 0, outcomes=[completed(b, a, b"ok") for a in again])
    got = claim(b, "w3").instances[0]
    evs = events_of(got)
    assert sorted((e.task_scheduled_id, e.result) for e in evs) == [(0, b"ok"), (1, b"ok")]


def test_a_finished_instance_cancels_its_activities(backend):
    b = backend
    create(b, "a")
    it = claim(b, "w").instances[0]
    w = step(it, EV1, activities=[activity(it, i) for i in range(3)])
    running = claim(b, "w", 0, activities=1, steps=[w]).activities
    b.enqueue([event(b, "a", "stop")])
    it = claim(b, "w").instances[0]
    end = step(it, EV1, status=S.TERMINATED, set_result=True, cancel_activities=True)
    claim(b, "w", 0, steps=[end])
    assert claim(b, "w", 0, activities=10).activities == []  # never started again
    assert b.heartbeat("w", [running[0].id]) == set()  # the running one is abandoned
    claim(b, "w", 0, outcomes=[completed(b, running[0], b"x")])
    assert claim(b, "w").instances == []  # its outcome went nowhere


def test_history_chunks_append_in_order_and_reset(backend):
    b = backend
    create(b, "a")
    it = claim(b, "w").instances[0]
    e1 = [h.OrchestratorStarted(-1, 10), h.OrchestratorCompleted(-1, 10)]
    claim(b, "w", 0, steps=[step(it, e1)])
    b.enqueue([event(b, "a", "go", b"1")])
    it = claim(b, "w").instances[0]
    assert it.history_length == 2
    e2 = [h.OrchestratorStarted(-1, 11), h.EventRaised(-1, 11, "go", b"1"),
          h.OrchestratorCompleted(-1, 11)]
    claim(b, "w", 0, steps=[step(it, e2)])
    hist = b.load_history("a")
    assert hist.length == 5 and hist.starts == [0, 2]
    assert h.decode_records(b"".join(hist.chunks)) == e1 + e2
    assert b.load_history("nope") is None
    # continue-as-new: a new execution with a fresh history
    b.enqueue([event(b, "a", "again")])
    it = claim(b, "w").instances[0]
    w = step(it, status=S.RUNNING, reset_history=True, new_execution_id="e2", new_input=b"9",
             set_result=True)
    claim(b, "w", 0, steps=[w])
    row = b.get_instance("a")
    assert (row.execution_id, row.input, row.history_length) == ("e2", b"9", 0)
    assert b.load_history("a").chunks == []


def test_payloads_custom_status_and_results(backend):
    b = backend
    create(b, "a", input=b"x" * 100_000)
    it = claim(b, "w").instances[0]
    assert it.has_custom_status is False
    claim(b, "w", 0, steps=[step(it, EV1, set_custom_status=True, custom_status=b'"50%"')])
    assert b.get_instance("a").custom_status == b'"50%"'
    b.enqueue([event(b, "a")])
    it = claim(b, "w").instances[0]
    assert it.has_custom_status is True
    claim(b, "w", 0, steps=[step(it, EV1)])  # set_custom_status=False leaves it
    assert b.get_instance("a").custom_status == b'"50%"'
    b.enqueue([event(b, "a")])
    it = claim(b, "w").instances[0]
    fd = FailureDetails("ValueError", "bad", "trace", FailureDetails("Inner", "i"), True)
    claim(b, "w", 0, steps=[step(it, EV1, status=S.FAILED, set_custom_status=True,
                                 custom_status=None, set_result=True, failure=fd)])
    row = b.get_instance("a")
    assert row.custom_status is None and row.failure == fd and row.output is None
    lean = b.get_instance("a", payloads=False)
    assert lean.input is None and lean.failure == fd  # failures come without payloads
    assert b.get_instances(["a", "zz"])["a"].input == b"x" * 100_000


def test_deferrals_and_clear_inbox(backend):
    b = backend
    create(b, "a")
    b.enqueue([event(b, "a", "early")])
    it = claim(b, "w").instances[0]
    start_id, early_id = [m.id for m in it.messages]
    w = StepWrite(it.instance_id, it.fence, S.PENDING, touch=False, consumed=[start_id],
                  deferrals=[(early_id, b.now() + 300_000)])
    claim(b, "w", 0, steps=[w])
    assert claim(b, "w").instances == []
    time.sleep(0.4)
    it = claim(b, "w").instances[0]
    assert [e.name for e in events_of(it)] == ["early"]
    b.enqueue([event(b, "a", "x", delay_us=60_000_000)])
    w = StepWrite(it.instance_id, it.fence, S.TERMINATED, clear_inbox=True)
    claim(b, "w", 0, steps=[w])
    assert b.next_visible(b.now() + 120_000_000) == []
    assert b.get_instance("a").status == S.TERMINATED


def test_messages_for_a_leased_instance_wait_and_a_settlement_releases_it(backend):
    b = backend
    create(b, "a")
    it = claim(b, "w").instances[0]
    claim(b, "w", 0, steps=[StepWrite(it.instance_id, it.fence, it.status, touch=False)])
    again = claim(b, "w").instances  # nothing consumed: the start is delivered again
    assert [i.instance_id for i in again] == ["a"]
    assert b.get_instance("a").last_updated_at == b.get_instance("a").created_at


def test_delete_instances_only_in_the_given_statuses(backend):
    b = backend
    create(b, "p")
    create(b, "live")
    finish(b, "p")
    assert b.delete_instances(["p", "live", "zz"], statuses=TERMINAL_STATUSES) == ["p"]
    assert b.get_instance("p") is None and b.load_history("p") is None
    assert b.get_instance("live") is not None


def test_query_filters_and_counts(backend):
    b = backend
    for i in range(25):
        create(b, f"q{i:02d}", name="even" if i % 2 == 0 else "odd")
    create(b, "other", parent=("q00", 3, "e"))
    seen, token = [], None
    while True:
        page = b.query(InstanceFilter(instance_id_prefix="q"), page_size=10,
                       continuation_token=token)
        assert len(page.rows) <= 10
        seen += [r.instance_id for r in page.rows]
        token = page.continuation_token
        if token is None:
            break
    assert seen == [f"q{i:02d}" for i in range(25)]
    odd = b.query(InstanceFilter(name="odd"), page_size=100, continuation_token=None)
    assert len(odd.rows) == 12
    kids = b.query(InstanceFilter(parent_instance_id="q00"), page_size=5, continuation_token=None)
    assert [r.instance_id for r in kids.rows] == ["other"] and kids.rows[0].parent_task_id == 3
    none = b.query(InstanceFilter(statuses=frozenset({S.COMPLETED})), page_size=5,
                   continuation_token=None)
    assert none.rows == [] and none.continuation_token is None
    lean = b.query(InstanceFilter(instance_id_prefix="other"), page_size=5,
                   continuation_token=None, payloads=False)
    assert lean.rows[0].input is None
    with pytest.raises(ValueError):
        b.query(InstanceFilter(), page_size=5, continuation_token="garbage")
    with pytest.raises(ValueError):
        b.query(InstanceFilter(), page_size=0, continuation_token=None)
    assert b.count(InstanceFilter()) == {S.PENDING: 26}
    assert b.count(InstanceFilter(name="even")) == {S.PENDING: 13}
    assert b.count(InstanceFilter(statuses=frozenset({S.FAILED}))) in ({}, {S.FAILED: 0})


_STATUSES = [S.PENDING, S.RUNNING, S.COMPLETED, S.FAILED, S.TERMINATED]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.sampled_from(_STATUSES), min_size=0, max_size=20),
    page_size=st.integers(1, 7),
    want=st.sets(st.sampled_from(_STATUSES), max_size=3),
)
def test_query_pages_partition_the_filtered_set(make_backend, rows, page_size, want):
    """Paging through any status filter returns each matching instance once, in order."""
    b = make_backend()
    for i, status in enumerate(rows):
        create(b, f"i{i:02d}")
    t = claim(b, "w", 100)
    by_id = {it.instance_id: it for it in t.instances}
    steps = []
    for i, status in enumerate(rows):
        it = by_id[f"i{i:02d}"]
        if status == S.PENDING:
            steps.append(StepWrite(it.instance_id, it.fence, S.PENDING, touch=False))
        else:
            steps.append(step(it, EV1, status=status))
    claim(b, "w", 0, steps=steps)
    flt = InstanceFilter(statuses=frozenset(want) if want else None)
    everything = b.query(InstanceFilter(), page_size=100, continuation_token=None).rows
    expected = [(r.created_at, r.instance_id) for r in everything if not want or r.status in want]
    assert expected == sorted(expected)
    got, token = [], None
    while True:
        page = b.query(flt, page_size=page_size, continuation_token=token, payloads=False)
        assert len(page.rows) <= page_size
        got += [(r.created_at, r.instance_id) for r in page.rows]
        token = page.continuation_token
        if token is None:
            break
    assert got == expected
    counts = b.count(flt)
    assert sum(counts.values()) == len(expected)


def test_workers_register_release_and_unregister(make_backend):
    b = make_backend(lease_seconds=30)
    b.register_worker("w1")
    create(b, "a")
    it = claim(b, "w1").instances[0]
    w = step(it, EV1, activities=[activity(it, 0), activity(it, 1)])
    acts = claim(b, "w1", 0, activities=10, steps=[w]).activities
    assert len(acts) == 2
    b.release_activities("w1", [acts[0].id])
    assert [a.task_id for a in claim(b, "w2", 0, activities=10).activities] == [0]
    b.enqueue([event(b, "a")])
    assert claim(b, "w1").instances
    b.unregister_worker("w1")  # its instance lease and its activity are free at once
    assert claim(b, "w2").instances
    assert [a.task_id for a in claim(b, "w2", 0, activities=10).activities] == [1]


def _wait_for(flag: threading.Event, timeout: float = 5.0) -> bool:
    return flag.wait(timeout)


def test_change_notification_in_this_process(backend):
    b = backend
    work = threading.Event()
    seen: list = []
    b.add_work_listener(lambda vis: (seen.append(vis), work.set()))
    create(b, "a")
    assert _wait_for(work)
    changed = threading.Event()
    cb = changed.set
    b.add_instance_watcher("a", cb)
    assert b.watcher_count("a") == 1 and b.watcher_count() == 1
    it = claim(b, "w").instances[0]
    changed.clear()
    claim(b, "w", 0, steps=[step(it, EV1)])
    assert _wait_for(changed)
    b.remove_instance_watcher("a", cb)
    assert b.watcher_count("a") == 0
    b.remove_instance_watcher("a", cb)  # twice is harmless


def test_change_notification_across_connections(make_backend):
    """Another connection (another process's view of the store) hears of commits too."""
    a = make_backend()
    other = make_backend(shared=a)
    work = threading.Event()
    other.add_work_listener(lambda vis: work.set())
    changed = threading.Event()
    create(a, "x")
    other.add_instance_watcher("x", changed.set)
    time.sleep(0.1)
    work.clear()
    changed.clear()
    a.enqueue([event(a, "x")])
    assert _wait_for(work), "work committed elsewhere must wake listeners"
    it = claim(a, "w").instances[0]
    changed.clear()
    claim(a, "w", 0, steps=[step(it, EV1, status=S.COMPLETED)])
    assert _wait_for(changed), "an instance committed elsewhere must wake its watchers"


def test_a_failing_listener_never_fails_the_commit(backend):
    b = backend

    def boom(*_):
        raise RuntimeError("listener bug")

    b.add_work_listener(boom)
    b.add_instance_watcher("a", boom)
    create(b, "a")
    it = claim(b, "w").instances[0]
    assert claim(b, "w", 0, steps=[step(it, EV1)]).refused == []
    assert b.get_instance("a").history_length == 2
