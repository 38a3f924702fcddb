"""The Worker object on an event loop: registries, graceful shutdown, lease hand-over."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("durable_core.engine")

import durable_core as dc  # noqa: E402
from durable_core.status import OrchestrationStatus as S  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def make_registry(gate: threading.Event, runs: list):
    reg = dc.Registry()

    def slow(ctx, x):
        runs.append(x)
        gate.wait(10)
        return x * 2

    def flow(ctx, x):
        return (yield ctx.call_activity("slow", input=x))

    reg.add_activity(slow)
    reg.add_orchestrator(flow)
    return reg


def test_graceful_stop_commits_inflight_results(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    gate = threading.Event()
    runs: list = []
    reg = make_registry(gate, runs)

    async def main():
        w = dc.Worker(url, registry=reg, max_concurrent_activities=2)
        await w.start()
        ac = dc.AsyncClient(url)
        iid = await ac.schedule_new_orchestration("flow", input=21)
        while not runs:
            await asyncio.sleep(0.005)
        stopping = asyncio.ensure_future(w.stop(grace=10))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waits for the activity in flight
        gate.set()
        await stopping
        assert w.inflight_activities == 0
        # the result was committed: a new worker finishes without running the activity again
        w2 = dc.Worker(url, registry=reg)
        await w2.start()
        st = await ac.wait_for_orchestration_completion(iid, timeout=10)
        await w2.stop()
        await ac.close()
        return st

    st = asyncio.run(main())
    assert st.runtime_status == S.COMPLETED and st.output == 42
    assert runs == [21]


def test_stop_without_grace_hands_activity_over(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    gate = threading.Event()
    runs: list = []
    reg = make_registry(gate, runs)

    async def main():
        w = dc.Worker(url, registry=reg)
        await w.start()
        ac = dc.AsyncClient(url)
        iid = await ac.schedule_new_orchestration("flow", input=5)
        while not runs:
            await asyncio.sleep(0.005)
        await w.stop(grace=0)  # gives up the activity's lease at once
        gate.set()
        w2 = dc.Worker(url, registry=reg)
        await w2.start()
        st = await ac.wait_for_orchestration_completion(iid, timeout=10)
        await w2.stop()
        await ac.close()
        return st

    st = asyncio.run(main())
    assert st.output == 10
    assert runs == [5, 5]  # at-least-once: the abandoned run and the new one


def test_worker_validates_arguments(tmp_path):
    with pytest.raises(ValueError):
        dc.Worker(f"sqlite:///{tmp_path / 'x.db'}", max_concurrent_activities=0)


def test_durable_timers_come_due_through_the_timer_service(tmp_path):
    from durable_core.timer import TimerService
    from datetime import timedelta

    reg = dc.Registry()

    def sleeper(ctx, ms):
        yield ctx.create_timer(timedelta(milliseconds=ms))
        return ms

    reg.add_orchestrator(sleeper)
    url = f"sqlite:///{tmp_path / 't.db'}"

    async def main():
        w = dc.Worker(url, registry=reg)
        await w.start()
        assert isinstance(w._timers, TimerService)
        ac = dc.AsyncClient(url)
        ids = [await ac.schedule_new_orchestration("sleeper", input=ms) for ms in (30, 60, 90)]
        while not len(w._timers):  # the step's timers are handed to the service when committed
            await asyncio.sleep(0.001)
        out = [(await ac.wait_for_orchestration_completion(i, timeout=10)).output for i in ids]
        await w.stop()
        await ac.close()
        return out

    assert asyncio.run(main()) == [30, 60, 90]
