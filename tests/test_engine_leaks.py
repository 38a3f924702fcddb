"""Leak tests: thousands of replays (full, sticky, failing) leave object counts stable."""

from __future__ import annotations

import gc
import sys
from datetime import timedelta
from typing import Any, Callable

import pytest
from conftest import both

import durable_core as dc
from durable_core import history as h
from durable_core.engine import OrchestrationExecutor

CORES = both("ContextCore", "durable_core._engine_py")
T0 = 1_700_000_000_000_000


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest) -> Any:
    return request.param


def _history(n: int, name: str) -> list[Any]:
    evs: list[Any] = [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, name, "i", b"1")]
    for i in range(n):
        evs += [h.TaskScheduled(i, T0, "act", b"1"), h.OrchestratorCompleted(-1, T0),
                h.OrchestratorStarted(-1, T0 + i), h.TaskCompleted(-1, T0, i, b'{"v":1}')]
    return evs


def _registry() -> dc.Registry:
    def chain(ctx: Any, x: Any) -> Any:
        for _ in range(5):
            x = yield ctx.call_activity("act", input=x)
        t = ctx.create_timer(timedelta(seconds=1))
        e = ctx.wait_for_external_event("e", timeout=timedelta(seconds=5))
        w = yield dc.when_any([t, e])
        if w is t:
            e.cancel()
        return x

    def bad(ctx: Any, x: Any) -> Any:
        yield ctx.call_activity("other", input=x)  # non-deterministic against _history
        raise AssertionError("unreachable")

    def boom(ctx: Any, x: Any) -> Any:
        x = yield ctx.call_activity("act", input=x)
        raise ValueError(x)

    def exits(ctx: Any, x: Any) -> Any:
        x = yield ctx.call_activity("act", input=x)
        raise SystemExit(x)

    reg = dc.Registry()
    reg.add_orchestrator(chain)
    reg.add_orchestrator(bad)
    reg.add_orchestrator(boom)
    reg.add_orchestrator(exits)
    return reg


def _count_growth(fn: Callable[[], None], rounds: int = 1500) -> int:
    for _ in range(200):  # warm caches (interned strings, type caches, hypothesis-free)
        fn()
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(rounds):
        fn()
    gc.collect()
    return len(gc.get_objects()) - before


def test_replays_do_not_leak(core: Any) -> None:
    reg = _registry()
    ex = OrchestrationExecutor(reg, implementation=core)
    chain, bad, boom = _history(5, "chain"), _history(5, "bad"), _history(1, "boom")
    exits = _history(1, "exits")
    payload = chain[-1].result
    start = [h.OrchestratorStarted(-1, T0 + 10**7)]

    def once() -> None:
        r = ex.execute("i", chain, start)  # waits on when_any: a live session
        assert r.session is not None
        s = r.session.execute([h.OrchestratorStarted(-1, T0 + 10**8),
                               h.TimerFired(-1, T0, T0 + 10**6, 5)])
        assert s.completion is not None and s.completion.result == b'{"v":1}'
        assert ex.execute("i", bad, start).completion.failure_details.error_type == \
            "NonDeterminismError"
        assert ex.execute("i", boom, start).completion.failure_details.error_type == "ValueError"
        assert ex.execute("i", exits, start).completion.failure_details.error_type == "SystemExit"
        r2 = ex.execute("i", chain, start)
        r2.session.close()

    refs = sys.getrefcount(payload)
    growth = _count_growth(once)
    assert growth < 50, f"{growth} objects left behind"
    assert sys.getrefcount(payload) == refs


def test_abandoned_sessions_are_collected(core: Any) -> None:
    reg = _registry()
    ex = OrchestrationExecutor(reg, implementation=core)
    chain = _history(3, "chain")

    def once() -> None:
        r = ex.execute("i", chain, [h.OrchestratorStarted(-1, T0)])
        assert r.session is not None  # dropped without close: generator + context cycle

    assert _count_growth(once) < 50


def test_cycles_through_task_results_are_collected(core: Any) -> None:
    """A decoded container result that comes to hold its own task is still collected."""
    import weakref

    def orch(ctx: Any, x: Any) -> Any:
        t = ctx.call_activity("act", input=x)
        r = yield t
        r["self"] = t  # result -> task -> cached result: a cycle
        f = ctx.call_activity("act", input=x)
        try:
            yield f
        except dc.TaskFailedError as e:
            e.task = f  # exception -> task -> exception
        return 1

    reg = dc.Registry()
    reg.add_orchestrator(orch)
    ex = OrchestrationExecutor(reg, implementation=core)
    old = [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, "orch", "i", b"1"),
           h.TaskScheduled(0, T0, "act"), h.OrchestratorCompleted(-1, T0),
           h.OrchestratorStarted(-1, T0), h.TaskCompleted(-1, T0, 0, b'{"a":1}'),
           h.TaskScheduled(1, T0, "act"), h.OrchestratorCompleted(-1, T0)]
    new = [h.OrchestratorStarted(-1, T0),
           h.TaskFailed(-1, T0, 1, h.FailureDetails("ValueError", "x"))]

    def once() -> None:
        r = ex.execute("i", old, new)
        assert r.completion is not None and r.completion.result == b"1"

    assert _count_growth(once, 1000) < 50
    ctx = ex.new_context("i")
    ref = weakref.ref(ctx)
    ctx._run(old, True)
    del ctx
    gc.collect()
    assert ref() is None
