"""The SQLite store on its own: schema, instances, inbox, leases and fencing, queries, purge."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from durable_core import history as h
from durable_core.backends import BackendNotAvailableError, DEFAULT_URL, open_backend
from durable_core.backends.base import ActivityResult, ReuseIdPolicy, StepCommit, WouldBlock
from durable_core.backends.sqlite import SCHEMA_VERSION, SqliteBackend, path_from_url
from durable_core.errors import (
    DurableError,
    OrchestrationAlreadyExistsError,
    OrchestrationNotFoundError,
    StoreBusyError,
)
from durable_core.history import FailureDetails
from durable_core.status import OrchestrationStatus as S

NOW = 1_700_000_000_000_000


@pytest.fixture
def db(tmp_path):
    b = SqliteBackend(str(tmp_path / "s.db"), lease_us=1_000_000)
    yield b
    b.close()


def create(db, iid, name="orch", inp=b"1", **kw):
    kw.setdefault("start_at", None)
    kw.setdefault("tags", None)
    kw.setdefault("reuse_policy", ReuseIdPolicy.ERROR)
    kw.setdefault("now", NOW)
    db.create_instance(iid, name, inp, **kw)


def test_url_parsing():
    assert path_from_url("sqlite:///rel.db") == "rel.db"
    assert path_from_url("sqlite:////abs/x.db") == "/abs/x.db"
    for bad in ("sqlite:///:memory:", "sqlite:///", "sqlite://x.db"):
        with pytest.raises(ValueError):
            path_from_url(bad)
    with pytest.raises(BackendNotAvailableError):
        open_backend("postgresql://localhost/x")
    with pytest.raises(BackendNotAvailableError):
        open_backend("mysql://x")
    assert DEFAULT_URL == "sqlite:///durable.db"


def test_schema_is_versioned_and_wal(db, tmp_path):
    c = sqlite3.connect(db.path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"instances", "history", "inbox", "activities", "workers"} <= tables
    # reopening migrates nothing and keeps data
    create(db, "a")
    db2 = SqliteBackend(db.path)
    assert db2.get_instance("a").name == "orch"
    db2.close()
    # a store from a newer version is refused with a clear error
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(DurableError, match="newer"):
        SqliteBackend(db.path)


def test_create_and_reuse_policy(db):
    create(db, "a", tags={"k": "v"})
    row = db.get_instance("a")
    assert row.status == S.PENDING and row.input == b"1" and row.tags == {"k": "v"}
    with pytest.raises(OrchestrationAlreadyExistsError):
        create(db, "a")
    with pytest.raises(OrchestrationAlreadyExistsError):  # a live instance is never replaced
        create(db, "a", reuse_policy=ReuseIdPolicy.REPLACE_IF_TERMINAL)
    # finish it by hand, then replace
    with db._tx() as c:
        c.execute("UPDATE instances SET status=? WHERE instance_id='a'", (int(S.COMPLETED),))
    with pytest.raises(OrchestrationAlreadyExistsError, match="REPLACE_IF_TERMINAL"):
        create(db, "a")
    old_eid = db.get_instance("a").execution_id
    create(db, "a", inp=b"2", reuse_policy=ReuseIdPolicy.REPLACE_IF_TERMINAL)
    row = db.get_instance("a")
    assert row.status == S.PENDING and row.input == b"2" and row.execution_id != old_eid
    assert db.get_instance("nope") is None
    assert db.get_status("nope") is None


def test_fetch_leases_and_fences(db):
    create(db, "a")
    items = db.fetch_orchestrations("w1", now=NOW, limit=10)
    assert [i.instance_id for i in items] == ["a"]
    it = items[0]
    evs = h.decode_records(it.new_events)
    assert isinstance(evs[0], h.ExecutionStarted) and evs[0].input == b"1"
    # leased: nobody else gets it while the lease lasts
    assert db.fetch_orchestrations("w2", now=NOW + 1, limit=10) == []
    # the lease expires and w2 takes over; w1's commit is refused (fencing)
    create_later = NOW + 2_000_000
    db.enqueue_event("a", h.EventRaised(-1, NOW, "x", None), now=NOW)
    items2 = db.fetch_orchestrations("w2", now=create_later, limit=10)
    assert [i.instance_id for i in items2] == ["a"]
    chunk = h.encode([h.OrchestratorStarted(-1, NOW)])
    stale = StepCommit(it, chunk, 1, S.RUNNING)
    assert db.commit_steps("w1", [stale], now=NOW) == [stale]
    assert db.load_history("a") == b""
    fresh = StepCommit(items2[0], chunk, 1, S.RUNNING, activities=[(0, "act", b"3")])
    assert db.commit_steps("w2", [fresh], now=NOW) == []
    assert h.decode(db.load_history("a")) == [h.OrchestratorStarted(-1, NOW)]
    row = db.get_instance("a")
    assert row.status == S.RUNNING and row.history_length == 1
    # the consumed inbox rows are gone; nothing left to fetch
    assert db.fetch_orchestrations("w2", now=create_later + 1, limit=10) == []


def test_history_chunks_concatenate(db):
    create(db, "a")
    it = db.fetch_orchestrations("w", now=NOW, limit=1)[0]
    e1 = [h.OrchestratorStarted(-1, NOW), h.OrchestratorCompleted(-1, NOW)]
    db.commit_steps("w", [StepCommit(it, h.encode(e1), 2, S.RUNNING)], now=NOW)
    db.enqueue_event("a", h.EventRaised(-1, NOW, "go", b"1"), now=NOW)
    it = db.fetch_orchestrations("w", now=NOW + 1, limit=1)[0]
    assert it.history_length == 2
    e2 = [h.OrchestratorStarted(-1, NOW + 1), h.EventRaised(-1, NOW, "go", b"1")]
    db.commit_steps("w", [StepCommit(it, h.encode_records(e2), 2, S.RUNNING)], now=NOW)
    assert h.decode(db.load_history("a")) == e1 + e2
    assert db.get_instance("a").history_length == 4


def test_activity_queue_leases(db):
    create(db, "a")
    it = db.fetch_orchestrations("w1", now=NOW, limit=1)[0]
    db.commit_steps(
        "w1",
        [StepCommit(it, h.encode([]), 0, S.RUNNING, activities=[(0, "x", b"1"), (1, "y", None)])],
        now=NOW,
    )
    acts = db.fetch_activities("w1", now=NOW, limit=1)
    assert [(a.task_id, a.name, a.input, a.attempt) for a in acts] == [(0, "x", b"1", 1)]
    rest = db.fetch_activities("w2", now=NOW, limit=10)
    assert [a.task_id for a in rest] == [1]
    # the leases expire; w2 runs task 0 again (at-least-once); w1's late result is dropped
    again = db.fetch_activities("w2", now=NOW + 2_000_000, limit=10)
    assert [(a.task_id, a.attempt) for a in again] == [(0, 2), (1, 2)]
    assert db.complete_activities("w1", [ActivityResult(acts[0], result=b"late")], now=NOW) == 0
    fd = FailureDetails("ValueError", "bad")
    n = db.complete_activities(
        "w2",
        [ActivityResult(again[0], result=b"ok"), ActivityResult(again[1], failure=fd)],
        now=NOW + 2_000_001,
    )
    assert n == 2
    it = db.fetch_orchestrations("w1", now=NOW + 3_000_000, limit=1)[0]
    evs = h.decode_records(it.new_events)
    assert evs == [
        h.TaskCompleted(-1, NOW + 2_000_001, 0, b"ok"),
        h.TaskFailed(-1, NOW + 2_000_001, 1, fd),
    ]


def test_dead_worker_leases_are_released_at_once(db, tmp_path):
    # a worker process that died (its pid is gone) still holds leases in the store
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    create(db, "a")
    db.register_worker("dead", now=NOW)
    with db._tx() as c:
        c.execute("UPDATE workers SET pid=? WHERE owner='dead'", (p.pid,))
    assert db.fetch_orchestrations("dead", now=NOW, limit=1)
    assert db.fetch_orchestrations("w2", now=NOW, limit=1) == []
    db.register_worker("w2", now=NOW)  # sees the dead worker and releases its leases
    assert [i.instance_id for i in db.fetch_orchestrations("w2", now=NOW, limit=1)] == ["a"]


def test_execution_filter_drops_stale_messages(db):
    create(db, "a")
    it = db.fetch_orchestrations("w", now=NOW, limit=1)[0]
    db.commit_steps("w", [StepCommit(it, h.encode([]), 0, S.RUNNING)], now=NOW)
    with db._tx() as c:  # a timer for an earlier execution of the instance
        c.execute(
            "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
            "VALUES ('a','old',16,?,?)",
            (NOW, h.encode_records([h.TimerFired(-1, NOW, NOW, 3)])),
        )
    db.enqueue_event("a", h.EventRaised(-1, NOW, "e", None), now=NOW)
    it = db.fetch_orchestrations("w", now=NOW + 1, limit=1)[0]
    assert [type(e).__name__ for e in h.decode_records(it.new_events)] == ["EventRaised"]
    assert len(it.inbox_ids) == 2  # both consumed
    db.commit_steps("w", [StepCommit(it, h.encode_records([]), 0, S.RUNNING)], now=NOW)
    # only a stale message: consumed without a step
    with db._tx() as c:
        c.execute(
            "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
            "VALUES ('a','old',16,?,?)",
            (NOW, h.encode_records([h.TimerFired(-1, NOW, NOW, 4)])),
        )
    assert db.fetch_orchestrations("w", now=NOW + 2, limit=1) == []
    assert db._conn().execute("SELECT count(*) FROM inbox").fetchone()[0] == 0
    assert db.get_instance("a").status == S.RUNNING


def test_delayed_start_and_events_before_start(db):
    create(db, "a", start_at=NOW + 5_000_000)
    assert db.next_visible(now=NOW, horizon=NOW + 10_000_000) == [NOW + 5_000_000]
    db.enqueue_event("a", h.EventRaised(-1, NOW, "early", None), now=NOW)
    assert db.fetch_orchestrations("w", now=NOW + 1, limit=5) == []
    it = db.fetch_orchestrations("w", now=NOW + 5_000_000, limit=5)[0]
    kinds = [type(e).__name__ for e in h.decode_records(it.new_events)]
    assert kinds == ["ExecutionStarted", "EventRaised"]


def test_terminate_before_delayed_start(db):
    create(db, "a", start_at=NOW + 5_000_000)
    db.terminate("a", b'"stop"', recursive=True, now=NOW)
    assert db.fetch_orchestrations("w", now=NOW + 1, limit=5) == []
    row = db.get_instance("a")
    assert row.status == S.TERMINATED and row.output == b'"stop"'
    assert db.fetch_orchestrations("w", now=NOW + 10_000_000, limit=5) == []


def test_unknown_ids(db):
    with pytest.raises(OrchestrationNotFoundError):
        db.enqueue_event("zz", h.EventRaised(-1, NOW, "e", None), now=NOW)
    with pytest.raises(OrchestrationNotFoundError):
        db.terminate("zz", None, recursive=True, now=NOW)
    with pytest.raises(OrchestrationNotFoundError):
        db.restart("zz", None, now=NOW)
    assert db.get_history("zz") is None
    assert db.purge("zz", recursive=True) == 0


def test_query_pagination_and_filters(db):
    for i in range(25):
        create(db, f"q{i:02d}", now=NOW + i)
    create(db, "other", now=NOW + 100)
    seen = []
    token = None
    while True:
        page = db.query(
            created_from=None, created_to=None, statuses=None, instance_id_prefix="q",
            page_size=10, continuation_token=token,
        )
        seen += [r.instance_id for r in page.rows]
        token = page.continuation_token
        if token is None:
            break
    assert seen == [f"q{i:02d}" for i in range(25)]
    page = db.query(
        created_from=NOW + 5, created_to=NOW + 9, statuses=[S.PENDING],
        instance_id_prefix=None, page_size=100, continuation_token=None,
    )
    assert [r.instance_id for r in page.rows] == [f"q{i:02d}" for i in range(5, 10)]
    none = db.query(
        created_from=None, created_to=None, statuses=[S.COMPLETED], instance_id_prefix=None,
        page_size=100, continuation_token=None,
    )
    assert none.rows == [] and none.continuation_token is None
    nopay = db.query(
        created_from=None, created_to=None, statuses=None, instance_id_prefix="other",
        page_size=5, continuation_token=None, fetch_payloads=False,
    )
    assert nopay.rows[0].input is None
    with pytest.raises(ValueError):
        db.query(
            created_from=None, created_to=None, statuses=None, instance_id_prefix=None,
            page_size=5, continuation_token="garbage",
        )


def test_purge(db):
    create(db, "p", now=NOW)
    create(db, "child", now=NOW, parent=("p", 0, None))
    assert db.purge("p", recursive=True) == 0  # live instances are not purged
    with db._tx() as c:
        c.execute("UPDATE instances SET status=?", (int(S.COMPLETED),))
    assert db.purge("p", recursive=True) == 2
    assert db.get_instance("child") is None
    for i in range(4):
        create(db, f"x{i}", now=NOW + i)
    with db._tx() as c:
        c.execute("UPDATE instances SET status=? WHERE instance_id IN ('x0','x1')", (int(S.FAILED),))
    assert db.purge_by(created_from=None, created_to=None, statuses=[S.FAILED]) == 2
    assert db.purge_by(created_from=None, created_to=None, statuses=None) == 0  # rest are live


def test_failure_json_roundtrip():
    from durable_core.backends.base import failure_from_json, failure_to_json

    fd = FailureDetails("A", "m", "st", FailureDetails("B", "inner", None, None, True), False)
    assert failure_from_json(failure_to_json(fd)) == fd
    assert failure_to_json(None) is None and failure_from_json(None) is None
    json.loads(failure_to_json(fd))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_STATUSES = [S.PENDING, S.RUNNING, S.COMPLETED, S.FAILED, S.TERMINATED]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(_STATUSES)), min_size=0, max_size=30
    ),
    page_size=st.integers(1, 7),
    want=st.sets(st.sampled_from(_STATUSES), max_size=3),
    window=st.tuples(st.integers(0, 5), st.integers(0, 5)),
)
def test_query_pages_partition_the_filtered_set(tmp_path_factory, rows, page_size, want, window):
    """Paging through any filter returns each matching instance once, in creation order."""
    db = SqliteBackend(str(tmp_path_factory.mktemp("q") / "q.db"))
    try:
        for i, (created, status) in enumerate(rows):
            create(db, f"i{i:02d}", now=NOW + created)
            with db._tx() as c:
                c.execute(
                    "UPDATE instances SET status=? WHERE instance_id=?", (int(status), f"i{i:02d}")
                )
        lo, hi = min(window), max(window)
        expected = sorted(
            (NOW + created, f"i{i:02d}")
            for i, (created, status) in enumerate(rows)
            if lo <= created <= hi and (not want or status in want)
        )
        got, token = [], None
        while True:
            page = db.query(
                created_from=NOW + lo, created_to=NOW + hi, statuses=sorted(want) or None,
                instance_id_prefix=None, page_size=page_size, continuation_token=token,
            )
            assert len(page.rows) <= page_size
            got += [(r.created_at, r.instance_id) for r in page.rows]
            token = page.continuation_token
            if token is None:
                break
        assert got == expected
    finally:
        db.close()


def _wal_after_sustained_writes(tmp_path, name: str, catch_up_pages: int) -> tuple[int, int]:
    """Commit 1,500 instances (8 KB inputs) back to back while background checkpoints run;
    return (the WAL file's size, the instances stored)."""
    import os
    import time

    b = SqliteBackend(str(tmp_path / name))
    try:
        b.start_background_checkpoints(interval=0.002, catch_up_pages=catch_up_pages)
        blob = os.urandom(8000)
        for i in range(1500):
            create(b, f"i{i}", inp=blob)
            if i % 25 == 24:
                time.sleep(0.001)  # a server does other work between commits
        wal = os.path.getsize(b.path + "-wal")  # the file never shrinks below 64 MB
        n = b._conn().execute("SELECT count(*) FROM instances").fetchone()[0]
    finally:
        b.close()
    return wal, n


def test_background_checkpoints_keep_the_wal_bounded_under_sustained_writes(tmp_path):
    # Passive checkpoints alone never finish while commits keep coming, so the WAL is never
    # restarted and grows with every commit (the baseline); the catch-up pass bounds it.
    grown, n0 = _wal_after_sustained_writes(tmp_path, "baseline.db", catch_up_pages=10**9)
    bounded, n1 = _wal_after_sustained_writes(tmp_path, "bounded.db", catch_up_pages=64)
    assert n0 == n1 == 1500
    assert grown > 12_000_000  # every 8 KB input went through the WAL and stayed there
    assert bounded < grown / 4, (bounded, grown)


def test_background_checkpoint_arguments_are_checked(db):
    with pytest.raises(ValueError):
        db.start_background_checkpoints(interval=0)
    with pytest.raises(ValueError):
        db.start_background_checkpoints(catch_up_pages=0)


def test_a_writer_waits_for_another_process_writer_then_proceeds(tmp_path):
    import threading

    b = SqliteBackend(str(tmp_path / "w.db"), busy_timeout_s=5.0)
    other = sqlite3.connect(b.path, isolation_level=None, check_same_thread=False)  # another process
    try:
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.05, other.execute, args=("COMMIT",)).start()
        create(b, "a")  # waits for the lock, not for the busy timeout
        assert b.get_instance("a") is not None
        # the connection's own busy timeout is back for every other statement
        assert b._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        other.close()
        b.close()


def test_a_writer_gives_up_after_the_busy_timeout(tmp_path):
    b = SqliteBackend(str(tmp_path / "w.db"), busy_timeout_s=0.1)
    other = sqlite3.connect(b.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusyError, match="busy timeout") as err:
            create(b, "a")
        assert isinstance(err.value, TimeoutError)
        assert isinstance(err.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
        create(b, "a")  # nothing was left half-done by the failed attempt
        assert b.get_instance("a") is not None
        assert b._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 100
    finally:
        other.close()
        b.close()


def test_nonblocking_write_refuses_at_once_when_another_connection_writes(tmp_path):
    import time

    b = SqliteBackend(str(tmp_path / "w.db"), busy_timeout_s=5.0)
    other = sqlite3.connect(b.path, isolation_level=None, check_same_thread=False)  # another process
    try:
        other.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        with b.nonblocking(), pytest.raises(WouldBlock):
            create(b, "a")
        assert time.monotonic() - t0 < 1.0  # not the 5 s busy timeout
        other.execute("ROLLBACK")
        assert b.get_instance("a") is None  # nothing was written
        with b.nonblocking():
            create(b, "a")  # the lock is free: the same call goes through
        assert b.get_instance("a") is not None
        assert b._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        # outside the block, writes wait as before
        other.execute("BEGIN IMMEDIATE")
        import threading

        threading.Timer(0.05, other.execute, args=("ROLLBACK",)).start()
        create(b, "b")
        assert b.get_instance("b") is not None
    finally:
        other.close()
        b.close()


def test_nonblocking_write_refuses_while_another_thread_of_the_process_writes(tmp_path):
    import threading

    b = SqliteBackend(str(tmp_path / "w.db"))
    try:
        with b._write_lock:  # what a worker thread's transaction holds
            box = []

            def attempt():
                with b.nonblocking():
                    try:
                        create(b, "a")
                        box.append("written")
                    except WouldBlock:
                        box.append("refused")

            t = threading.Thread(target=attempt)
            t.start()
            t.join(5)
            assert box == ["refused"]
        assert b.get_instance("a") is None
        # the flag is per thread and restored on exit
        assert getattr(b._local, "nowait", False) is False
        create(b, "a")
        assert b.get_instance("a") is not None
    finally:
        b.close()
