"""Without OpenTelemetry installed the package imports and runs as before: a subprocess whose
import of ``opentelemetry`` is blocked runs orchestrations and never imports it."""

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
