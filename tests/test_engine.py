"""Scenario suite of the replay engine, run against the C core and the Python twin.

Every scenario runs through ``engine_driver.Driver``, which also checks at every episode that
the sticky session gives exactly what a full replay gives.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import both
from engine_driver import STEP, T0, Driver

import durable_core as dc
from durable_core import history as h
from durable_core.engine import (
    CompleteOrchestration,
    CreateSubOrchestration,
    CreateTimer,
    ExecutionResult,
    OrchestrationExecutor,
    ScheduleTask,
    SendEvent,
)
from durable_core.errors import EventTimeoutError, TaskCancelledError
from durable_core.status import OrchestrationStatus as S

CORES = both("ContextCore", "durable_core._engine_py")
SEC = 1_000_000


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def reg() -> dc.Registry:
    return dc.Registry()


def make(core: Any, reg: dc.Registry, activities: dict[str, Any] | None = None,
         **kw: Any) -> Driver:
    return Driver(OrchestrationExecutor(reg, implementation=core), activities or {}, **kw)


def double(ctx: dc.ActivityContext, x: Any) -> Any:
    return x * 2


def fail(ctx: dc.ActivityContext, x: Any) -> Any:
    raise ValueError(f"bad {x}")


ACTS = {"double": double, "fail": fail}


# --- chain, fan-out -----------------------------------------------------------------------------

def test_chain(core: Any, reg: dc.Registry) -> None:
    def chain(ctx: dc.OrchestrationContext, n: int) -> Any:
        x = 1
        for _ in range(n):
            x = yield ctx.call_activity(double, input=x)
        return x

    reg.add_orchestrator(chain)
    d = make(core, reg, ACTS)
    first = d.start("chain", 5)
    assert first.actions == [ScheduleTask(0, "double", b"1")]
    assert first.completion is None and first.session is not None
    # new_history: new events, then one event per action, then OrchestratorCompleted
    assert [type(e) for e in first.new_history] == [
        h.OrchestratorStarted, h.ExecutionStarted, h.TaskScheduled, h.OrchestratorCompleted]
    assert first.new_history[2] == h.TaskScheduled(0, T0, "double", b"1")
    assert first.new_history[3] == h.OrchestratorCompleted(-1, T0)
    assert d.run() is not None
    assert d.status == S.COMPLETED and d.output == 32
    assert [c for c in d.activity_calls] == [("double", v) for v in (1, 2, 4, 8, 16)]
    assert d.completion.id == 5  # the completion takes the next sequence number
    assert d.results[-1].session is None


def test_chain_encoded_history_equals_event_lists(core: Any, reg: dc.Registry) -> None:
    def chain(ctx: Any, n: int) -> Any:
        x = 1
        for _ in range(n):
            x = yield ctx.call_activity("double", input=x)
        return x

    reg.add_orchestrator(chain)
    d = make(core, reg, ACTS)
    d.start("chain", 3)
    d.run()
    ex = d.executor
    old = d.history[:-1]  # up to the last episode's events
    cut = max(i for i, e in enumerate(old) if type(e) is h.OrchestratorStarted)
    a = ex.execute("inst", old[:cut], old[cut:])
    b = ex.execute("inst", h.encode(old[:cut]), h.encode_records(old[cut:]))
    assert a.actions == b.actions and a.new_history == b.new_history
    assert a.completion is not None and a.completion.result == b"8"


def test_fan_out_fan_in(core: Any, reg: dc.Registry) -> None:
    def fan(ctx: Any, n: int) -> Any:
        results = yield dc.when_all([ctx.call_activity(double, input=i) for i in range(n)])
        return sum(results), results

    reg.add_orchestrator(fan)
    for batch in (True, False):
        d = make(core, reg, ACTS, batch=batch)
        first = d.start("fan", 10)
        assert [a.id for a in first.actions] == list(range(10))
        d.run()
        assert d.output == [90, [i * 2 for i in range(10)]]


def test_fan_out_out_of_order_completions(core: Any, reg: dc.Registry) -> None:
    def fan(ctx: Any) -> Any:
        return (yield dc.when_all([ctx.call_activity("double", input=i) for i in range(3)]))

    reg.add_orchestrator(fan)
    d = make(core, reg, ACTS)
    d.start("fan")
    d.inbox.reverse()
    d.run()
    assert d.output == [0, 2, 4]


def test_when_all_failure_is_caught(core: Any, reg: dc.Registry) -> None:
    def fan(ctx: Any) -> Any:
        try:
            yield dc.when_all([ctx.call_activity("double", input=1),
                               ctx.call_activity("fail", input=2)])
        except dc.TaskFailedError as e:
            return ["caught", e.details.error_type, e.details.message]

    reg.add_orchestrator(fan)
    d = make(core, reg, ACTS)
    d.start("fan")
    d.run()
    assert d.output == ["caught", "ValueError", "bad 2"]


def _ten(ctx: Any) -> Any:
    return (yield dc.when_all([ctx.call_activity("double", input=i) for i in range(10)]))


def test_when_all_waits_for_every_task_before_failing(core: Any, reg: dc.Registry) -> None:
    """The Durable Task SDK's fan-in case: of ten tasks five succeed, one fails and four are
    still running -- no action, no completion; once the four finished it fails with the
    failure."""
    reg.add_orchestrator(_ten)
    ex = OrchestrationExecutor(reg, implementation=core)
    old = [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, "_ten", "inst"),
           *[h.TaskScheduled(i, T0, "double", str(i).encode()) for i in range(10)],
           h.OrchestratorCompleted(-1, T0)]
    fd = h.FailureDetails("ValueError", "Kah-BOOOOM!!!")
    partial = [h.OrchestratorStarted(-1, T0 + 1),
               *[h.TaskCompleted(-1, T0 + 1, i, str(2 * i).encode()) for i in range(5)],
               h.TaskFailed(-1, T0 + 1, 5, fd)]
    res = ex.execute("inst", old, partial)
    assert res.actions == [] and res.completion is None and res.session is not None
    rest = [h.OrchestratorStarted(-1, T0 + 2),
            *[h.TaskCompleted(-1, T0 + 2, i, str(2 * i).encode()) for i in range(6, 9)]]
    res = ex.execute("inst", old + res.new_history, rest)
    assert res.actions == [] and res.completion is None  # one still running
    hist = old + [*partial, h.OrchestratorCompleted(-1, T0 + 1), *res.new_history]
    last = [h.OrchestratorStarted(-1, T0 + 3), h.TaskCompleted(-1, T0 + 3, 9, b"18")]
    full = ex.execute("inst", hist, last)
    sticky = res.session.execute(last)
    for r in (full, sticky):  # the sticky session and a full replay agree
        c = r.completion
        assert c is not None and c.status == S.FAILED and r.actions == [c] and c.id == 10
        assert c.failure_details.error_type == "TaskFailedError"
        assert "Kah-BOOOOM!!!" in c.failure_details.message
        assert c.failure_details.inner_failure.error_type == "ValueError"
    assert full.new_history == sticky.new_history


def test_when_all_reports_the_first_failure_to_arrive(core: Any, reg: dc.Registry) -> None:
    def fan(ctx: Any) -> Any:
        try:
            yield dc.when_all([ctx.call_activity("fail", input=i) for i in range(3)])
        except dc.TaskFailedError as e:
            return e.details.message

    reg.add_orchestrator(fan)
    d = make(core, reg, ACTS, batch=False)
    d.start("fan")
    d.inbox.reverse()  # task 2 fails first
    d.run()
    assert d.output == "bad 2"
    assert len(d.results) == 4  # an episode per failure, the code resumed after the last


def test_when_all_fail_fast_opt_in(core: Any, reg: dc.Registry) -> None:
    def fan(ctx: Any) -> Any:
        slow = ctx.wait_for_external_event("never")
        try:
            yield dc.when_all([slow, ctx.call_activity("fail", input=7)], fail_fast=True)
        except dc.TaskFailedError as e:
            return ["fast", e.details.message, slow.is_complete]

    reg.add_orchestrator(fan)
    d = make(core, reg, ACTS)
    d.start("fan")
    d.run()
    assert d.output == ["fast", "bad 7", False]


def test_when_all_with_children_already_finished(core: Any, reg: dc.Registry) -> None:
    def fan(ctx: Any) -> Any:
        a = ctx.call_activity("fail", input=1)
        b = ctx.call_activity("double", input=2)
        try:
            yield a
        except dc.TaskFailedError:
            pass
        c = ctx.wait_for_external_event("go")
        both_ = dc.when_all([a, b, c])  # a failed already, b is done or pending
        seen = [both_.is_complete, both_.is_failed]
        try:
            yield both_
        except dc.TaskFailedError as e:
            return [seen, e.details.message, c.get_result()]

    reg.add_orchestrator(fan)
    d = make(core, reg, ACTS)
    d.start("fan")
    d.run()
    assert d.completion is None
    d.raise_event("go", 5)
    assert d.output == [[False, False], "bad 1", 5]


def test_nested_when_all_waits_inside_when_any(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        inner = dc.when_all([ctx.call_activity("fail", input=1),
                             ctx.wait_for_external_event("late")])
        timer = ctx.create_timer(timedelta(seconds=10))
        winner = yield dc.when_any([inner, timer])
        return "timer" if winner is timer else "inner"

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    d.start("orch")
    d.run()  # the failure alone does not finish inner; the timer wins
    assert d.output == "timer"


def test_when_all_empty(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        r = yield dc.when_all([])
        return r

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.run()
    assert d.output == []


# --- when_any with a timer, event waits ---------------------------------------------------------

def _approval(ctx: Any) -> Any:
    timer = ctx.create_timer(timedelta(hours=1))
    ev = ctx.wait_for_external_event("Approve")
    winner = yield dc.when_any([ev, timer])
    if winner is ev:
        assert timer.cancel() is True
        assert timer.cancel() is False
        return ["approved", ev.get_result()]
    return "expired"


def test_when_any_event_wins(core: Any, reg: dc.Registry) -> None:
    reg.add_orchestrator(_approval)
    d = make(core, reg)
    first = d.start("_approval")
    assert first.actions == [CreateTimer(0, T0 + 3600 * SEC)]
    d.raise_event("approve", {"by": "ann"})  # names are case-insensitive
    assert d.output == ["approved", {"by": "ann"}]


def test_when_any_timer_wins(core: Any, reg: dc.Registry) -> None:
    reg.add_orchestrator(_approval)
    d = make(core, reg)
    d.start("_approval")
    d.run()
    assert d.status == S.COMPLETED and d.output == "expired"
    assert d.now >= T0 + 3600 * SEC


def test_events_before_and_after_waiting(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        a = yield ctx.wait_for_external_event("go")
        b = yield ctx.wait_for_external_event("GO")
        c = yield ctx.wait_for_external_event("other")
        return [a, b, c]

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.run()
    # 'other' arrives first and is buffered; two 'go' events in one episode keep their order
    d.raise_event("other", 3, run=False)
    d.send([h.EventRaised(-1, d.now, "Go", b"1"), h.EventRaised(-1, d.now, "go", b"2")])
    assert d.output == [1, 2, 3]


def test_event_timeout(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        try:
            yield ctx.wait_for_external_event("x", timeout=timedelta(seconds=30))
        except EventTimeoutError as e:
            return ["timeout", isinstance(e, TimeoutError)]
        return "got it"

    reg.add_orchestrator(orch)
    d = make(core, reg)
    first = d.start("orch")
    assert first.actions == [CreateTimer(0, T0 + 30 * SEC)]
    d.run()
    assert d.output == ["timeout", True]


def test_event_before_timeout_ignores_timer(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        v = yield ctx.wait_for_external_event("x", timeout=timedelta(seconds=30))
        w = yield ctx.create_timer(timedelta(seconds=60))
        return [v, w]

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.raise_event("x", "val", run=False)
    d.run()  # the timeout timer fires later and is ignored
    assert d.output == ["val", None]


def test_uncaught_event_timeout_fails(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return (yield ctx.wait_for_external_event("x", timeout=timedelta(seconds=1)))

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.run()
    assert d.status == S.FAILED
    assert d.completion.failure_details.error_type == "EventTimeoutError"


def test_cancel_event_wait(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        ev = ctx.wait_for_external_event("x", timeout=timedelta(seconds=5))
        ev.cancel()
        try:
            yield ev
        except TaskCancelledError:
            pass
        v = yield ctx.wait_for_external_event("x")  # the next wait gets the event
        return v

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.raise_event("x", 7)
    assert d.output == 7


def test_cancel_non_cancellable(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        t = ctx.call_activity("double", input=1)
        try:
            t.cancel()
        except TypeError:
            return "refused"
        return "cancelled"

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    d.start("orch")
    d.run()
    assert d.output == "refused"


def test_cancelled_timer_fails_awaiter(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        t = ctx.create_timer(timedelta(seconds=5))
        t.cancel()
        yield t

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.run()
    assert d.status == S.FAILED
    assert d.completion.failure_details.error_type == "TaskCancelledError"


# --- retries ------------------------------------------------------------------------------------

def _flaky(fail_times: int) -> Any:
    calls = {"n": 0}

    def flaky(ctx: Any, x: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= fail_times:
            raise RuntimeError(f"attempt {calls['n']}")
        return x + 100

    return flaky


POLICY = dc.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3,
                        backoff_coefficient=2.0)


def test_retry_succeeds(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return (yield ctx.call_activity("flaky", input=1, retry_policy=POLICY))

    reg.add_orchestrator(orch)
    d = make(core, reg, {"flaky": _flaky(2)})
    d.start("orch")
    d.run()
    assert d.output == 101
    # attempt 0 -> timer 1 (1 s) -> attempt 2 -> timer 3 (2 s) -> attempt 4
    acts = [a for r in d.results for a in r.actions]
    sched = [a.id for a in acts if type(a) is ScheduleTask]
    timers = [a for a in acts if type(a) is CreateTimer]
    assert sched == [0, 2, 4] and [t.id for t in timers] == [1, 3]
    started = [e.timestamp for e in d.history if type(e) is h.TaskFailed]
    assert timers[0].fire_at - started[0] == 1 * SEC
    assert timers[1].fire_at - started[1] == 2 * SEC


def test_retry_exhausts(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return (yield ctx.call_activity("flaky", input=1, retry_policy=POLICY))

    reg.add_orchestrator(orch)
    flaky = _flaky(99)
    d = make(core, reg, {"flaky": flaky})
    d.start("orch")
    d.run()
    assert d.status == S.FAILED
    fd = d.completion.failure_details
    assert fd.error_type == "TaskFailedError" and "attempt 3" in fd.message
    assert len(d.activity_calls) == 3


def test_retry_timeout_and_max_interval() -> None:
    p = dc.RetryPolicy(timedelta(seconds=10), 10, backoff_coefficient=3.0,
                       max_retry_interval=timedelta(seconds=50),
                       retry_timeout=timedelta(seconds=100))
    assert p.next_delay_us(1, 0, 0) == 10 * SEC
    assert p.next_delay_us(2, 0, 0) == 30 * SEC
    assert p.next_delay_us(3, 0, 0) == 50 * SEC
    assert p.next_delay_us(3, 0, 100 * SEC) is None
    assert p.next_delay_us(10, 0, 0) is None
    with pytest.raises(ValueError):
        dc.RetryPolicy(timedelta(seconds=1), 0)
    with pytest.raises(ValueError):
        dc.RetryPolicy(timedelta(seconds=1), 2, backoff_coefficient=0.5)


def test_sub_orchestration_retry(core: Any, reg: dc.Registry) -> None:
    state = {"n": 0}

    def child(ctx: Any, x: Any) -> Any:
        state["n"] += 1
        if state["n"] < 2:
            raise KeyError("first time")
        return x

    def parent(ctx: Any) -> Any:
        return (yield ctx.call_sub_orchestrator(child, input=5, retry_policy=POLICY))

    reg.add_orchestrator(child)
    reg.add_orchestrator(parent)
    d = make(core, reg)
    d.start("parent")
    d.run()
    assert d.output == 5


# --- sub-orchestrations -------------------------------------------------------------------------

def test_sub_orchestrations(core: Any, reg: dc.Registry) -> None:
    def child(ctx: Any, x: int) -> Any:
        assert ctx.parent_instance_id == "inst"
        r = yield ctx.call_activity("double", input=x)
        if r > 10:
            raise ValueError("too big")
        return r

    def parent(ctx: Any) -> Any:
        a = yield ctx.call_sub_orchestrator(child, input=3)
        try:
            yield ctx.call_sub_orchestrator("child", input=50, instance_id="kid")
        except dc.TaskFailedError as e:
            return [a, e.details.error_type, e.details.message]

    reg.add_orchestrator(child)
    reg.add_orchestrator(parent)
    d = make(core, reg, ACTS)
    first = d.start("parent")
    assert first.actions == [CreateSubOrchestration(0, "child", "inst:0000", b"3")]
    d.run()
    assert d.output == [6, "ValueError", "too big"]
    assert set(d.children) == {"inst:0000", "kid"}


# --- continue_as_new, suspend, terminate, custom status -----------------------------------------

def test_continue_as_new(core: Any, reg: dc.Registry) -> None:
    def counter(ctx: Any, n: int) -> Any:
        yield ctx.create_timer(timedelta(seconds=1))
        if n < 3:
            ctx.continue_as_new(n + 1)
            return "ignored"
        return n

    reg.add_orchestrator(counter)
    d = make(core, reg)
    d.start("counter", 0)
    d.run()
    assert d.output == 3 and d.executions == 3
    cans = [a for r in d.results for a in r.actions
            if type(a) is CompleteOrchestration and a.status == S.CONTINUED_AS_NEW]
    assert [a.result for a in cans] == [b"1", b"2", b"3"]


def test_continue_as_new_save_events(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any, n: int) -> Any:
        if n == 0:
            yield ctx.wait_for_external_event("go")
            ctx.continue_as_new(1, save_events=True)
            return None
        a = yield ctx.wait_for_external_event("keep")
        b = yield ctx.wait_for_external_event("keep")
        return [a, b]

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch", 0)
    d.run()
    res = d.send([h.EventRaised(-1, d.now, "keep", b"1"), h.EventRaised(-1, d.now, "go", None),
                  h.EventRaised(-1, d.now, "keep", b"2")], run=False)
    comp = res.completion
    assert comp is not None and comp.status == S.CONTINUED_AS_NEW
    assert [e.input for e in comp.carryover_events] == [b"1", b"2"]
    d.run()
    assert d.output == [1, 2]


def test_suspend_resume(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return (yield ctx.wait_for_external_event("x"))

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    r = d.send([h.ExecutionSuspended(-1, d.now)])
    assert r.is_suspended
    r = d.send([h.EventRaised(-1, d.now, "x", b"42")])
    assert r.is_suspended and r.completion is None  # buffered while suspended
    r = d.send([h.ExecutionResumed(-1, d.now)])
    assert not r.is_suspended and d.output == 42


def test_terminate(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        yield ctx.create_timer(timedelta(days=1))
        return "never"

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.send([h.ExecutionSuspended(-1, d.now)], run=False)
    r = d.send([h.ExecutionTerminated(-1, d.now, b'"stop"')], run=False)
    assert r.completion is not None and r.completion.status == S.TERMINATED
    assert d.output == "stop" and r.session is None
    assert type(r.new_history[-2]) is h.ExecutionCompleted


def test_custom_status(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        ctx.set_custom_status({"pct": 0})
        yield ctx.call_activity("double", input=1)
        ctx.set_custom_status({"pct": 100})
        yield ctx.wait_for_external_event("done")

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    assert d.start("orch").custom_status == b'{"pct":0}'
    d.run()
    assert d.results[-1].custom_status == b'{"pct":100}'


def test_no_custom_status_is_none(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return 1

    reg.add_orchestrator(orch)
    assert make(core, reg).start("orch").custom_status is None


# --- kinds of orchestrator functions, failures --------------------------------------------------

def test_async_def_orchestrator(core: Any, reg: dc.Registry) -> None:
    async def orch(ctx: Any, n: int) -> Any:
        x = await ctx.call_activity("double", input=n)
        xs = await dc.when_all([ctx.call_activity("double", input=i) for i in range(3)])
        try:
            await ctx.call_activity("fail", input=0)
        except dc.TaskFailedError as e:
            err = e.details.message
        await ctx.create_timer(timedelta(seconds=1))
        return [x, xs, err]

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    d.start("orch", 4)
    d.run()
    assert d.output == [8, [0, 2, 4], "bad 0"]


def test_plain_function_orchestrator(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any, x: Any) -> Any:
        return {"echo": x}

    def no_input(ctx: Any) -> Any:
        return ctx.instance_id

    reg.add_orchestrator(orch)
    reg.add_orchestrator(no_input)
    d = make(core, reg)
    res = d.start("orch", [1])
    assert res.completion is not None and d.output == {"echo": [1]}
    assert res.actions == [res.completion] and res.completion.id == 0
    d2 = make(core, reg)
    d2.start("no_input")
    assert d2.output == "inst"


def test_orchestrator_exception(core: Any, reg: dc.Registry) -> None:
    def boom(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        raise LookupError("no such thing")

    reg.add_orchestrator(boom)
    d = make(core, reg, ACTS)
    d.start("boom")
    d.run()
    fd = d.completion.failure_details
    assert d.status == S.FAILED
    assert (fd.error_type, fd.message) == ("LookupError", "no such thing")
    assert "boom" in fd.stack_trace and "LookupError" in fd.stack_trace


def test_uncaught_task_failure(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        yield ctx.call_activity("fail", input=9)

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    d.start("orch")
    d.run()
    fd = d.completion.failure_details
    assert fd.error_type == "TaskFailedError" and "bad 9" in fd.message
    assert fd.inner_failure is not None and fd.inner_failure.error_type == "ValueError"


def test_yield_non_task(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        yield 42

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    fd = d.completion.failure_details
    assert d.status == S.FAILED and fd.error_type == "TypeError"
    assert "yielded int 42" in fd.message and "task" in fd.message


def test_unknown_orchestrator(core: Any, reg: dc.Registry) -> None:
    d = make(core, reg)
    d.start("nope")
    fd = d.completion.failure_details
    assert d.status == S.FAILED and fd.error_type == "OrchestratorNotFoundError"
    assert "nope" in fd.message


def test_exception_at_start(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any, x: Any) -> Any:
        raise RuntimeError("early")

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    assert d.completion.failure_details.message == "early"


def test_unserializable_result_fails(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return object()

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    assert d.completion.failure_details.error_type == "PayloadError"


def test_activity_without_result_and_by_name(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        a = yield ctx.call_activity("noop")
        return a

    reg.add_orchestrator(orch)
    d = make(core, reg, {"noop": lambda ctx: None})
    d.start("orch")
    d.run()
    assert d.status == S.COMPLETED and d.output is None


# --- context facilities -------------------------------------------------------------------------

def test_replay_flags_time_uuid_logger(core: Any, reg: dc.Registry,
                                       caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []

    def orch(ctx: Any) -> Any:
        seen.append(("start", ctx.is_replaying, ctx.current_utc_datetime, ctx.new_uuid()))
        ctx.logger.info("step one")
        yield ctx.call_activity("double", input=1)
        seen.append(("after", ctx.is_replaying, ctx.current_utc_datetime, ctx.new_uuid()))
        ctx.logger.info("step two")
        return ctx.new_uuid()

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS, check_sticky=False)
    with caplog.at_level(logging.INFO, logger="durable_core.orchestration"):
        d.start("orch")
        d.run()
    t0 = datetime.fromtimestamp(T0 / SEC, tz=timezone.utc)
    t1 = datetime.fromtimestamp((T0 + STEP) / SEC, tz=timezone.utc)
    start_first, start_replay, after = seen[0], seen[1], seen[2]
    assert start_first[:3] == ("start", False, t0)
    assert start_replay[:3] == ("start", True, t0)
    assert start_first[3] == start_replay[3]  # deterministic uuid
    assert after[:3] == ("after", False, t1)
    assert after[3] != start_first[3]
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs.count("step one") == 1 and msgs.count("step two") == 1
    assert d.output != after[3]  # counter advanced within the episode


def test_send_event(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        ctx.send_event("other", "ping", data={"a": 1})
        return (yield ctx.call_activity("double", input=2))

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    first = d.start("orch")
    assert first.actions[0] == SendEvent(0, "other", "ping", b'{"a":1}')
    d.run()
    assert d.output == 4


def test_timer_at_datetime(core: Any, reg: dc.Registry) -> None:
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def orch(ctx: Any) -> Any:
        yield ctx.create_timer(when)
        yield ctx.create_timer(when.replace(tzinfo=None))
        return ctx.current_utc_datetime.year

    reg.add_orchestrator(orch)
    d = make(core, reg)
    first = d.start("orch")
    assert first.actions == [CreateTimer(0, h.from_datetime(when))]
    d.run()
    assert d.output == 2030


def test_create_timer_takes_aware_and_naive_datetimes(core: Any, reg: dc.Registry) -> None:
    """A naive datetime is UTC (never local time); any aware one means its own instant."""
    def orch(ctx: Any) -> Any:
        now = ctx.current_utc_datetime
        assert now.tzinfo is timezone.utc
        later = now + timedelta(minutes=5)
        plus2 = timezone(timedelta(hours=2))
        for when in (later, later.replace(tzinfo=None), later.astimezone(plus2)):
            yield ctx.create_timer(when)
        try:
            now < datetime(2000, 1, 1)  # noqa: B015 - aware vs naive, as in the SDK's code
        except TypeError:
            pass
        return now.replace(tzinfo=None) > datetime(2000, 1, 1)  # the one-line fix

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    d.run()
    timers = [a for r in d.results for a in r.actions if type(a) is CreateTimer]
    assert [t.fire_at for t in timers] == [T0 + 300 * SEC] * 3
    assert d.output is True


def test_create_replay_safe_logger(core: Any, reg: dc.Registry,
                                   caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("durable_core.tests.ported")
    enabled: list[bool] = []

    def orch(ctx: Any) -> Any:
        olog = ctx.create_replay_safe_logger(log)
        assert olog.logger is log
        enabled.append(olog.isEnabledFor(logging.INFO))
        olog.info("starting %s", ctx.instance_id)
        yield ctx.call_activity("double", input=1)
        olog.warning("done")
        try:
            ctx.create_replay_safe_logger("not a logger")
        except TypeError:
            return "refused"

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS, check_sticky=False)
    with caplog.at_level(logging.INFO, logger="durable_core.tests.ported"):
        d.start("orch")
        d.run()
    assert d.output == "refused"
    msgs = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert msgs == ["starting inst", "done"]
    assert enabled == [True, False]  # the second run replayed the start


def test_sdk_error_names() -> None:
    assert dc.OrchestratorNotRegisteredError is dc.OrchestratorNotFoundError
    from durable_core import errors

    assert "OrchestratorNotRegisteredError" in errors.__all__
    assert "OrchestratorNotRegisteredError" in dir(dc)


def test_decorators_and_registry() -> None:
    @dc.orchestrator(name="named_orch_for_test")
    def o(ctx: Any) -> Any:
        return 1

    @dc.activity
    def act_for_test(ctx: Any, x: Any) -> Any:
        return x

    from durable_core.registry import default_registry

    assert o.__durable_name__ == "named_orch_for_test" and o.__durable_kind__ == "orchestrator"
    assert act_for_test.__durable_kind__ == "activity"
    assert default_registry.get_orchestrator("named_orch_for_test") is o
    assert default_registry.get_activity("act_for_test") is act_for_test
    assert default_registry.name_of(o) == "named_orch_for_test"
    assert default_registry.name_of("x") == "x"
    assert "act_for_test" in default_registry.activity_names()
    assert default_registry.get_orchestrator("NAMED_ORCH_FOR_TEST") is None
    r = dc.Registry()
    r.add_activity(act_for_test)
    with pytest.raises(ValueError):
        r.add_activity(lambda c: 1, name="act_for_test")
    actx = dc.ActivityContext("i", 3, "n")
    assert (actx.instance_id, actx.task_id, actx.name) == ("i", 3, "n")


def test_execute_rejects_bad_arguments(core: Any, reg: dc.Registry) -> None:
    ex = OrchestrationExecutor(reg, implementation=core)
    with pytest.raises(TypeError):
        ex.execute(1, [], [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ex.execute("i", "not events", [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ex.execute("i", [], [object()])
    with pytest.raises(dc.HistoryCorruptError):
        ex.execute("i", b"DCH\x01garbage", [])


def test_session_is_single_use(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return (yield ctx.wait_for_external_event("x"))

    reg.add_orchestrator(orch)
    ex = OrchestrationExecutor(reg, implementation=core)
    res = ex.execute("i", [], [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, "orch", "i")])
    assert res.session is not None and res.session.history_length == len(res.new_history)
    nxt = res.session.execute([h.OrchestratorStarted(-1, T0), h.EventRaised(-1, T0, "x", b"1")])
    assert nxt.completion is not None and nxt.completion.result == b"1"
    with pytest.raises(RuntimeError):
        res.session.execute([])


# --- non-determinism ----------------------------------------------------------------------------

def _history_of(core: Any, reg: dc.Registry, name: str, acts: dict[str, Any]) -> list[Any]:
    d = make(core, reg, acts)
    d.start(name)
    d.run()
    return d.history


def _replay_with(core: Any, fn: Any, history: list[Any]) -> ExecutionResult:
    reg = dc.Registry()
    reg.add_orchestrator(fn, name="orch")
    ex = OrchestrationExecutor(reg, implementation=core)
    return ex.execute("inst", history, [h.OrchestratorStarted(-1, T0 + 10**9)])


def test_nondeterminism_name_changed(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        yield ctx.wait_for_external_event("never")

    def changed(ctx: Any) -> Any:
        yield ctx.call_activity("triple", input=1)
        yield ctx.wait_for_external_event("never")

    reg.add_orchestrator(orch)
    hist = _history_of(core, reg, "orch", ACTS)
    res = _replay_with(core, changed, hist)
    c = res.completion
    assert c is not None and c.status == S.FAILED
    fd = c.failure_details
    assert fd.error_type == "NonDeterminismError"
    assert "'inst'" in fd.message and "sequence number 0" in fd.message
    assert "TaskScheduled 'double'" in fd.message and "'triple'" in fd.message


def test_nondeterminism_type_changed(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        yield ctx.create_timer(timedelta(seconds=1))
        yield ctx.wait_for_external_event("never")

    def changed(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        yield ctx.wait_for_external_event("never")

    reg.add_orchestrator(orch)
    res = _replay_with(core, changed, _history_of(core, reg, "orch", ACTS))
    fd = res.completion.failure_details
    assert fd.error_type == "NonDeterminismError"
    assert "TimerCreated" in fd.message and "scheduled activity 'double'" in fd.message


def test_nondeterminism_missing_call(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        yield ctx.call_activity("double", input=2)
        yield ctx.wait_for_external_event("never")

    def changed(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        yield ctx.wait_for_external_event("never")

    reg.add_orchestrator(orch)
    res = _replay_with(core, changed, _history_of(core, reg, "orch", ACTS))
    fd = res.completion.failure_details
    assert fd.error_type == "NonDeterminismError" and "sequence number 1" in fd.message
    assert "made no call" in fd.message


def test_nondeterminism_sub_orchestration_name(core: Any, reg: dc.Registry) -> None:
    def kid(ctx: Any) -> Any:
        return 1

    def orch(ctx: Any) -> Any:
        yield ctx.call_sub_orchestrator("kid")
        yield ctx.wait_for_external_event("never")

    def changed(ctx: Any) -> Any:
        yield ctx.call_sub_orchestrator("other")
        yield ctx.wait_for_external_event("never")

    reg.add_orchestrator(kid)
    reg.add_orchestrator(orch)
    res = _replay_with(core, changed, _history_of(core, reg, "orch", {}))
    fd = res.completion.failure_details
    assert fd.error_type == "NonDeterminismError"
    assert "SubOrchestrationInstanceCreated 'kid'" in fd.message


def _sender(target: str, name: str) -> Any:
    def orch(ctx: Any) -> Any:
        ctx.send_event(target, name, data=1)
        yield ctx.wait_for_external_event("never")

    return orch


@pytest.mark.parametrize("target,name,message", [
    ("other", "ping", None),
    ("other", "PING", None),  # event names match case-insensitively
    ("other", "pong", "EventSent 'ping' to 'other' but the code sent event 'pong' to 'other'"),
    ("elsewhere", "ping",
     "EventSent 'ping' to 'other' but the code sent event 'ping' to 'elsewhere'"),
    ("Other", "ping", "but the code sent event 'ping' to 'Other'"),  # instance ids exactly
])
def test_nondeterminism_send_event(core: Any, reg: dc.Registry, target: str, name: str,
                                   message: Any) -> None:
    reg.add_orchestrator(_sender("other", "ping"), name="orch")
    hist = _history_of(core, reg, "orch", {})
    assert [e for e in hist if type(e) is h.EventSent] == [
        h.EventSent(0, T0, "other", "ping", b"1")]
    res = _replay_with(core, _sender(target, name), hist)
    if message is None:
        assert res.completion is None and res.actions == []
        return
    fd = res.completion.failure_details
    assert res.completion.status == S.FAILED and fd.error_type == "NonDeterminismError"
    assert "sequence number 0" in fd.message and message in fd.message


def test_nondeterminism_send_event_replaced_by_activity(core: Any, reg: dc.Registry) -> None:
    def changed(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)

    reg.add_orchestrator(_sender("other", "ping"), name="orch")
    res = _replay_with(core, changed, _history_of(core, reg, "orch", {}))
    fd = res.completion.failure_details
    assert fd.error_type == "NonDeterminismError"
    assert "EventSent 'ping' to 'other' but the code scheduled activity 'double'" in fd.message


def test_code_cannot_reenter_the_engine(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        ctx._run([], False)

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    d.start("orch")
    d.run()
    fd = d.completion.failure_details
    assert (fd.error_type, fd.message) == ("RuntimeError", "the orchestration is already running")


def test_is_replaying_while_buffered_events_apply(core: Any, reg: dc.Registry) -> None:
    flags: list[Any] = []

    def orch(ctx: Any) -> Any:
        v = yield ctx.wait_for_external_event("x")
        flags.append(ctx.is_replaying)
        return v

    reg.add_orchestrator(orch)
    d = make(core, reg, check_sticky=False)
    d.start("orch")
    d.send([h.ExecutionSuspended(-1, d.now), h.EventRaised(-1, d.now, "x", b"5")], run=False)
    d.send([h.ExecutionResumed(-1, d.now)])
    assert d.output == 5 and flags == [False]
    # a full replay of the same history applies the buffered event while replaying
    assert type(d.history[-3]) is h.ExecutionResumed
    d.executor.execute("inst", d.history[:-2], [h.OrchestratorStarted(-1, d.now)])
    assert flags[-1] is True


def test_async_orchestrator_yielding_non_task(core: Any, reg: dc.Registry) -> None:
    class Weird:
        def __await__(self) -> Any:
            yield "not a task"

    async def orch(ctx: Any) -> Any:
        await Weird()

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    fd = d.completion.failure_details
    assert d.status == S.FAILED and fd.error_type == "TypeError" and "yielded str" in fd.message


def test_task_api(core: Any, reg: dc.Registry) -> None:
    seen: dict[str, Any] = {}

    def orch(ctx: Any) -> Any:
        a = ctx.call_activity("double", input=2)
        b = ctx.call_activity("fail", input=3)
        seen["types"] = isinstance(a, dc.Task)
        seen["pending"] = (a.is_complete, a.is_failed, a.get_exception())
        with pytest.raises(RuntimeError):
            a.get_result()
        w = yield dc.when_any([a, b])
        seen["winner"] = w is a
        try:
            yield b
        except dc.TaskFailedError:
            pass
        seen["b"] = (b.is_complete, b.is_failed, type(b.get_exception()).__name__)
        with pytest.raises(dc.TaskFailedError):
            b.get_result()
        both_ = dc.when_all([a])
        seen["all"] = (both_.is_complete, both_.get_result())
        return a.get_result()

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS, check_sticky=False, batch=False)
    d.start("orch")
    d.run()
    assert d.output == 4
    assert seen == {"types": True, "pending": (False, False, None), "winner": True,
                    "b": (True, True, "TaskFailedError"), "all": (True, [4])}


def test_payload_error_reaches_code_on_every_replay(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        try:
            t = ctx.call_activity("double", input=object())
        except dc.PayloadError:
            t = ctx.call_activity("double", input=21)
        return (yield t)

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    d.start("orch")
    d.run()
    assert d.status == S.COMPLETED and d.output == 42


def test_core_without_init_refuses_politely(core: Any) -> None:
    ctx = core.__new__(core)
    with pytest.raises((RuntimeError, AttributeError, TypeError)):
        ctx.call_activity("x")


def test_core_rejects_bad_arguments(core: Any) -> None:
    conv = dc.JsonDataConverter()
    with pytest.raises(TypeError):
        core(1, conv)
    ctx = core("i", conv)
    with pytest.raises(TypeError):
        ctx.call_activity()
    with pytest.raises(TypeError):
        ctx.call_activity("a", bogus=1)
    with pytest.raises(TypeError):
        ctx.call_activity(42)
    with pytest.raises(TypeError):
        ctx._run([object()], False)


def test_replay_across_a_suspension_matches_recorded_actions(core: Any, reg: dc.Registry) -> None:
    """Events recording the code's actions are never held back by a suspension."""
    def orch(ctx: Any) -> Any:
        a = yield ctx.call_activity("double", input=1)
        yield ctx.create_timer(timedelta(seconds=0))
        return a

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)  # the driver compares sticky and full replay every episode
    d.start("orch")
    d.send([h.ExecutionSuspended(-1, d.now)], run=False)
    d.run()  # the activity result is held back
    assert d.completion is None and d.results[-1].actions == []
    d.send([h.ExecutionSuspended(-1, d.now)], run=False)  # suspending twice changes nothing
    r = d.send([h.ExecutionResumed(-1, d.now)], run=False)
    assert not r.is_suspended and r.actions == [CreateTimer(1, d.now - STEP)]
    d.run()
    assert d.output == 2


def test_bad_arguments_reach_the_code_and_take_no_sequence_number(core: Any,
                                                                  reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        errors = []
        for call in (lambda: ctx.call_sub_orchestrator("x", instance_id=5),
                     lambda: ctx.wait_for_external_event("e", timeout=5),
                     lambda: ctx.wait_for_external_event(5),
                     lambda: ctx.create_timer(5),
                     lambda: ctx.call_activity("a", retry_policy="often"),
                     lambda: ctx.send_event(1, "x")):
            try:
                call()
            except TypeError as e:
                errors.append(str(e))
        t = yield ctx.call_activity("double", input=len(errors))
        return t

    reg.add_orchestrator(orch)
    d = make(core, reg, ACTS)
    first = d.start("orch")
    assert first.actions == [ScheduleTask(0, "double", b"6")]
    d.run()
    assert d.output == 12


def test_task_in_several_composites(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        a = ctx.call_activity("double", input=1)
        b = ctx.call_activity("double", input=2)
        timer = ctx.create_timer(timedelta(seconds=30))
        first = dc.when_any([a, timer])
        both_ = dc.when_all([a, b])
        nested = dc.when_all([first, both_])
        winner, results = yield nested
        timer.cancel()
        return [winner is a, results, (yield dc.when_any([a, b])) is a]

    reg.add_orchestrator(orch)
    for batch in (True, False):
        d = make(core, reg, ACTS, batch=batch)
        d.start("orch")
        d.run()
        assert d.output == [True, [2, 4], True]


def test_late_completions_are_ignored(core: Any, reg: dc.Registry) -> None:
    def orch(ctx: Any) -> Any:
        return (yield ctx.wait_for_external_event("x"))

    reg.add_orchestrator(orch)
    d = make(core, reg)
    d.start("orch")
    r = d.send([h.TaskCompleted(-1, d.now, 7, b"1"), h.TimerFired(-1, d.now, 0, 3),
                h.TaskFailed(-1, d.now, 9, None), h.EventRaised(-1, d.now, "x", b'"ok"'),
                h.EventRaised(-1, d.now, "x", b'"late"')], run=False)
    assert r.completion is not None and d.output == "ok"
