"""Safe deploys: ctx.is_patched / deprecate_patch (PatchMarker events), orchestration versions,
and the engine's own patch (when_all semantics of histories recorded before it changed).

Every scenario runs on the C core and the twin; the driver checks at every episode that a
sticky session gives exactly what a full replay gives.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import both
from engine_driver import T0, Driver

import durable_core as dc
from durable_core import history as h
from durable_core.engine import CreateSubOrchestration, OrchestrationExecutor, ScheduleTask
from durable_core.status import OrchestrationStatus as S

CORES = both("ContextCore", "durable_core._engine_py")


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest) -> Any:
    return request.param


def double(ctx: Any, x: Any) -> Any:
    return x * 2


ACTS = {"double": double, "receipt": lambda ctx, x: f"receipt {x}"}


def make(core: Any, *fns: Any, **kw: Any) -> Driver:
    reg = dc.Registry()
    for fn in fns:
        reg.add_orchestrator(fn)
    return Driver(OrchestrationExecutor(reg, implementation=core), ACTS, **kw)


def replay(core: Any, fn: Any, history: list[Any], new: list[Any]) -> Any:
    reg = dc.Registry()
    reg.add_orchestrator(fn, name="flow")
    return OrchestrationExecutor(reg, implementation=core).execute("inst", history, new)


def v1(ctx: Any) -> Any:
    a = yield ctx.call_activity("double", input=1)
    b = yield ctx.wait_for_external_event("go")
    return [a, b]


def v2(ctx: Any) -> Any:
    """v1 with a patch: a receipt after the first step."""
    a = yield ctx.call_activity("double", input=1)
    extra = None
    if ctx.is_patched("receipt"):
        extra = yield ctx.call_activity("receipt", input=a)
    b = yield ctx.wait_for_external_event("go")
    return [a, b, extra]


def _v1_history(core: Any) -> list[Any]:
    """v1's history, waiting for "go" (recorded by code from before the patch)."""
    d = make(core)
    d.executor.registry.add_orchestrator(v1, name="flow")
    d.start("flow")
    d.run()
    return d.history


def test_new_execution_is_patched_and_records_a_marker(core: Any) -> None:
    reg = dc.Registry()
    reg.add_orchestrator(v2, name="flow")
    d = Driver(OrchestrationExecutor(reg, implementation=core), ACTS)
    d.start("flow")
    d.run()
    d.raise_event("go", 7)
    assert d.output == [2, 7, "receipt 2"]
    markers = [e for e in d.history if type(e) is h.PatchMarker]
    assert markers == [h.PatchMarker(-1, T0 + 1000, "receipt")]
    # the marker follows the episode's new events and precedes its actions
    i = d.history.index(markers[0])
    assert type(d.history[i - 1]) is h.TaskCompleted and type(d.history[i + 1]) is h.TaskScheduled
    # no sequence number taken: the receipt is the next call after the first activity
    assert [e.event_id for e in d.history if type(e) is h.TaskScheduled] == [0, 1]


def test_history_from_before_the_patch_replays_the_old_path(core: Any) -> None:
    hist = _v1_history(core)  # waiting for "go", the first step done without a receipt
    res = replay(core, v2, hist, [h.OrchestratorStarted(-1, T0 + 10**6),
                                  h.EventRaised(-1, T0 + 10**6, "go", b"7")])
    assert res.completion is not None and res.completion.status == S.COMPLETED
    assert res.completion.result == b"[2,7,null]"  # is_patched was False while replaying
    assert not any(type(e) is h.PatchMarker for e in res.new_history)


def test_first_answer_sticks_for_the_execution(core: Any) -> None:
    answers: list[bool] = []

    def flow(ctx: Any) -> Any:
        answers.append(ctx.is_patched("p"))
        yield ctx.call_activity("double", input=1)
        answers.append(ctx.is_patched("p"))  # asked again, not replaying now: still False
        return answers[-2:]

    hist = _v1_history(core)[:4]  # ExecutionStarted, TaskScheduled: recorded without the patch
    res = replay(core, flow, hist, [h.OrchestratorStarted(-1, T0 + 1),
                                    h.TaskCompleted(-1, T0 + 1, 0, b"2")])
    assert res.completion.result == b"[false,false]"
    assert not any(type(e) is h.PatchMarker for e in res.new_history)


def test_patch_first_reached_in_a_new_step_applies_to_an_old_instance(core: Any) -> None:
    hist = _v1_history(core)[:4]  # the first activity scheduled under v1, not yet completed
    reg = dc.Registry()
    reg.add_orchestrator(v2, name="flow")
    ex = OrchestrationExecutor(reg, implementation=core)
    res = ex.execute("inst", hist, [h.OrchestratorStarted(-1, T0 + 1),
                                    h.TaskCompleted(-1, T0 + 1, 0, b"2")])
    assert res.actions == [ScheduleTask(1, "receipt", b"2")]
    assert h.PatchMarker(-1, T0 + 1, "receipt") in res.new_history
    # a full replay of it takes the same path (the marker is after the call's position)
    again = ex.execute("inst", hist + res.new_history, [h.OrchestratorStarted(-1, T0 + 2),
                                                        h.TaskCompleted(-1, T0 + 2, 1, b'"r"')])
    assert again.completion is None and again.actions == []
    sticky = res.session.execute([h.OrchestratorStarted(-1, T0 + 2),
                                  h.TaskCompleted(-1, T0 + 2, 1, b'"r"')])
    assert sticky.new_history == again.new_history


def test_patched_histories_replay_patched(core: Any) -> None:
    d = make(core, v2, batch=False)
    d.executor.registry.add_orchestrator(v2, name="flow")
    d.start("flow")
    d.run()  # the driver compares sticky and full replay at each step
    res = replay(core, v2, d.history, [h.OrchestratorStarted(-1, d.now),
                                       h.EventRaised(-1, d.now, "go", b"1")])
    assert res.completion.result == b'[2,1,"receipt 2"]'
    assert not any(type(e) is h.PatchMarker for e in res.new_history)  # recorded once


def test_adding_a_patch_check_shifts_no_sequence_number(core: Any) -> None:
    def with_check(ctx: Any) -> Any:
        ctx.is_patched("noop")
        a = yield ctx.call_activity("double", input=1)
        ctx.is_patched("other")
        return (yield ctx.wait_for_external_event("go")), a

    hist = _v1_history(core)
    res = replay(core, with_check, hist, [h.OrchestratorStarted(-1, T0 + 10**6),
                                          h.EventRaised(-1, T0 + 10**6, "go", b"5")])
    assert res.completion is not None and res.completion.status == S.COMPLETED


def test_deprecate_patch(core: Any) -> None:
    def v3(ctx: Any) -> Any:
        a = yield ctx.call_activity("double", input=1)
        ctx.deprecate_patch("receipt")
        extra = yield ctx.call_activity("receipt", input=a)
        b = yield ctx.wait_for_external_event("go")
        return [a, b, extra]

    # instances started under v2 (the marker recorded) replay under v3
    d = make(core, v2)
    d.executor.registry.add_orchestrator(v2, name="flow")
    d.start("flow")
    d.run()
    res = replay(core, v3, d.history, [h.OrchestratorStarted(-1, d.now),
                                       h.EventRaised(-1, d.now, "go", b"1")])
    assert res.completion.result == b'[2,1,"receipt 2"]'
    # new instances under v3 record the marker, so they replay under v3 too
    d3 = make(core, v3)
    d3.executor.registry.add_orchestrator(v3, name="flow")
    d3.start("flow")
    d3.run()
    d3.raise_event("go", 3)
    assert d3.output == [2, 3, "receipt 2"]
    assert [e.patch_id for e in d3.history if type(e) is h.PatchMarker] == ["receipt"]
    # an instance from before the patch fails, naming it
    old = _v1_history(core)
    res = replay(core, v3, old, [h.OrchestratorStarted(-1, T0 + 10**6)])
    c = res.completion
    assert c is not None and c.status == S.FAILED
    fd = c.failure_details
    assert fd.error_type == "NonDeterminismError"
    assert "'receipt'" in fd.message and "predates" in fd.message and "'inst'" in fd.message


def test_deprecate_after_a_false_answer_fails(core: Any) -> None:
    def flow(ctx: Any) -> Any:
        if not ctx.is_patched("p"):
            try:
                ctx.deprecate_patch("p")
            except dc.NonDeterminismError:
                pass  # caught: the instance has failed anyway
        yield ctx.call_activity("double", input=1)
        return "went on"

    hist = _v1_history(core)[:4]
    res = replay(core, flow, hist, [h.OrchestratorStarted(-1, T0 + 1)])
    assert res.completion.status == S.FAILED
    assert res.completion.failure_details.error_type == "NonDeterminismError"


def test_deprecate_reached_in_a_new_step_records(core: Any) -> None:
    def flow(ctx: Any) -> Any:
        a = yield ctx.call_activity("double", input=1)
        ctx.deprecate_patch("receipt")
        return a

    hist = _v1_history(core)[:4]
    res = replay(core, flow, hist, [h.OrchestratorStarted(-1, T0 + 1),
                                    h.TaskCompleted(-1, T0 + 1, 0, b"2")])
    assert res.completion.status == S.COMPLETED
    assert h.PatchMarker(-1, T0 + 1, "receipt") in res.new_history


@pytest.mark.parametrize("bad,exc", [(None, TypeError), (3, TypeError), ("", TypeError),
                                     ("durable_core/x", ValueError)])
def test_patch_ids_are_checked(core: Any, bad: Any, exc: type) -> None:
    seen: list[str] = []

    def flow(ctx: Any) -> Any:
        for call in (ctx.is_patched, ctx.deprecate_patch):
            try:
                call(bad)
            except exc as e:
                seen.append(type(e).__name__)
        return len(seen)

    d = make(core, flow)
    d.start("flow")
    assert d.output == 2


def test_markers_with_other_ids_do_not_count(core: Any) -> None:
    hist = _v1_history(core)
    hist.insert(3, h.PatchMarker(-1, T0, "something-else"))
    res = replay(core, v2, hist, [h.OrchestratorStarted(-1, T0 + 10**6),
                                  h.EventRaised(-1, T0 + 10**6, "go", b"7")])
    assert res.completion.result == b"[2,7,null]"


# --- versions ------------------------------------------------------------------------------------

def test_version_from_execution_started_and_inherited_by_children(core: Any) -> None:
    def kid(ctx: Any) -> Any:
        return ctx.version

    def parent(ctx: Any) -> Any:
        inherited = yield ctx.call_sub_orchestrator(kid)
        explicit = yield ctx.call_sub_orchestrator(kid, version="9")
        return [ctx.version, inherited, explicit]

    d = make(core, kid, parent)
    first = d.start("parent", version="2")
    assert first.actions == [CreateSubOrchestration(0, "kid", "inst:0000", None, "2")]
    assert first.new_history[2] == h.SubOrchestrationInstanceCreated(
        0, T0, "kid", "inst:0000", None, "2")
    d.run()
    assert d.output == ["2", "2", "9"]
    unversioned = make(core, kid, parent)
    unversioned.start("parent")
    unversioned.run()
    assert unversioned.output == [None, None, "9"]
    sub = [a for r in unversioned.results for a in r.actions if type(a) is CreateSubOrchestration]
    assert [a.version for a in sub] == [None, "9"]


def test_sub_orchestration_retry_keeps_the_version(core: Any) -> None:
    calls = {"n": 0}

    def kid(ctx: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("first")
        return ctx.version

    def parent(ctx: Any) -> Any:
        policy = dc.RetryPolicy(timedelta(seconds=1), 3)
        return (yield ctx.call_sub_orchestrator(kid, retry_policy=policy, version="5"))

    d = make(core, kid, parent, check_sticky=False)
    d.start("parent", version="1")
    d.run()
    assert d.output == "5"
    sub = [a for r in d.results for a in r.actions if type(a) is CreateSubOrchestration]
    assert [a.version for a in sub] == ["5", "5"]


def test_version_change_is_not_a_non_determinism(core: Any) -> None:
    def kid(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("never")

    def parent(ctx: Any) -> Any:
        yield ctx.call_sub_orchestrator("kid", version="1")
        yield ctx.wait_for_external_event("never")

    def parent2(ctx: Any) -> Any:
        yield ctx.call_sub_orchestrator("kid", version="2")
        yield ctx.wait_for_external_event("never")

    d = make(core, kid)
    d.executor.registry.add_orchestrator(parent, name="flow")
    d.start("flow")
    res = replay(core, parent2, d.history, [h.OrchestratorStarted(-1, d.now)])
    assert res.completion is None
    with pytest.raises(TypeError):
        make(core, kid, parent).executor.new_context("x").call_sub_orchestrator("kid", version=2)


def test_registry_versions() -> None:
    reg = dc.Registry()

    def flow(ctx: Any) -> Any:
        return 1

    def other(ctx: Any) -> Any:
        return 2

    assert reg.add_orchestrator(flow, version="3") == "flow"
    reg.add_orchestrator(other)
    assert reg.orchestrator_version("flow") == "3"
    assert reg.orchestrator_version("other") is None
    assert reg.orchestrator_version("unknown") is None
    with pytest.raises(TypeError):
        reg.add_orchestrator(lambda ctx: 0, name="x", version=3)  # type: ignore[arg-type]

    @dc.orchestrator(name="versioned_flow_for_test", version="7")
    def versioned(ctx: Any) -> Any:
        return ctx.version

    from durable_core.registry import default_registry

    assert default_registry.orchestrator_version("versioned_flow_for_test") == "7"
    mine = dc.Registry()
    mine.add_orchestrator(versioned)  # the decorator's version comes along
    assert mine.orchestrator_version("versioned_flow_for_test") == "7"
    with pytest.raises(TypeError):
        dc.orchestrator(version=1)  # type: ignore[arg-type]


def test_trace_context_is_carried(core: Any) -> None:
    seen: list[Any] = []

    def flow(ctx: Any) -> Any:
        seen.append(ctx.__dict__.get("_trace_context"))
        return 1

    reg = dc.Registry()
    reg.add_orchestrator(flow)
    OrchestrationExecutor(reg, implementation=core).execute("i", [], [
        h.OrchestratorStarted(-1, T0),
        h.ExecutionStarted(-1, T0, "flow", "i", trace_context="00-aa-bb-01")])
    assert seen == ["00-aa-bb-01"]


# --- the engine's own patch: when_all ----------------------------------------------------------

def _fan(ctx: Any) -> Any:
    try:
        yield dc.when_all([ctx.call_activity("fail"), ctx.call_activity("double", input=1)])
    except dc.TaskFailedError:
        return (yield ctx.call_activity("double", input=5))


def _legacy_history() -> list[Any]:
    """What the engine recorded before when_all waited: the handler ran at the first failure."""
    fd = h.FailureDetails("ActivityNotFoundError", "no activity named 'fail'")
    return [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, "flow", "inst"),
            h.TaskScheduled(0, T0, "fail"), h.TaskScheduled(1, T0, "double", b"1"),
            h.OrchestratorCompleted(-1, T0),
            h.OrchestratorStarted(-1, T0 + 1), h.TaskFailed(-1, T0 + 1, 0, fd),
            h.TaskScheduled(2, T0 + 1, "double", b"5"), h.OrchestratorCompleted(-1, T0 + 1)]


def test_histories_of_the_fail_fast_when_all_replay_as_they_ran(core: Any) -> None:
    res = replay(core, _fan, _legacy_history(), [h.OrchestratorStarted(-1, T0 + 2),
                                                 h.TaskCompleted(-1, T0 + 2, 1, b"2"),
                                                 h.TaskCompleted(-1, T0 + 2, 2, b"10")])
    assert res.completion is not None and res.completion.result == b"10"
    assert not any(type(e) is h.PatchMarker for e in res.new_history)


def test_when_all_records_its_patch_only_where_it_matters(core: Any) -> None:
    d = make(core, _fan, batch=False)
    d.executor.registry.add_orchestrator(_fan, name="flow")
    d.start("flow")
    d.run()
    assert d.output == 10
    assert [e.patch_id for e in d.history if type(e) is h.PatchMarker] == [
        "durable_core/when_all-waits-for-all"]
    # no failure with other tasks running: nothing recorded
    d2 = make(core, _fan)  # batch: both outcomes in one step, the failure arrives first
    d2.executor.registry.add_orchestrator(_fan, name="flow")
    d2.start("flow")
    d2.inbox.reverse()  # the success first, then the failure: nothing left running
    d2.run()
    assert d2.output == 10
    assert not any(type(e) is h.PatchMarker for e in d2.history)
