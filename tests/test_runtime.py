"""The runtime end to end in one process: worker + clients on an SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("durable_core.engine")

import durable_core as dc  # noqa: E402
from durable_core import history as h  # noqa: E402
from durable_core.client import ReuseIdPolicy  # noqa: E402
from durable_core.errors import (  # noqa: E402
    HistoryCorruptError,
    OrchestrationAlreadyExistsError,
    OrchestrationNotFoundError,
    PayloadError,
)
from durable_core.status import OrchestrationStatus as S  # noqa: E402

pytestmark = pytest.mark.timeout(60)


# -- orchestrations under test ---------------------------------------------------------------
@dc.activity(name="rt_upper")
def upper(ctx, item):
    return item.upper()


@dc.activity(name="rt_add")
async def add_async(ctx, pair):
    await asyncio.sleep(0)
    return pair[0] + pair[1]


@dc.activity(name="rt_boom")
def boom(ctx, msg):
    raise ValueError(msg)


@dc.orchestrator(name="rt_quick")
def quick(ctx, items):
    results = yield dc.when_all([ctx.call_activity(upper, input=i) for i in items])
    yield ctx.create_timer(timedelta(milliseconds=200))
    ctx.set_custom_status({"done": len(results)})
    return results


@dc.orchestrator(name="rt_chain")
def chain(ctx, n):
    total = 0
    for i in range(n):
        total = yield ctx.call_activity(add_async, input=[total, i])
    return total


@dc.orchestrator(name="rt_wait_event")
def wait_event(ctx, _):
    ctx.set_custom_status("waiting")
    v = yield ctx.wait_for_external_event("go")
    return {"got": v}


@dc.orchestrator(name="rt_parent")
def parent(ctx, n):
    r = yield ctx.call_sub_orchestrator(chain, input=n)
    return r * 10


@dc.orchestrator(name="rt_parent_waits")
def parent_waits(ctx, _):
    r = yield ctx.call_sub_orchestrator(wait_event, instance_id=f"{ctx.instance_id}-child")
    return r


@dc.orchestrator(name="rt_counter")
def counter(ctx, n):
    if n < 5:
        ctx.continue_as_new(n + 1)
        return None
    return n


@dc.orchestrator(name="rt_catch")
def catch(ctx, _):
    try:
        yield ctx.call_activity(boom, input="kaput")
    except dc.TaskFailedError as exc:
        return f"caught {exc.details.error_type}: {exc.details.message}"


@dc.orchestrator(name="rt_unknown_activity")
def unknown_activity(ctx, _):
    return (yield ctx.call_activity("rt_no_such_activity", input=1))


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'rt.db'}"


def test_quick_start(url):
    with dc.Runtime(url) as rt:
        iid = rt.client.schedule_new_orchestration(quick, input=["a", "b", "c"])
        state = rt.client.wait_for_orchestration_completion(iid, timeout=30)
        assert state.runtime_status == S.COMPLETED
        assert state.output == ["A", "B", "C"]
        assert state.custom_status == {"done": 3}
        assert state.created_at.tzinfo is not None
        hist = rt.client.get_orchestration_history(iid)
        kinds = [type(e).__name__ for e in hist]
        assert kinds.count("TaskScheduled") == 3 and kinds.count("TimerFired") == 1
        assert kinds[-2:] == ["ExecutionCompleted", "OrchestratorCompleted"]


def test_chain_async_activities_and_sub_orchestration(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        a = c.schedule_new_orchestration(chain, input=6)
        p = c.schedule_new_orchestration(parent, input=4)
        assert c.wait_for_orchestration_completion(a, timeout=30).output == 15
        assert c.wait_for_orchestration_completion(p, timeout=30).output == 60
        kids = c.query_orchestrations(instance_id_prefix=p + ":").states
        assert len(kids) == 1 and kids[0].parent_instance_id == p and kids[0].output == 6


def test_events_start_wait_and_timeouts(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        iid = c.schedule_new_orchestration(wait_event, instance_id="ev-1")
        st = c.wait_for_orchestration_start(iid, timeout=10)
        assert st.runtime_status in (S.RUNNING, S.COMPLETED)
        with pytest.raises(TimeoutError):
            c.wait_for_orchestration_completion(iid, timeout=0.05)
        c.raise_orchestration_event(iid, "GO", data=[1, 2])  # names match case-insensitively
        st = c.wait_for_orchestration_completion(iid, timeout=10)
        assert st.output == {"got": [1, 2]}
        with pytest.raises(OrchestrationNotFoundError):
            c.raise_orchestration_event("nope", "go")
        with pytest.raises(OrchestrationNotFoundError):
            c.wait_for_orchestration_completion("nope", timeout=1)
        assert c.get_orchestration_state("nope") is None


def test_terminate_recursive_suspend_resume(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        p = c.schedule_new_orchestration(parent_waits, instance_id="tp")
        _until(lambda: c.get_orchestration_state("tp-child") is not None)
        c.wait_for_orchestration_start("tp-child", timeout=10)
        c.terminate_orchestration(p, output="enough")
        st = c.wait_for_orchestration_completion(p, timeout=10)
        assert st.runtime_status == S.TERMINATED and st.output == "enough"
        child = c.wait_for_orchestration_completion("tp-child", timeout=10)
        assert child.runtime_status == S.TERMINATED

        s = c.schedule_new_orchestration(wait_event, instance_id="susp")
        c.wait_for_orchestration_start(s, timeout=10)
        c.suspend_orchestration(s, reason="hold")
        _until(lambda: c.get_orchestration_state(s).runtime_status == S.SUSPENDED)
        c.raise_orchestration_event(s, "go", data=7)
        with pytest.raises(TimeoutError):
            c.wait_for_orchestration_completion(s, timeout=0.2)
        c.resume_orchestration(s)
        assert c.wait_for_orchestration_completion(s, timeout=10).output == {"got": 7}
        for fn in (c.terminate_orchestration, c.suspend_orchestration, c.resume_orchestration):
            with pytest.raises(OrchestrationNotFoundError):
                fn("nope")


def _until(cond, timeout=10.0):
    import time

    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_continue_as_new_and_failures(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        a = c.schedule_new_orchestration(counter, input=0)
        b = c.schedule_new_orchestration(catch)
        u = c.schedule_new_orchestration("rt_no_such_orchestrator", input=1)
        v = c.schedule_new_orchestration(unknown_activity)
        assert c.wait_for_orchestration_completion(a, timeout=10).output == 5
        assert c.wait_for_orchestration_completion(b, timeout=10).output == "caught ValueError: kaput"
        su = c.wait_for_orchestration_completion(u, timeout=10)
        assert su.runtime_status == S.FAILED
        assert su.failure_details.error_type == "OrchestratorNotFoundError"
        with pytest.raises(dc.OrchestrationFailedError):
            su.raise_if_failed()
        sv = c.wait_for_orchestration_completion(v, timeout=10)
        assert sv.runtime_status == S.FAILED
        assert "ActivityNotFoundError" in repr(sv.failure_details)
        assert "rt_no_such_activity" in repr(sv.failure_details)
        # the worker kept serving
        assert c.wait_for_orchestration_completion(
            c.schedule_new_orchestration(chain, input=3), timeout=10
        ).output == 3


def test_corrupt_history_fails_only_that_instance(url, tmp_path):
    with dc.Runtime(url) as rt:
        bad = rt.client.schedule_new_orchestration(wait_event, instance_id="bad")
        good = rt.client.schedule_new_orchestration(wait_event, instance_id="good")
        for i in (bad, good):
            _until(lambda i=i: rt.client.get_orchestration_state(i).custom_status == "waiting")
    con = sqlite3.connect(str(tmp_path / "rt.db"))
    data = bytearray(con.execute("SELECT data FROM history WHERE instance_id='bad'").fetchone()[0])
    data[len(data) // 2] ^= 0xFF
    con.execute("UPDATE history SET data=? WHERE instance_id='bad'", (bytes(data),))
    con.commit()
    con.close()
    with dc.Runtime(url) as rt:  # a new worker: no sticky session, the history is re-read
        c = rt.client
        with pytest.raises(HistoryCorruptError):
            c.get_orchestration_history(bad)
        c.raise_orchestration_event(bad, "go", data=1)
        c.raise_orchestration_event(good, "go", data=2)
        sb = c.wait_for_orchestration_completion(bad, timeout=10)
        assert sb.runtime_status == S.FAILED
        assert sb.failure_details.error_type == "HistoryCorruptError"
        assert "offset" in sb.failure_details.message
        assert c.wait_for_orchestration_completion(good, timeout=10).output == {"got": 2}


def test_payload_errors_write_nothing(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        with pytest.raises(PayloadError):
            c.schedule_new_orchestration(chain, input=object(), instance_id="p1")
        assert c.get_orchestration_state("p1") is None
        assert c.query_orchestrations().states == []
        iid = c.schedule_new_orchestration(wait_event)
        with pytest.raises(PayloadError):
            c.raise_orchestration_event(iid, "go", data={1, object()})
        c.raise_orchestration_event(iid, "go", data="ok")
        assert c.wait_for_orchestration_completion(iid, timeout=10).output == {"got": "ok"}


def test_ids_reuse_restart_purge_query(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        iid = c.schedule_new_orchestration(wait_event, instance_id="same", tags={"t": "1"})
        with pytest.raises(OrchestrationAlreadyExistsError):
            c.schedule_new_orchestration(wait_event, instance_id="same")
        with pytest.raises(OrchestrationAlreadyExistsError):
            c.schedule_new_orchestration(
                wait_event, instance_id="same", reuse_policy=ReuseIdPolicy.REPLACE_IF_TERMINAL
            )
        c.raise_orchestration_event(iid, "go", data=1)
        c.wait_for_orchestration_completion(iid, timeout=10)
        c.schedule_new_orchestration(
            chain, input=2, instance_id="same", reuse_policy=ReuseIdPolicy.REPLACE_IF_TERMINAL
        )
        assert c.wait_for_orchestration_completion("same", timeout=10).output == 1
        assert c.get_orchestration_state("same").name == "rt_chain"
        assert c.restart_orchestration("same") == "same"
        assert c.wait_for_orchestration_completion("same", timeout=10).output == 1
        new = c.restart_orchestration("same", restart_with_new_instance_id=True)
        assert new != "same"
        assert c.wait_for_orchestration_completion(new, timeout=10).output == 1
        with pytest.raises(OrchestrationNotFoundError):
            c.restart_orchestration("nope")
        # query by status and time, paginated
        ids = [c.schedule_new_orchestration(chain, input=1) for _ in range(7)]
        for i in ids:
            c.wait_for_orchestration_completion(i, timeout=10)
        got, token = [], None
        while True:
            page = c.query_orchestrations(runtime_status=[S.COMPLETED], page_size=3,
                                          continuation_token=token)
            got += [s.instance_id for s in page.states]
            token = page.continuation_token
            if token is None:
                break
        assert set(ids) | {"same", new} == set(got) and len(got) == 9
        future = datetime.now(timezone.utc) + timedelta(hours=1)
        assert c.query_orchestrations(created_time_from=future).states == []
        assert c.purge_orchestration("same") == 1
        assert c.get_orchestration_state("same") is None
        with pytest.raises(OrchestrationNotFoundError):
            c.get_orchestration_history("same")
        assert c.purge_orchestrations_by(runtime_status=S.COMPLETED) == 8


def test_delayed_start(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        at = datetime.now(timezone.utc) + timedelta(milliseconds=300)
        iid = c.schedule_new_orchestration(chain, input=2, start_at=at)
        assert c.get_orchestration_state(iid).runtime_status == S.PENDING
        st = c.wait_for_orchestration_completion(iid, timeout=10)
        assert st.output == 1
        started = [e for e in c.get_orchestration_history(iid) if isinstance(e, h.OrchestratorStarted)]
        assert started[0].time >= at


def test_async_runtime_and_async_client(url):
    async def main():
        async with dc.Runtime(url) as rt:
            ac = rt.async_client
            iid = await ac.schedule_new_orchestration(wait_event)
            await ac.wait_for_orchestration_start(iid, timeout=10)
            with pytest.raises(TimeoutError):
                await ac.wait_for_orchestration_completion(iid, timeout=0.05)
            await ac.raise_orchestration_event(iid, "go", data="x")
            st = await ac.wait_for_orchestration_completion(iid, timeout=10)
            assert st.output == {"got": "x"}
            many = [await ac.schedule_new_orchestration(chain, input=3) for _ in range(20)]
            states = await asyncio.gather(
                *(ac.wait_for_orchestration_completion(i, timeout=20) for i in many)
            )
            assert [s.output for s in states] == [3] * 20
            assert (await ac.query_orchestrations(page_size=100)).continuation_token is None
            hist = await ac.get_orchestration_history(iid)
            assert isinstance(hist[0], h.OrchestratorStarted)
            with pytest.raises(OrchestrationNotFoundError):
                await ac.terminate_orchestration("nope")

    asyncio.run(main())


def test_standalone_async_client_beside_threaded_runtime(url):
    with dc.Runtime(url) as rt:

        async def main():
            async with dc.AsyncClient(url) as ac:
                iid = await ac.schedule_new_orchestration(chain, input=4)
                return await ac.wait_for_orchestration_completion(iid, timeout=10)

        assert asyncio.run(main()).output == 6
        assert rt.worker.stats["steps"] > 0


def test_many_concurrent_clients(url):
    n_threads, per = 8, 15
    with dc.Runtime(url) as rt:
        errors = []

        def client_thread(k):
            try:
                with dc.Client(url) as c:
                    ids = [
                        c.schedule_new_orchestration(wait_event, instance_id=f"c{k}-{i}")
                        for i in range(per)
                    ]
                    for i, iid in enumerate(ids):
                        c.raise_orchestration_event(iid, "go", data=[k, i])
                    for i, iid in enumerate(ids):
                        st = c.wait_for_orchestration_completion(iid, timeout=30)
                        assert st.output == {"got": [k, i]}, st
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=client_thread, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        page = rt.client.query_orchestrations(runtime_status=S.COMPLETED, page_size=1000)
        assert len(page.states) == n_threads * per


def test_runtime_default_url_and_bad_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with dc.Runtime() as rt:
        iid = rt.client.schedule_new_orchestration(chain, input=2)
        assert rt.client.wait_for_orchestration_completion(iid, timeout=10).output == 1
    assert (tmp_path / "durable.db").exists()
    with pytest.raises(ValueError):  # BackendNotAvailableError, a ValueError
        dc.Runtime("sqlite:///:memory:")
    from durable_core.errors import StoreUnavailableError

    # the PostgreSQL backend exists: a database that is not there is a one-line error saying so
    # (or saying that no server answers, on a machine without one)
    with pytest.raises(StoreUnavailableError) as e:
        dc.Runtime("postgresql://localhost/no_such_database_dc?connect_timeout=1")
    assert "\n" not in str(e.value)


def test_quickstart_example_runs(tmp_path):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "examples" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    st = mod.main(f"sqlite:///{tmp_path / 'qs.db'}")
    assert st.runtime_status == S.COMPLETED and st.output == ["A", "B", "C"]
    assert st.custom_status == {"done": 3}


# -- more of the programming model through the store -----------------------------------------
_flaky_calls: dict = {}


@dc.activity(name="rt_flaky")
def flaky(ctx, key):
    n = _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if n < 3:
        raise RuntimeError(f"attempt {n}")
    return n


@dc.orchestrator(name="rt_retry")
def retry(ctx, key):
    policy = dc.RetryPolicy(first_retry_interval=timedelta(milliseconds=20), max_number_of_attempts=5)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


@dc.orchestrator(name="rt_async_orch")
async def async_orch(ctx, n):
    a = await ctx.call_activity(add_async, input=[n, 1])
    b = await ctx.call_activity(upper, input="x")
    return [a, b]


@dc.orchestrator(name="rt_race")
def race(ctx, _):
    ev = ctx.wait_for_external_event("never")
    t = ctx.create_timer(timedelta(milliseconds=50))
    winner = yield dc.when_any([ev, t])
    return "timer" if winner is t else "event"


@dc.orchestrator(name="rt_event_timeout")
def event_timeout(ctx, _):
    try:
        yield ctx.wait_for_external_event("late", timeout=timedelta(milliseconds=50))
    except dc.errors.EventTimeoutError:
        return "timed out"
    return "got it"


def test_retry_async_orchestrator_when_any_and_event_timeout(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        ids = {
            "retry": c.schedule_new_orchestration(retry, input="k1"),
            "async": c.schedule_new_orchestration(async_orch, input=41),
            "race": c.schedule_new_orchestration(race),
            "timeout": c.schedule_new_orchestration(event_timeout),
        }
        out = {k: c.wait_for_orchestration_completion(v, timeout=20) for k, v in ids.items()}
        assert {k: s.runtime_status for k, s in out.items()} == dict.fromkeys(out, S.COMPLETED)
        assert out["retry"].output == 3 and _flaky_calls["k1"] == 3
        assert out["async"].output == [42, "X"]
        assert out["race"].output == "timer"
        assert out["timeout"].output == "timed out"


class _TaggedJson:
    """A converter that marks its payloads, to show every payload goes through it."""

    def __init__(self):
        self.inner = dc.JsonDataConverter()

    def serialize(self, value):
        data = self.inner.serialize(value)
        return None if data is None else b"T" + data

    def deserialize(self, data):
        if data is None:
            return None
        assert data[:1] == b"T", data
        return self.inner.deserialize(data[1:])


def test_custom_converter_and_dataclass_input(url, tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Order:
        item: str
        qty: int

    conv = _TaggedJson()
    with dc.Runtime(url, converter=conv) as rt:
        iid = rt.client.schedule_new_orchestration(quick, input=["p", "q"])
        st = rt.client.wait_for_orchestration_completion(iid, timeout=20)
        assert st.output == ["P", "Q"] and st.serialized_output.startswith(b"T")
        assert all(
            e.input is None or e.input.startswith(b"T")
            for e in rt.client.get_orchestration_history(iid)
            if isinstance(e, h.TaskScheduled)
        )
    with dc.Runtime(f"sqlite:///{tmp_path / 'dc.db'}") as rt:
        iid = rt.client.schedule_new_orchestration(wait_event, input=Order("pen", 2))
        assert rt.client.get_orchestration_state(iid).input == {"item": "pen", "qty": 2}
        rt.client.raise_orchestration_event(iid, "go", data=Order("ink", 1))
        st = rt.client.wait_for_orchestration_completion(iid, timeout=20)
        assert st.output == {"got": {"item": "ink", "qty": 1}}


def test_async_client_waits_for_another_writer_without_blocking_its_loop(tmp_path):
    """A worker in another process holding SQLite's write lock must not freeze an API server's
    event loop: the asyncio client yields and retries until the lock is free."""
    from durable_core.backends.sqlite import SqliteBackend

    backend = SqliteBackend(str(tmp_path / "a.db"), busy_timeout=5.0)
    other = sqlite3.connect(backend.path, isolation_level=None, check_same_thread=False)

    later = datetime.now(timezone.utc) + timedelta(hours=1)  # stays PENDING: no worker races us

    async def main():
        ac = dc.AsyncClient(backend)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, for 0.3 s
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, other.execute, "COMMIT")
        ticks = 0
        start = asyncio.ensure_future(ac.schedule_new_orchestration(chain, input=1, instance_id="i1", start_at=later))
        while not start.done():
            await asyncio.sleep(0.01)
            ticks += 1
        assert await start == "i1"
        assert ticks >= 10  # the loop kept running while the start waited
        # a burst of starts while the store is taken: all land, first come first served
        other.execute("BEGIN IMMEDIATE")
        loop.call_later(0.1, other.execute, "COMMIT")
        ids = [f"b{k:02d}" for k in range(20)]
        burst = [
            asyncio.ensure_future(ac.schedule_new_orchestration(chain, input=1, instance_id=i, start_at=later))
            for i in ids
        ]
        await asyncio.sleep(0.02)
        assert not any(f.done() for f in burst)
        assert await asyncio.gather(*burst) == ids
        created = [(await ac.get_orchestration_state(i)).created_at for i in ids]
        assert created == sorted(created)
        # every write goes the same way
        other.execute("BEGIN IMMEDIATE")
        loop.call_later(0.1, other.execute, "COMMIT")
        await ac.raise_orchestration_event("i1", "go", data=1)
        await ac.terminate_orchestration("i1")
        assert await ac.purge_orchestrations_by(runtime_status=[S.COMPLETED]) == 0
        return (await ac.get_orchestration_state("i1")).runtime_status

    try:
        assert asyncio.run(main()) is S.PENDING
        inbox = other.execute("SELECT count(*) FROM inbox WHERE instance_id='i1'")
        assert inbox.fetchone()[0] == 3  # the start, the event and the termination
    finally:
        other.close()
        backend.close()


def test_async_client_gives_up_after_the_busy_timeout(tmp_path):
    from durable_core.backends.sqlite import SqliteBackend

    backend = SqliteBackend(str(tmp_path / "a.db"), busy_timeout=0.2)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    other = sqlite3.connect(backend.path, isolation_level=None)

    async def main():
        ac = dc.AsyncClient(backend)
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(dc.StoreBusyError, match="busy timeout"):
            await ac.schedule_new_orchestration(chain, input=1, instance_id="i1", start_at=later)
        waited = loop.time() - t0
        other.execute("ROLLBACK")
        assert backend.get_instance("i1") is None  # nothing was written
        assert await ac.schedule_new_orchestration(chain, input=1, instance_id="i1", start_at=later) == "i1"
        return waited

    try:
        assert 0.2 <= asyncio.run(main()) < 3.0
    finally:
        other.close()
        backend.close()
