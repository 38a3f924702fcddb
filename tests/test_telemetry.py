"""Traces and metrics with OpenTelemetry's SDK (in-memory exporter and reader): the span tree
of a chain, a fan-out, a retry and a sub-orchestration, the trace crossing from a client
process to the worker through the store, no duplicate spans across a worker restart or a
refused commit, metric values after a known workload, the log records' fields."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytest.importorskip("durable_core.engine")
pytest.importorskip("opentelemetry.sdk")

import durable_core as dc  # noqa: E402
from durable_core.status import OrchestrationStatus as S  # noqa: E402
from durable_core.telemetry import attributes as A  # noqa: E402

from telemetry_support import Otel, attr, by_id, parent_of, registry  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def otel():
    o = Otel()
    yield o
    o.shutdown()


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 't.db'}"


def run(url: str, otel: Otel, name: str, input: Any, iid: str, **kw: Any) -> Any:
    rt = dc.Runtime(url, registry=registry(), tracer_provider=otel.tracer_provider,
                    meter_provider=otel.meter_provider, **kw)
    rt.start()
    try:
        rt.client.schedule_new_orchestration(name, input=input, instance_id=iid)
        return rt.client.wait_for_orchestration_completion(iid, timeout=20)
    finally:
        rt.stop()


def steps_in_history(url: str, iid: str) -> int:
    with dc.Client(url) as c:
        return sum(1 for e in c.get_orchestration_history(iid)
                   if type(e).__name__ == "OrchestratorStarted")


def test_chain_span_tree(url, otel):
    st = run(url, otel, "chain", 1, "c1")
    assert st.runtime_status == S.COMPLETED and st.output == 4
    (create,) = otel.spans("create_orchestration ")
    steps = otel.spans("orchestration_step ")
    acts = otel.spans("activity ")
    (orch,) = otel.spans("orchestration chain")
    assert create.name == "create_orchestration chain"
    assert create.kind.name == "PRODUCER" and create.parent is None
    # one trace, from the start through every step and activity to the completion
    trace_ids = {s.context.trace_id for s in otel.spans()}
    assert trace_ids == {create.context.trace_id}
    assert len(steps) == 4 == steps_in_history(url, "c1")
    assert all(parent_of(s) == create.context.span_id for s in steps)
    assert parent_of(orch) == create.context.span_id
    assert orch.kind.name == "SERVER"
    assert attr(orch, A.ORCHESTRATION_STATUS) == "COMPLETED"
    assert attr(orch, A.INSTANCE_ID) == "c1" and attr(orch, A.ORCHESTRATION_NAME) == "chain"
    # the orchestration span lasts from the start to the last step, which it links to
    assert orch.start_time <= min(s.start_time for s in steps)
    assert orch.end_time >= max(s.end_time for s in steps)
    assert [link.context.span_id for link in orch.links] == [
        max(steps, key=lambda s: s.start_time).context.span_id]
    # each activity is a child of the step that scheduled it
    steps_by_id = by_id(steps)
    assert len(acts) == 3
    for a in acts:
        step = steps_by_id[parent_of(a)]
        assert [e.name for e in step.events] == ["activity scheduled"]
        assert dict(step.events[0].attributes)[A.TASK_ID] == attr(a, A.TASK_ID)
        assert attr(a, A.ACTIVITY_NAME) == "inc" and attr(a, A.ATTEMPT) == 1
        assert attr(a, A.ACTIVITY_OUTCOME) == "completed"
    for s in steps:
        assert attr(s, A.INSTANCE_ID) == "c1"
        assert attr(s, A.NEW_EVENTS) >= 2
        assert isinstance(attr(s, A.REPLAYED_EVENTS), int)
    assert [attr(s, A.ORCHESTRATION_STATUS) for s in sorted(steps, key=lambda s: s.start_time)
            ] == ["RUNNING", "RUNNING", "RUNNING", "COMPLETED"]


def test_fan_out_activities_share_their_step(url, otel):
    st = run(url, otel, "fan", 10, "f1")
    assert st.output == sum(10 + i + 1 for i in range(5))
    acts = otel.spans("activity ")
    assert len(acts) == 5
    (first,) = [s for s in otel.spans("orchestration_step ")
                if attr(s, A.ACTIONS) == 5]
    assert {parent_of(a) for a in acts} == {first.context.span_id}
    assert sorted(attr(a, A.TASK_ID) for a in acts) == sorted(
        dict(e.attributes)[A.TASK_ID] for e in first.events)


def test_retry_attempts_are_separate_spans(url, otel):
    st = run(url, otel, "retried", "r-key", "r1")
    assert st.runtime_status == S.COMPLETED and st.output == "ok after 3"
    acts = sorted(otel.spans("activity flaky"), key=lambda s: s.start_time)
    assert [attr(a, A.ACTIVITY_OUTCOME) for a in acts] == ["failed", "failed", "completed"]
    assert [attr(a, A.ERROR_TYPE) for a in acts] == ["RuntimeError", "RuntimeError", None]
    assert [a.status.status_code.name for a in acts] == ["ERROR", "ERROR", "UNSET"]
    assert len({attr(a, A.TASK_ID) for a in acts}) == 3  # each attempt is its own task
    # the back-off timers are span events of the steps
    events = [e.name for s in otel.spans("orchestration_step ") for e in s.events]
    assert events.count("timer created") == 2 and events.count("timer fired") == 2
    assert otel.total("durable_core.activity.executions", **{A.ACTIVITY_OUTCOME: "failed"}) == 2


def test_sub_orchestration_is_a_child_of_the_step_that_started_it(url, otel):
    st = run(url, otel, "parent", 1, "p1")
    assert st.output == 8
    steps = otel.spans("orchestration_step ")
    parent_steps = [s for s in steps if attr(s, A.INSTANCE_ID) == "p1"]
    child_steps = [s for s in steps if attr(s, A.INSTANCE_ID) == "p1-child"]
    (starter,) = [s for s in parent_steps
                  if [e.name for e in s.events] == ["sub-orchestration started"]]
    assert child_steps and all(parent_of(s) == starter.context.span_id for s in child_steps)
    (child_orch,) = otel.spans("orchestration chain")
    assert parent_of(child_orch) == starter.context.span_id
    assert len({s.context.trace_id for s in otel.spans()}) == 1


def test_without_a_client_trace_the_first_step_is_the_root(url, otel):
    rt = dc.Runtime(url, registry=registry(), tracer_provider=otel.tracer_provider)
    rt.start()
    try:
        with dc.Client(url) as c:  # this client traces nothing (no provider set anywhere)
            c.schedule_new_orchestration("chain", input=1, instance_id="n1")
            c.wait_for_orchestration_completion("n1", timeout=20)
    finally:
        rt.stop()
    assert not otel.spans("create_orchestration")
    steps = sorted(otel.spans("orchestration_step "), key=lambda s: s.start_time)
    root = steps[0]
    assert root.parent is None
    assert all(parent_of(s) == root.context.span_id for s in steps[1:])
    assert len({s.context.trace_id for s in otel.spans()}) == 1
    with dc.Client(url) as c:  # the root's context was recorded with the start
        started = c.get_orchestration_history("n1")[1]
    assert type(started).__name__ == "ExecutionStarted"
    assert started.trace_context.split("-")[2] == format(root.context.span_id, "016x")


def test_the_callers_span_is_the_parent_of_the_start(url, otel):
    tracer = otel.tracer_provider.get_tracer("test")
    rt = dc.Runtime(url, registry=registry(), tracer_provider=otel.tracer_provider)
    rt.start()
    try:
        with tracer.start_as_current_span("POST /operations") as request:
            rt.client.schedule_new_orchestration("chain", input=1, instance_id="h1")
        rt.client.wait_for_orchestration_completion("h1", timeout=20)
    finally:
        rt.stop()
    (create,) = otel.spans("create_orchestration ")
    assert parent_of(create) == request.get_span_context().span_id
    assert {s.context.trace_id for s in otel.spans()} == {request.get_span_context().trace_id}


def test_async_client_on_a_thread_pool_keeps_the_callers_context(url, otel):
    import asyncio

    tracer = otel.tracer_provider.get_tracer("test")

    async def main() -> Any:
        c = dc.AsyncClient(url, tracer_provider=otel.tracer_provider)
        c._inline = False  # as on a networked store: calls run on the client's thread pool
        try:
            with tracer.start_as_current_span("request") as request:
                await c.schedule_new_orchestration("chain", input=1, instance_id="a1")
            return request
        finally:
            await c.close()

    request = asyncio.run(main())
    (create,) = otel.spans("create_orchestration ")
    assert parent_of(create) == request.get_span_context().span_id


CLIENT_PROCESS = textwrap.dedent('''
    import json, sys
    from opentelemetry.sdk.trace import TracerProvider
    import durable_core as dc
    tp = TracerProvider()
    with dc.Client(sys.argv[1], tracer_provider=tp) as c:
        tracer = tp.get_tracer("client-process")
        with tracer.start_as_current_span("POST /jobs") as span:
            c.schedule_new_orchestration("chain", input=5, instance_id="x1")
            ctx = span.get_span_context()
    print(json.dumps({"trace_id": ctx.trace_id, "span_id": ctx.span_id}))
''')


def test_trace_crosses_from_a_client_process_to_the_worker_through_the_store(url, otel, tmp_path):
    out = subprocess.run([sys.executable, "-c", CLIENT_PROCESS, url], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    remote = json.loads(out.stdout)
    rt = dc.Runtime(url, registry=registry(), tracer_provider=otel.tracer_provider,
                    meter_provider=otel.meter_provider)
    rt.start()
    try:
        st = rt.client.wait_for_orchestration_completion("x1", timeout=20)
    finally:
        rt.stop()
    assert st.output == 8
    spans = otel.spans()
    assert spans and {s.context.trace_id for s in spans} == {remote["trace_id"]}
    # the worker's spans hang under the client process's create span (not exported here),
    # whose parent is the client's request span
    steps = otel.spans("orchestration_step ")
    parents = {parent_of(s) for s in steps}
    assert len(parents) == 1 and remote["span_id"] not in parents  # the create span's id
    assert all(s.parent.is_remote for s in steps)


def test_no_duplicate_spans_across_a_worker_restart(url, otel):
    reg = registry()

    def worker() -> dc.Runtime:
        rt = dc.Runtime(url, registry=reg, tracer_provider=otel.tracer_provider,
                        meter_provider=otel.meter_provider)
        rt.start()
        return rt

    rt = worker()
    try:
        rt.client.schedule_new_orchestration("waits", input=1, instance_id="w1")
        # wait until the timer fired and the orchestration waits for the event
        for _ in range(400):
            hist = rt.client.get_orchestration_history("w1") or []
            if any(type(e).__name__ == "TimerFired" for e in hist):
                break
            import time
            time.sleep(0.01)
    finally:
        rt.stop()
    before = len(otel.spans("orchestration_step "))
    assert before == 2
    rt = worker()  # a new worker: no session, the next step replays the stored history
    try:
        rt.client.raise_orchestration_event("w1", "go", data=10)
        st = rt.client.wait_for_orchestration_completion("w1", timeout=20)
    finally:
        rt.stop()
    assert st.output == 12
    steps = otel.spans("orchestration_step ")
    assert len(steps) == steps_in_history(url, "w1") == 4
    replay = [s for s in steps if attr(s, A.STICKY) is False and attr(s, A.REPLAYED_EVENTS)]
    assert replay, "the restarted worker replayed the stored history"
    assert [e.name for s in steps for e in s.events].count("event received") == 1
    assert len(otel.spans("orchestration waits")) == 1
    assert len(otel.spans("activity ")) == 1
    assert otel.total("durable_core.orchestrations.started") == 1


def test_a_refused_commit_emits_no_span(url, otel):
    """Another worker took the lease between the claim and the commit: the store refuses the
    step; its span is dropped and the step, redone, is traced once."""
    reg = registry()
    w = dc.Worker(url, registry=reg, tracer_provider=otel.tracer_provider,
                  meter_provider=otel.meter_provider)
    real_turn = w.backend.run_turn
    stolen = []

    def run_turn(owner: str, *, steps: Any, **kw: Any) -> Any:
        if steps and not stolen:
            # as if another worker claimed the instance meanwhile and then lost it
            conn = w.backend._conn()  # noqa: SLF001 - the test plays the other worker
            for s in steps:
                conn.execute("UPDATE instances SET fence = fence + 1, lock_owner = 'ghost', "
                             "lock_expires = 0 WHERE instance_id = ?", (s.instance_id,))
                stolen.append(s.instance_id)
        return real_turn(owner, steps=steps, **kw)

    w.backend.run_turn = run_turn  # type: ignore[method-assign]
    import asyncio

    async def main() -> Any:
        await w.start()
        c = dc.AsyncClient(url)
        await c.schedule_new_orchestration("chain", input=1, instance_id="s1")
        st = await c.wait_for_orchestration_completion("s1", timeout=20)
        await c.close()
        await w.stop()
        return st

    st = asyncio.run(main())
    assert st.output == 4 and stolen == ["s1"]
    assert w.stats["refused"] == 1
    assert len(otel.spans("orchestration_step ")) == steps_in_history(url, "s1") == 4
    assert otel.total("durable_core.orchestrations.started") == 1
    # the redo claimed a lease that had expired in another owner's hands
    assert otel.total("durable_core.lease.takeovers", **{A.LEASE_KIND: "orchestration"}) == 1


def test_metrics_after_a_known_workload(url, otel):
    rt = dc.Runtime(url, registry=registry(), tracer_provider=otel.tracer_provider,
                    meter_provider=otel.meter_provider)
    rt.start()
    try:
        for i in range(5):
            rt.client.schedule_new_orchestration("chain", input=i, instance_id=f"m{i}")
        rt.client.schedule_new_orchestration("failing", input=0, instance_id="mf")
        for i in range(5):
            rt.client.wait_for_orchestration_completion(f"m{i}", timeout=20)
        assert rt.client.wait_for_orchestration_completion(
            "mf", timeout=20).runtime_status == S.FAILED
    finally:
        rt.stop()
    chain = {A.ORCHESTRATION_NAME: "chain"}
    assert otel.total("durable_core.orchestrations.started", **chain) == 5
    assert otel.total("durable_core.orchestrations.completed", **chain) == 5
    assert otel.total("durable_core.orchestrations.failed") == 1
    assert otel.total("durable_core.orchestrations.failed",
                      **{A.ORCHESTRATION_NAME: "failing"}) == 1
    assert otel.total("durable_core.orchestrations.completed",
                      **{A.ORCHESTRATION_NAME: "failing"}) == 0
    assert otel.total("durable_core.activity.executions", **{A.ACTIVITY_NAME: "inc"}) == 15
    assert otel.total("durable_core.activity.executions", **{A.ACTIVITY_NAME: "boom",
                      A.ACTIVITY_OUTCOME: "failed", A.ERROR_TYPE: "ValueError"}) == 1
    assert otel.total("durable_core.activity.duration", **{A.ACTIVITY_NAME: "inc"}) == 15
    assert otel.total("durable_core.orchestration.step.duration", **chain) == 20
    assert otel.total("durable_core.orchestration.step.replayed_events", **chain) == 20
    (failed_orch,) = otel.spans("orchestration failing")
    assert attr(failed_orch, A.ERROR_TYPE) == "TaskFailedError"
    assert failed_orch.status.status_code.name == "ERROR"


def test_log_records_name_the_instance(url, otel, caplog):
    with caplog.at_level(logging.INFO, logger="durable_core"):
        rt = dc.Runtime(url, registry=registry())
        rt.start()
        try:
            rt.client.schedule_new_orchestration("waits", input=1, instance_id="l1")
            rt.client.raise_orchestration_event("l1", "go", data=1)
            rt.client.wait_for_orchestration_completion("l1", timeout=20)
        finally:
            rt.stop()
    mine = [r for r in caplog.records if r.getMessage() == "waiting for go"]
    # logged once though the orchestrator ran (replayed or resumed) three more times
    assert len(mine) == 1
    assert mine[0].instance_id == "l1" and mine[0].orchestration_name == "waits"


def test_backlog_gauges_read_the_store(url, otel):
    from durable_core.telemetry.metrics import Instruments

    with dc.Client(url) as c:
        for i in range(3):
            c.schedule_new_orchestration("chain", input=i, instance_id=f"b{i}")
        inst = Instruments(otel.meter_provider.get_meter("test"), c._core.backend)
        got = {name: [p.value for p in pts] for name, pts in otel.metrics().items()}
        assert got["durable_core.backlog.instances"] == [3]
        assert got["durable_core.backlog.activities"] == [0]
        (age,) = got["durable_core.backlog.oldest_age"]
        assert 0 <= age < 60
        inst.close()  # a stopped worker's gauges report nothing
        import time

        time.sleep(1.1)  # past the one-second cache
        assert "durable_core.backlog.instances" not in {
            n for n, pts in otel.metrics().items() if pts}


def test_histograms_have_buckets_for_their_scale(url, otel):
    run(url, otel, "chain", 1, "hb")
    (step,) = otel.metrics()["durable_core.orchestration.step.duration"]
    # steps take microseconds to milliseconds: the buckets must tell such steps apart (the
    # API's default buckets, made for milliseconds, put every step in the first or second)
    bounds = list(step.explicit_bounds)
    assert bounds[0] <= 0.0001 and bounds[-1] >= 1.0
    assert sum(n for b, n in zip(bounds, step.bucket_counts) if b <= 1.0) == step.count == 4


class _Broken:
    """A tracer provider and meter provider whose every recording call raises."""

    def get_tracer(self, *a: Any, **k: Any) -> Any:
        return self

    def get_meter(self, *a: Any, **k: Any) -> Any:
        return self

    def start_span(self, *a: Any, **k: Any) -> Any:
        raise RuntimeError("exporter on fire")

    def __getattr__(self, name: str) -> Any:  # create_counter, create_histogram, ...
        def broken(*a: Any, **k: Any) -> Any:
            raise RuntimeError(f"{name} on fire")
        return broken


def test_a_failing_sdk_never_fails_work(url, caplog):
    broken = _Broken()
    with caplog.at_level(logging.WARNING, logger="durable_core.telemetry"):
        rt = dc.Runtime(url, registry=registry(), tracer_provider=broken, meter_provider=broken)
        rt.start()
        try:
            for i in range(3):
                rt.client.schedule_new_orchestration("chain", input=i, instance_id=f"x{i}")
            states = [rt.client.wait_for_orchestration_completion(f"x{i}", timeout=20)
                      for i in range(3)]
        finally:
            rt.stop()
    assert [s.runtime_status for s in states] == [S.COMPLETED] * 3
    assert [s.output for s in states] == [3, 4, 5]
    warnings = [r for r in caplog.records if r.name == "durable_core.telemetry"]
    assert warnings and len(warnings) <= 8  # said once per failing hook, not per step
