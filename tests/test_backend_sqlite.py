"""What is particular to the SQLite store: URLs and options, the schema and its migration from
earlier versions, refusing files that are not ours, errors that name the file, read-only
stores, single-writer handling (busy waits, TryLater), WAL checkpoints, payloads kept out of
the instance rows, and corruption done to the file itself. The contract every backend shares
is tested in ``tests/conformance``."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import durable_core as dc
from durable_core import history as h
from durable_core.backends import DEFAULT_URL, open_backend, split_options
from durable_core.backends.base import InstanceFilter, TryLater
from durable_core.backends.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteBackend, path_from_url
from durable_core.errors import (
    BackendNotAvailableError,
    HistoryCorruptError,
    StoreBusyError,
    StoreIncompatibleError,
    StoreUnavailableError,
)
from durable_core.status import OrchestrationStatus as S
from durable_core.store import Store

from conformance.rows import claim, create, step

DATA = Path(__file__).parent / "data"
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


@pytest.fixture
def db(tmp_path):
    b = SqliteBackend(str(tmp_path / "s.db"), lease_seconds=1.0)
    yield b
    b.close()


# -- URLs and options ------------------------------------------------------------------------
def test_url_parsing_and_options(tmp_path):
    assert path_from_url("sqlite:///rel.db") == "rel.db"
    assert path_from_url("sqlite:////abs/x.db") == "/abs/x.db"
    for bad in ("sqlite:///:memory:", "sqlite:///", "sqlite://x.db", "sqlite:///file::memory:?x"):
        with pytest.raises(BackendNotAvailableError):
            path_from_url(bad)
    with pytest.raises(BackendNotAvailableError, match="unknown store URL scheme 'mysql'"):
        open_backend("mysql://x")
    with pytest.raises(BackendNotAvailableError):
        open_backend("no-scheme-at-all")
    assert DEFAULT_URL == "sqlite:///durable.db"
    assert split_options("sqlite:///a.db?mode=ro&lease_seconds=5") == (
        "sqlite:///a.db", {"mode": "ro", "lease_seconds": "5"})
    # options are parsed, never made part of the file name
    url = f"sqlite:///{tmp_path / 'o.db'}?lease_seconds=7&busy_timeout=2"
    b = open_backend(url)
    try:
        assert b.path == str(tmp_path / "o.db") and b.lease_seconds == 7 and b.write_timeout == 2
        assert not any("?" in p for p in os.listdir(tmp_path))
    finally:
        b.close()
    for bad in ("?nope=1", "?lease_seconds=abc", "?lease_seconds=-1", "?mode=rx",
                "?synchronous=sometimes"):
        with pytest.raises(BackendNotAvailableError):
            open_backend(f"sqlite:///{tmp_path / 'p.db'}{bad}")
    # a keyword option wins over the URL's
    b = open_backend(f"sqlite:///{tmp_path / 'o.db'}?lease_seconds=7", lease_seconds=3)
    assert b.lease_seconds == 3
    b.close()


def test_backends_are_found_by_scheme_including_entry_points(monkeypatch, tmp_path):
    from durable_core import backends

    class Fake(SqliteBackend):
        schemes = ("fakestore",)

        @classmethod
        def from_url(cls, url, options, *, migrate=True, create=True):
            return SqliteBackend(str(tmp_path / "via-entry-point.db"))

    class EP:
        name = "fakestore"
        value = "fake:Fake"

        def load(self):
            return Fake

    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group: [EP()] if group == "durable_core.backends" else [])
    b = backends.open_backend("fakestore://anything")
    try:
        assert b.path.endswith("via-entry-point.db")
    finally:
        b.close()


# -- schema, migrations, foreign files -------------------------------------------------------
def test_schema_is_versioned_marked_and_wal(db):
    c = sqlite3.connect(db.path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"instances", "payloads", "history", "inbox", "activities", "workers"} <= tables
    # payloads never sit in the clustered instance rows that fetches walk
    cols = {r[1] for r in c.execute("PRAGMA table_info(instances)")}
    assert not cols & {"input", "output", "custom_status", "failure", "tags"}
    create(db, "a")
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(StoreIncompatibleError, match="newer"):
        SqliteBackend(db.path)


def test_a_store_of_the_previous_schema_is_migrated_and_keeps_working(tmp_path):
    """A v1 store made by the code before this schema (tests/data/store_v1.db): finished,
    failed, waiting, sleeping and delayed instances all carry on after the upgrade."""
    path = tmp_path / "old.db"
    shutil.copy(DATA / "store_v1.db", path)
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == 1
    c.close()
    url = f"sqlite:///{path}"
    with pytest.raises(StoreIncompatibleError, match="durable-core migrate"):
        open_backend(url, migrate=False)
    b = open_backend(url)
    try:
        assert b.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
        done = b.get_instance("done-1")
        assert done.status == S.COMPLETED and done.output == b"42" and done.tags == {"team": "a"}
        failed = b.get_instance("failed-1")
        assert failed.status == S.FAILED and failed.failure.error_type == "ValueError"
        assert "broken x" in failed.failure.message
        later = b.get_instance("later-1")
        assert later.status == S.PENDING and later.scheduled_start_at > b.now()
        hist = Store(b).history("waiting-1")
        assert len(hist) == 11 and isinstance(hist[1], h.ExecutionStarted)
    finally:
        b.close()

    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: x.upper(), "up")

    def flow(ctx, items):
        ctx.set_custom_status({"stage": "started"})
        r = yield dc.when_all([ctx.call_activity("up", input=i) for i in items])
        got = yield ctx.wait_for_external_event("go")
        ctx.set_custom_status({"stage": "done"})
        return {"r": r, "got": got}

    reg.add_orchestrator(flow, "flow")
    with dc.Runtime(url, registry=reg) as rt:
        c = rt.client
        assert c.get_orchestration_state("waiting-1").custom_status == {"stage": "started"}
        c.raise_orchestration_event("waiting-1", "go", data=7)
        st = c.wait_for_orchestration_completion("waiting-1", timeout=30)
        assert st.output == {"r": ["A", "B"], "got": 7}
        assert st.custom_status == {"stage": "done"}
        c.raise_orchestration_event("later-1", "early")  # waits for the delayed start
        assert c.get_orchestration_state("later-1").runtime_status == S.PENDING


def test_a_file_of_another_application_is_refused_untouched(tmp_path):
    path = tmp_path / "theirs.db"
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)")
    c.commit()
    c.close()
    before = path.read_bytes()
    with pytest.raises(StoreIncompatibleError, match="another application"):
        open_backend(f"sqlite:///{path}")
    assert path.read_bytes() == before
    c = sqlite3.connect(path)
    c.execute("PRAGMA application_id=1234")
    c.execute("DROP TABLE customers")
    c.commit()
    c.close()
    with pytest.raises(StoreIncompatibleError, match="0x4d2"):
        open_backend(f"sqlite:///{path}")


def test_errors_name_the_store(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(StoreUnavailableError, match="is a directory"):
        open_backend(f"sqlite:///{d}")
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        open_backend(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(StoreIncompatibleError, match=str(junk)):
        open_backend(f"sqlite:///{junk}")


def test_the_worker_cli_says_what_is_wrong_in_one_line(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database " * 100)
    p = subprocess.run(
        [sys.executable, "-m", "durable_core", "worker", "json", "--db", f"sqlite:///{junk}"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(junk) in lines[0], p.stderr


_READ_ONLY_CHECK = """
import sys
import durable_core as dc
url = sys.argv[1]
c = dc.Client(url)
assert c.get_orchestration_state("a").runtime_status == dc.OrchestrationStatus.PENDING
assert len(c.query_orchestrations().states) == 1
try:
    c.schedule_new_orchestration("orch", instance_id="b")
except dc.StoreUnavailableError as e:
    assert "read-only" in str(e), e
    print("read-only ok")
"""


def _without_file_permission_override() -> list[str]:
    """A command prefix under which even root obeys file permissions (or [] if not root)."""
    if not ROOT:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: cannot drop CAP_DAC_OVERRIDE")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_read_only_store_can_still_be_read(tmp_path, what):
    """A store file (or its directory) without write permission opens read-only: reads work,
    a write is a one-line StoreUnavailableError."""
    path = tmp_path / "ro" / "s.db"
    path.parent.mkdir()
    b = SqliteBackend(str(path))
    create(b, "a")
    b.close()
    locked = path if what == "file" else path.parent
    for extra in (path.parent / "s.db-wal", path.parent / "s.db-shm"):
        if extra.exists() and what == "file":
            os.chmod(extra, stat.S_IRUSR)
    os.chmod(locked, stat.S_IRUSR | (stat.S_IXUSR if what == "directory" else 0))
    try:
        p = subprocess.run(_without_file_permission_override()
                           + [sys.executable, "-c", _READ_ONLY_CHECK, f"sqlite:///{path}"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "read-only ok" in p.stdout, p.stdout + p.stderr
    finally:
        for f in (path.parent, path, path.parent / "s.db-wal", path.parent / "s.db-shm"):
            if f.exists():
                os.chmod(f, stat.S_IRWXU)


def test_mode_ro_opens_read_only(db):
    create(db, "a")
    ro = open_backend(db.url + "?mode=ro")
    try:
        assert ro.read_only and ro.get_instance("a") is not None
        with pytest.raises(StoreUnavailableError, match="read-only"):
            create(ro, "b")
        client = dc.Client(ro)
        assert client.get_orchestration_state("a").runtime_status == S.PENDING
    finally:
        ro.close()
    with pytest.raises(StoreUnavailableError, match="no such store"):
        open_backend(db.url + "-missing?mode=ro")


# -- single writer ----------------------------------------------------------------------------
def test_a_writer_waits_for_another_process_writer_then_proceeds(tmp_path):
    b = SqliteBackend(str(tmp_path / "w.db"), busy_timeout=5.0)
    other = sqlite3.connect(b.path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.05, other.execute, args=("COMMIT",)).start()
        t0 = time.monotonic()
        create(b, "a")  # waits for the lock, not for the busy timeout
        assert time.monotonic() - t0 < 2.0
        assert b.get_instance("a") is not None
    finally:
        other.close()
        b.close()


def test_a_writer_gives_up_after_the_busy_timeout(tmp_path):
    b = SqliteBackend(str(tmp_path / "w.db"), busy_timeout=0.1)
    other = sqlite3.connect(b.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusyError, match="busy timeout") as err:
            create(b, "a")
        assert isinstance(err.value, TimeoutError)
        other.execute("ROLLBACK")
        create(b, "a")  # nothing was left half-done by the failed attempt
        assert b.get_instance("a") is not None
    finally:
        other.close()
        b.close()


def test_attempt_refuses_at_once_when_another_connection_writes(tmp_path):
    b = SqliteBackend(str(tmp_path / "w.db"), busy_timeout=5.0)
    other = sqlite3.connect(b.path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        with b.attempt(), pytest.raises(TryLater):
            create(b, "a")
        assert time.monotonic() - t0 < 1.0  # not the 5 s busy timeout
        other.execute("ROLLBACK")
        assert b.get_instance("a") is None  # nothing was written
        with b.attempt():
            create(b, "a")  # the lock is free: the same call goes through
        assert b.get_instance("a") is not None
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.05, other.execute, args=("ROLLBACK",)).start()
        create(b, "b")  # outside the block, writes wait as before
        assert b.get_instance("b") is not None
    finally:
        other.close()
        b.close()


def test_attempt_refuses_while_another_thread_of_the_process_writes(tmp_path):
    b = SqliteBackend(str(tmp_path / "w.db"), busy_timeout=10.0)
    other = SqliteBackend(b.path, busy_timeout=10.0)  # another object on the file: same lock
    outside = sqlite3.connect(b.path, isolation_level=None, check_same_thread=False)
    outside.execute("BEGIN IMMEDIATE")  # makes the other thread's write wait, holding its lock
    t = threading.Thread(target=create, args=(other, "first"))
    t.start()
    try:
        time.sleep(0.2)  # the other thread is inside its write now, waiting for SQLite's lock
        t0 = time.monotonic()
        with b.attempt(), pytest.raises(TryLater):
            create(b, "a")
        assert time.monotonic() - t0 < 1.0
    finally:
        outside.execute("ROLLBACK")
        t.join()
        outside.close()
    assert other.get_instance("first") is not None and b.get_instance("a") is None
    create(b, "a")
    assert b.get_instance("a") is not None
    other.close()
    b.close()


# -- worker liveness --------------------------------------------------------------------------
def test_a_dead_workers_leases_are_released_at_once(db):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    create(db, "a")
    db.register_worker("dead")
    c = sqlite3.connect(db.path)
    c.execute("UPDATE workers SET pid=? WHERE owner='dead'", (p.pid,))
    c.commit()
    c.close()
    assert claim(db, "dead").instances
    assert claim(db, "w2").instances == []
    db.register_worker("w2")  # sees the dead worker on this host and releases its leases
    assert [i.instance_id for i in claim(db, "w2").instances] == ["a"]


# -- backlog ----------------------------------------------------------------------------------
def test_backlog_reads_due_rows_by_index_whatever_the_store_holds(tmp_path):
    """The backlog a metrics collector reads every few seconds follows the ready work: 200,000
    finished instances with their history, 1,000 ready ones and 10,000 timers due later."""
    from durable_core.backends.sqlite.rows import BACKLOG

    b = SqliteBackend(str(tmp_path / "big.db"))
    try:
        c = sqlite3.connect(b.path)
        with c:
            c.executemany(
                "INSERT INTO instances(instance_id, execution_id, name, status, created_at, "
                "last_updated_at, history_length) VALUES (?, 'e', 'orch', 1, ?, ?, 6)",
                ((f"done-{g}", g, g) for g in range(200_000)))
            c.executemany("INSERT INTO history(instance_id, seq, data) VALUES (?, 0, x'00')",
                          ((f"done-{g}",) for g in range(200_000)))
            c.executemany(
                "INSERT INTO instances(instance_id, execution_id, name, status, created_at, "
                "last_updated_at) VALUES (?, 'e', 'orch', 0, ?, ?)",
                ((f"live-{g}", g, g) for g in range(11_000)))
            c.executemany(
                "INSERT INTO inbox(instance_id, kind, visible_at, event) VALUES (?, 6, ?, x'00')",
                ((f"live-{g}", 10 + g if g < 1000 else 9_000_000_000_000_000 + g)
                 for g in range(11_000)))
        c.execute("ANALYZE")
        plan = [r[3] for r in c.execute("EXPLAIN QUERY PLAN " + BACKLOG, (b.now(),))]
        c.close()
        text = "\n".join(plan)
        assert "SEARCH b USING INDEX inbox_visible (visible_at<?)" in text, text
        assert "SEARCH i USING PRIMARY KEY (instance_id=?)" in text, text
        assert not [p for p in plan if p.startswith("SCAN") and p != "SCAN activities"], text
        assert "history" not in text and "payloads" not in text, text
        assert b.backlog() == (1000, 0, 10)
        t0 = time.perf_counter()
        for _ in range(20):
            b.backlog()
        assert (time.perf_counter() - t0) / 20 < 0.05
    finally:
        b.close()


def test_backlog_is_a_read_that_never_takes_the_write_lock(db):
    create(db, "a")
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing
        with db._write_lock, db.attempt():  # and another thread of this one
            t0 = time.monotonic()
            assert db.backlog().instances == 1  # no TryLater, no wait
            assert time.monotonic() - t0 < 0.5
        other.execute("ROLLBACK")
    finally:
        other.close()
    ro = open_backend(db.url + "?mode=ro")
    try:
        assert ro.read_only and ro.backlog().instances == 1
    finally:
        ro.close()


# -- checkpoints ------------------------------------------------------------------------------
def _wal_after_sustained_writes(tmp_path, name: str, catch_up_pages: int) -> tuple[int, int]:
    """Commit 1,500 instances (8 KB inputs) back to back while background checkpoints run;
    return (the WAL file's size, the instances stored)."""
    from durable_core.backends.sqlite import background

    b = SqliteBackend(str(tmp_path / name), catch_up_pages=catch_up_pages)
    old = background.CHECKPOINT_INTERVAL
    background.CHECKPOINT_INTERVAL = 0.002
    try:
        blob = os.urandom(8000)
        for i in range(1500):
            create(b, f"i{i}", input=blob)
            if i % 25 == 24:
                time.sleep(0.001)  # a server does other work between commits
        wal = os.path.getsize(b.path + "-wal")  # the file never shrinks below 64 MB
        n = sum(b.count(InstanceFilter()).values())
    finally:
        background.CHECKPOINT_INTERVAL = old
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


def test_checkpoint_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError):
        SqliteBackend(str(tmp_path / "x.db"), catch_up_pages=0)
    with pytest.raises(ValueError):
        SqliteBackend(str(tmp_path / "y.db"), lease_seconds=0)


# -- corruption done to the file --------------------------------------------------------------
def test_an_emptied_history_row_fails_the_instance_instead_of_hiding_events(tmp_path):
    """Bug: an empty history blob was read as zero events; the lost TaskCompleted was never
    seen and the instance waited forever. Now it is HistoryCorruptError like any damage."""
    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: x, "echo")

    def flow(ctx, _):
        a = yield ctx.call_activity("echo", input=1)
        yield ctx.wait_for_external_event("go")
        return a

    reg.add_orchestrator(flow, "flow")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with dc.Runtime(url, registry=reg) as rt:
        iid = rt.client.schedule_new_orchestration("flow")
        deadline = time.monotonic() + 20
        while len(rt.client.get_orchestration_history(iid)) < 7:  # the activity's result is in
            assert time.monotonic() < deadline
            time.sleep(0.02)
    # the worker is gone (with its in-memory session); damage the file
    c = sqlite3.connect(tmp_path / "c.db")
    n = c.execute("UPDATE history SET data=X'' WHERE instance_id=? AND seq="
                  "(SELECT max(seq) FROM history WHERE instance_id=?)", (iid, iid)).rowcount
    c.commit()
    c.close()
    assert n == 1
    with dc.Runtime(url, registry=reg) as rt:
        with pytest.raises(HistoryCorruptError, match="holds 0 events"):
            rt.client.get_orchestration_history(iid)
        rt.client.raise_orchestration_event(iid, "go")
        st = rt.client.wait_for_orchestration_completion(iid, timeout=20)
        assert st.runtime_status == S.FAILED
        assert st.failure_details.error_type == "HistoryCorruptError"
        assert "holds 0 events" in st.failure_details.message


def test_a_big_payload_stays_off_the_rows_other_instances_use(db):
    """Structural: a 5 MB input adds nothing to the instances b-tree (measured in pages)."""
    def pages(table_or_index):
        c = sqlite3.connect(db.path)
        try:
            return c.execute("SELECT count(*) FROM dbstat WHERE name=?", (table_or_index,)).fetchone()[0]
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table")
        finally:
            c.close()

    create(db, "small")
    before = pages("instances")
    create(db, "big", input=b"x" * 5_000_000)
    assert pages("instances") == before
    assert pages("payloads") > 1000
    assert db.get_instance("big").input == b"x" * 5_000_000
    it = claim(db, "w").instances
    assert {i.instance_id for i in it} == {"small", "big"}
    claim(db, "w", 0, steps=[step(i) for i in it])
