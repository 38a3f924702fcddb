"""Without OpenTelemetry installed the package imports and runs as before: a subprocess whose
import of ``opentelemetry`` is blocked runs orchestrations and never imports it. And the global
providers, which a process sets once: picked up whether set before the import or while the
worker runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("durable_core.engine")

BLOCKED = textwrap.dedent('''
    import sys

    class Block:
        """As if opentelemetry were not installed."""
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"No module named {name!r} (blocked)")
            return None

    sys.meta_path.insert(0, Block())
    import durable_core as dc
    from durable_core import telemetry

    assert not telemetry.available()
    reg = dc.Registry()

    def inc(ctx, x):
        ctx_logger = None
        return x + 1

    def chain(ctx, x):
        ctx.logger.info("chain step")
        for _ in range(3):
            x = yield ctx.call_activity("inc", input=x)
        return x

    reg.add_activity(inc)
    reg.add_orchestrator(chain)
    with dc.Runtime(sys.argv[1], registry=reg) as rt:
        for i in range(3):
            rt.client.schedule_new_orchestration("chain", input=i, instance_id=f"i{i}")
        outs = [rt.client.wait_for_orchestration_completion(f"i{i}", timeout=20).output
                for i in range(3)]
    assert outs == [3, 4, 5], outs
    try:
        dc.Worker(sys.argv[1], registry=reg, tracer_provider=object())
    except ImportError as exc:
        assert "durable_core[otel]" in str(exc), exc
    else:
        raise AssertionError("a tracer provider without OpenTelemetry was accepted")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    assert not leaked, leaked
    print("ran without opentelemetry")
''')


def test_runs_without_opentelemetry(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED, f"sqlite:///{tmp_path / 'a.db'}"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "ran without opentelemetry" in out.stdout


GLOBAL = textwrap.dedent('''
    import sys
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # the meter provider is set before durable_core is imported, the tracer provider later
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    import durable_core as dc
    from durable_core.telemetry import worker  # noqa: F401

    reg = dc.Registry()

    def inc(ctx, x):
        return x + 1

    def chain(ctx, x):
        for _ in range(3):
            x = yield ctx.call_activity("inc", input=x)
        return x

    reg.add_activity(inc)
    reg.add_orchestrator(chain)
    with dc.Runtime(sys.argv[1], registry=reg) as rt:
        rt.client.schedule_new_orchestration("chain", input=0, instance_id="before")
        rt.client.wait_for_orchestration_completion("before", timeout=20)
        # providers set while the worker runs are picked up at its next turn
        exporter = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tp)
        rt.client.schedule_new_orchestration("chain", input=0, instance_id="after")
        rt.client.wait_for_orchestration_completion("after", timeout=20)
    names = sorted({s.name for s in exporter.get_finished_spans()})
    ids = {s.attributes.get("durable_core.orchestration.instance_id")
           for s in exporter.get_finished_spans()}
    assert ids == {"after"}, ids
    assert names == ["activity inc", "create_orchestration chain", "orchestration chain",
                     "orchestration_step chain"], names
    got = {m.name: m.data.data_points[0] for rm in reader.get_metrics_data().resource_metrics
           for sm in rm.scope_metrics for m in sm.metrics}
    assert got["durable_core.orchestrations.completed"].value == 2, got
    print("global providers used")
''')


def test_global_providers_set_after_start_are_used(tmp_path):
    pytest.importorskip("opentelemetry.sdk")
    out = subprocess.run(
        [sys.executable, "-c", GLOBAL, f"sqlite:///{tmp_path / 'g.db'}"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "global providers used" in out.stdout
