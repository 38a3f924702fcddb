"""Client additions the operator tools build on: name filter, counts by status, and the one
wait primitive (``wait_for_orchestration_change``), sync and asyncio."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import durable_core as dc
from durable_core.status import OrchestrationStatus as S

pytestmark = pytest.mark.timeout(60)


@dc.orchestrator(name="watch_wait")
def watch_wait(ctx, _):
    ctx.set_custom_status("waiting")
    got = yield ctx.wait_for_external_event("go")
    return got


@dc.orchestrator(name="watch_other")
def watch_other(ctx, x):
    return x


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'watch.db'}"


def test_name_filter_and_counts(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        a = [c.schedule_new_orchestration(watch_other, input=i) for i in range(3)]
        w = c.schedule_new_orchestration(watch_wait, instance_id="w-1")
        for iid in a:
            c.wait_for_orchestration_completion(iid, timeout=10)
        c.wait_for_orchestration_start(w, timeout=10)
        names = {s.name for s in c.query_orchestrations(name="watch_other").states}
        assert names == {"watch_other"}
        assert len(c.query_orchestrations(name="watch_other").states) == 3
        assert c.query_orchestrations(name="no_such_name").states == []
        counts = c.count_orchestrations()
        assert set(counts) == set(S)
        assert counts[S.COMPLETED] == 3 and counts[S.RUNNING] == 1 and counts[S.FAILED] == 0
        assert c.count_orchestrations(name="watch_wait")[S.COMPLETED] == 0
        assert c.count_orchestrations(instance_id_prefix="w-")[S.RUNNING] == 1


def test_sync_wait_for_change(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        iid = c.schedule_new_orchestration(watch_wait)
        st = c.wait_for_orchestration_start(iid, timeout=10)
        while st.custom_status != "waiting":
            st = c.wait_for_orchestration_change(iid, since=st, timeout=5)
        # nothing changes: the unchanged state comes back once the time is up
        t0 = time.monotonic()
        same = c.wait_for_orchestration_change(iid, since=st, timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        assert same is not None and same.runtime_status == st.runtime_status
        threading.Timer(0.1, c.raise_orchestration_event, (iid, "go"), {"data": 7}).start()
        new = c.wait_for_orchestration_change(iid, since=st, timeout=10)
        while new.runtime_status != S.COMPLETED:
            new = c.wait_for_orchestration_change(iid, since=new, timeout=10)
        assert new.output == 7
        assert c.wait_for_orchestration_change("nope", since=st, timeout=1) is None
        # since=None: the current state at once
        assert c.wait_for_orchestration_change(iid).runtime_status == S.COMPLETED


def test_async_wait_for_change_and_cancel(url):
    async def main():
        async with dc.Runtime(url) as rt:
            c = rt.async_client
            iid = await c.schedule_new_orchestration(watch_wait)
            st = await c.wait_for_orchestration_start(iid, timeout=10)
            while st.custom_status != "waiting":
                st = await c.wait_for_orchestration_change(iid, since=st, timeout=5)
            # a cancelled wait unregisters from the store's wake-ups
            t = asyncio.ensure_future(c.wait_for_orchestration_change(iid, since=st, timeout=30))
            await asyncio.sleep(0.05)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            assert rt.backend.watcher_count(iid) == 0
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, lambda: asyncio.ensure_future(
                c.raise_orchestration_event(iid, "go", data="x")))
            new = await c.wait_for_orchestration_change(iid, since=st, timeout=10)
            while new.runtime_status != S.COMPLETED:
                new = await c.wait_for_orchestration_change(iid, since=new, timeout=10)
            assert new.output == "x"

    asyncio.run(main())


@dc.orchestrator(name="watch_parent")
def watch_parent(ctx, _):
    a = yield ctx.call_sub_orchestrator(watch_other, input=1, instance_id="custom-child")
    b = yield ctx.call_sub_orchestrator(watch_other, input=2)
    return a + b


def test_children_by_parent(url):
    with dc.Runtime(url) as rt:
        c = rt.client
        p = c.schedule_new_orchestration(watch_parent, instance_id="par")
        assert c.wait_for_orchestration_completion(p, timeout=10).output == 3
        kids = c.query_orchestrations(parent_instance_id="par").states
        assert sorted(k.instance_id for k in kids)[0] == "custom-child"
        assert len(kids) == 2 and all(k.parent_instance_id == "par" for k in kids)
        assert c.query_orchestrations(parent_instance_id="custom-child").states == []
