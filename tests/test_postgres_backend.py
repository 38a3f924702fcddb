"""The PostgreSQL backend beyond the shared contract: URLs and one-line errors, task hubs and
migrations, the server clock, backlog, query plans with a million finished instances,
coalesced NOTIFY, an event loop that never waits on a slow query, and connection loss."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from durable_core import history as h
from durable_core.backends import open_backend
from durable_core.errors import (
    BackendNotAvailableError,
    StoreIncompatibleError,
    StoreUnavailableError,
)
from durable_core.status import OrchestrationStatus as S

from conformance.rows import activity, claim, create, event, step
from pg_support import PG_DSN, admin, hub_url, pg_schema, require_pg  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

EV1 = [h.OrchestratorStarted(-1, 1), h.OrchestratorCompleted(-1, 1)]


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


# -- URLs and errors ---------------------------------------------------------------------------
def test_bad_urls_and_options_say_what_to_do(pg_schema):
    with pytest.raises(BackendNotAvailableError, match="names no database"):
        open_backend("postgresql://postgres@127.0.0.1:5432")
    with pytest.raises(BackendNotAvailableError, match="unknown PostgreSQL store option"):
        open_backend(hub_url(pg_schema, bogus=1))
    with pytest.raises(BackendNotAvailableError, match="task hub name"):
        open_backend(hub_url("Bad-Name"))
    with pytest.raises(BackendNotAvailableError, match="lease_seconds"):
        open_backend(hub_url(pg_schema, lease_seconds="soon"))


def test_unreachable_missing_database_and_unknown_user_are_one_line_errors(pg_schema):
    base = PG_DSN.split("?")[0]
    host_db = base.rsplit("/", 1)
    with pytest.raises(StoreUnavailableError, match="database does not exist") as e:
        open_backend(f"{host_db[0]}/no_such_db_dc?schema={pg_schema}")
    _one_line(e.value)
    with pytest.raises(StoreUnavailableError, match="no PostgreSQL server answers") as e:
        open_backend(f"postgresql://postgres@127.0.0.1:1/test?schema={pg_schema}&connect_timeout=1")
    _one_line(e.value)
    with pytest.raises(StoreUnavailableError) as e:
        open_backend(base.replace("postgres@", "no_such_role_dc@", 1) + f"?schema={pg_schema}")
    assert "user" in _one_line(e.value)


def test_password_failures_are_explained():
    from durable_core.backends.postgres.schema import connect_error

    err = connect_error("postgresql://u:***@h/db", Exception(
        'connection failed: FATAL:  password authentication failed for user "u"\n'))
    assert isinstance(err, StoreUnavailableError)
    assert "password" in _one_line(err) and "pgpass" in str(err)


def test_without_psycopg_the_error_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "from durable_core.backends import open_backend\n"
        "try:\n    open_backend('postgresql://u@h/db')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=str(tmp_path),
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.stdout.startswith("BackendNotAvailableError"), out.stderr
    assert "pip install 'durable_core[postgres]'" in out.stdout


# -- task hubs and migrations -------------------------------------------------------------------
def test_task_hubs_schemas_and_migrations(pg_schema):
    from durable_core.backends.postgres import SCHEMA_VERSION

    with pytest.raises(StoreUnavailableError, match="no task hub schema"):
        open_backend(hub_url(pg_schema), create=False)
    with pytest.raises(StoreIncompatibleError, match="older"):
        open_backend(hub_url(pg_schema), migrate=False)
    b = open_backend(hub_url(pg_schema))
    try:
        assert b.opened_schema_version == 0
        assert b.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
        create(b, "a")
    finally:
        b.close()
    b2 = open_backend(hub_url(pg_schema), create=False, migrate=False)
    try:
        assert b2.opened_schema_version == SCHEMA_VERSION
        assert b2.get_instance("a") is not None
    finally:
        b2.close()
    # another hub in the same database sees none of it
    other = pg_schema + "_b"
    b3 = open_backend(hub_url(other))
    try:
        assert b3.get_instance("a") is None
    finally:
        b3.close()
        with admin() as c:
            c.execute(f'DROP SCHEMA "{other}" CASCADE')
    # an old hub (version 0 marked, nothing else) is refused without migrate, upgraded with it
    with admin() as c:
        c.execute(f'UPDATE "{pg_schema}".meta SET value = %s WHERE key = %s',
                  (str(SCHEMA_VERSION + 1), "schema_version"))
    with pytest.raises(StoreIncompatibleError, match="newer"):
        open_backend(hub_url(pg_schema))


def test_a_schema_of_another_application_is_left_alone(pg_schema):
    with admin() as c:
        c.execute(f'CREATE SCHEMA "{pg_schema}"')
        c.execute(f'CREATE TABLE "{pg_schema}".orders (id int)')
    with pytest.raises(StoreIncompatibleError, match="another application"):
        open_backend(hub_url(pg_schema))
    with admin() as c:
        assert c.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (pg_schema,)
        ).fetchone()[0] == 1


def test_concurrent_openers_migrate_once(pg_schema):
    errors: list[BaseException] = []
    opened = []

    def go() -> None:
        try:
            opened.append(open_backend(hub_url(pg_schema)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    ts = [threading.Thread(target=go) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for b in opened:
        b.close()
    assert errors == [] and len(opened) == 4


# -- clock, backlog ---------------------------------------------------------------------------
def test_now_is_the_servers_clock(pg_schema):
    b = open_backend(hub_url(pg_schema))
    try:
        with admin() as c:
            server = c.execute(
                "SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint").fetchone()[0]
        assert abs(b.now() - server) < 50_000
        t0 = time.perf_counter()
        for _ in range(10_000):
            b.now()
        assert time.perf_counter() - t0 < 0.5  # no round trip per call
    finally:
        b.close()


def test_backlog_counts_ready_instances_and_activities(pg_schema):
    b = open_backend(hub_url(pg_schema))
    try:
        assert b.backlog() == (0, 0, None)
        before = b.now()
        create(b, "a")
        create(b, "b")
        b.enqueue([event(b, "a"), event(b, "a", "later", delay_us=60_000_000)])
        n_inst, n_act, oldest = b.backlog()
        assert (n_inst, n_act) == (2, 0) and before <= oldest <= b.now()
        t = claim(b, "w", 1)
        it = t.instances[0]
        assert b.backlog()[0] == 1  # the claimed one is not ready
        claim(b, "w", 0, steps=[step(it, EV1, activities=[activity(it, 0), activity(it, 1)])])
        assert b.backlog()[:2] == (1, 2)
        claim(b, "w", 0, activities=1)
        assert b.backlog()[:2] == (1, 1)
    finally:
        b.close()


# -- query plans ------------------------------------------------------------------------------
def test_fetch_stays_an_index_scan_with_a_million_finished_instances(pg_schema):
    """The claim reads the inbox by due time and instances by key, whatever the table holds:
    1,000,000 finished instances, 1,000 ready ones and 10,000 timers due later."""
    from durable_core.backends.postgres import sql

    b = open_backend(hub_url(pg_schema))
    s = pg_schema
    try:
        with admin() as c:
            c.execute(
                f"INSERT INTO {s}.instances (instance_id, execution_id, name, status, created_at,"
                " last_updated_at, history_length, output) SELECT 'done-' || g, 'e', 'orch', 1,"
                " g, g, 6, '\\x3432'::bytea FROM generate_series(1, 1000000) g")
            c.execute(
                f"INSERT INTO {s}.instances (instance_id, execution_id, name, status, created_at,"
                " last_updated_at) SELECT 'live-' || g, 'e', 'orch', 0, g, g"
                " FROM generate_series(1, 11000) g")
            c.execute(
                f"INSERT INTO {s}.inbox (instance_id, kind, visible_at, event) SELECT 'live-' || g,"
                " 6, CASE WHEN g <= 1000 THEN g ELSE 9000000000000000 + g END, '\\x00'::bytea"
                " FROM generate_series(1, 11000) g")
            for t in ("instances", "inbox", "activities"):
                c.execute(f"ANALYZE {s}.{t}")
            c.execute(f"SET search_path = {s}")
            plan = "\n".join(r[0] for r in c.execute(
                "EXPLAIN " + sql.CLAIM_INSTANCES,
                {"scan": 400, "limit": 100, "owner": "w", "lease": 1}))
            assert "Index Scan using inbox_visible on inbox" in plan, plan
            assert "Seq Scan on instances" not in plan, plan
            assert "Seq Scan on inbox" not in plan, plan
            t0 = time.perf_counter()
            got = claim(b, "w", 100)
            took = time.perf_counter() - t0
        assert len(got.instances) == 100 and took < 0.5
        assert got.instances[0].instance_id == "live-1"
    finally:
        b.close()


# -- notification ------------------------------------------------------------------------------
def test_notify_is_coalesced_and_crosses_processes(pg_schema):
    a = open_backend(hub_url(pg_schema, notify_debounce=0.05))
    other = open_backend(a.url)
    try:
        seen: list = []
        woke = threading.Event()
        other.add_work_listener(lambda vis: (seen.append(vis), woke.set()))
        assert other._listener.connected.wait(5)
        for i in range(40):
            create(a, f"i{i}")
        assert woke.wait(5)
        time.sleep(0.2)
        in_tx, by_thread = a._outbox.sent
        assert 1 <= in_tx + by_thread <= 8  # 40 commits, a handful of announcements
        # a timer due later reaches the other process as a due time
        seen.clear()
        woke.clear()
        later = a.now() + 30_000_000
        a.enqueue([event(a, "i0", delay_us=30_000_000)])
        assert woke.wait(5)
        deadline = time.monotonic() + 2
        while not any(v is not None and v >= later - 1_000_000 for v in seen):
            assert time.monotonic() < deadline, seen
            time.sleep(0.01)
    finally:
        other.close()
        a.close()


def test_the_listener_reconnects_and_wakes_everyone(pg_schema):
    b = open_backend(hub_url(pg_schema))
    writer = open_backend(b.url)
    try:
        woke = threading.Event()
        b.add_instance_watcher("x", woke.set)
        assert b._listener.connected.wait(5)
        pid = b._listener._conn.info.backend_pid
        with admin() as c:
            c.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert woke.wait(5)  # the reconnect wakes watchers (something may have been missed)
        deadline = time.monotonic() + 5
        while b._listener.connects < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert b._listener.connected.wait(5)
        woke.clear()
        create(writer, "x")
        assert woke.wait(5)  # and it hears commits again
    finally:
        writer.close()
        b.close()


# -- the event loop and slow queries ------------------------------------------------------------
def test_a_status_read_is_answered_while_another_call_waits_on_a_lock(pg_schema):
    import durable_core as dc

    url = hub_url(pg_schema)
    blocker = admin()
    try:
        async def main() -> None:
            client = dc.AsyncClient(url)
            try:
                iid = await client.schedule_new_orchestration("orch", input=1)
                blocker.execute("BEGIN")
                blocker.execute(f'LOCK TABLE "{pg_schema}".inbox IN ACCESS EXCLUSIVE MODE')
                slow = asyncio.ensure_future(client.raise_orchestration_event(iid, "e"))
                await asyncio.sleep(0.2)
                t0 = time.perf_counter()
                st = await asyncio.wait_for(client.get_orchestration_state(iid), 5)
                took = time.perf_counter() - t0
                assert st is not None and st.runtime_status == S.PENDING
                assert took < 0.5 and not slow.done()
                # the loop itself stayed free: a tick comes at once
                t0 = time.perf_counter()
                await asyncio.sleep(0)
                assert time.perf_counter() - t0 < 0.05
                blocker.execute("ROLLBACK")
                await asyncio.wait_for(slow, 10)
            finally:
                await client.close()

        asyncio.run(main())
    finally:
        blocker.close()


# -- connection loss ----------------------------------------------------------------------------
def test_terminated_connections_are_replaced(pg_schema):
    b = open_backend(hub_url(pg_schema, application_name=pg_schema))
    try:
        create(b, "a")
        with admin() as c:
            n = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE application_name = %s", (pg_schema,)).fetchone()[0]
        assert n >= 1
        assert b.get_instance("a") is not None  # a read is tried again on a fresh connection
        try:
            create(b, "b")
        except StoreUnavailableError as exc:
            assert "may or may not" in _one_line(exc)
        deadline = time.monotonic() + 5
        while True:
            try:
                create(b, "c")
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert b.get_instance("c") is not None
    finally:
        b.close()


def test_a_cut_network_fails_calls_within_the_timeout_and_recovers(pg_schema):
    from pg_proxy import CutProxy

    require_pg()
    from urllib.parse import urlsplit

    parts = urlsplit(PG_DSN)
    proxy = CutProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    url = (f"postgresql://{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
           f"{parts.path}?schema={pg_schema}&timeout=2&connect_timeout=1")
    b = open_backend(url)
    try:
        create(b, "a")
        proxy.cut()
        for call in (lambda: b.get_instance("a"), lambda: create(b, "b")):
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailableError) as e:
                call()
            assert time.monotonic() - t0 < 5
            _one_line(e.value)
        proxy.restore()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert b.get_instance("a") is not None
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        create(b, "c")
    finally:
        b.close()
        proxy.close()


# -- fencing at commit ------------------------------------------------------------------------
def test_a_lease_lost_between_the_fence_check_and_the_write_commits_nothing(pg_schema,
                                                                           monkeypatch):
    """The fence check reads without locking; the instance update at the end of the turn
    checks the lease again and fails the whole turn (nothing written) if it was lost."""
    from durable_core.backends.postgres import sql

    b = open_backend(hub_url(pg_schema, lease_seconds=0.3))
    try:
        create(b, "a")
        first = claim(b, "w1").instances[0]
        time.sleep(0.4)
        taken = claim(b, "w2").instances[0]  # the lease expired: w2 holds it now
        assert taken.fence > first.fence
        # w1's check sees the world as it was before w2's claim (the race)
        monkeypatch.setattr(sql, "LOCK_STEPS", "SELECT instance_id, 'w1'::text, fence - 1 "
                            "FROM instances WHERE instance_id = ANY(%s::text[])")
        stale = step(first, EV1, activities=[activity(first, 0)])
        with pytest.raises(StoreUnavailableError, match="lease was lost") as e:
            claim(b, "w1", 5, activities=5, steps=[stale])  # tried three times, then this
        assert "nothing was written" in _one_line(e.value)
        row = b.get_instance("a")
        assert row.history_length == 0 and row.status == S.PENDING
        assert b.load_history("a").chunks == []
        assert b.backlog()[1] == 0  # its activity was not queued either
        monkeypatch.undo()
        assert claim(b, "w1", 0, steps=[step(first, EV1)]).refused != []  # refused outright
        assert claim(b, "w2", 0, steps=[step(taken, EV1)]).refused == []
        assert b.get_instance("a").history_length == 2
    finally:
        b.close()
