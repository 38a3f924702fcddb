"""What telemetry costs the worker: CPU per orchestration with OpenTelemetry absent, installed
with no provider, and with traces, metrics or both recording.

Each cell is a fresh subprocess: N orchestrations (a 5-activity chain each, no-op activities)
are queued on a new SQLite file with the worker stopped, then one worker runs them all; the
figure is the process's CPU time (user + system) from the worker's start to the last
completion, divided by N, and the wall-clock rate beside it. Modes run interleaved, ``--rounds``
times, and the table shows the median and the spread. Traces go to the SDK's batch span
processor with an in-memory exporter, metrics to an in-memory reader (collected once at the
end), so exporting costs nothing beyond the SDK's own recording.

    python benchmarks/otel.py [--n 1000] [--rounds 3]
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    del sys.path[0]  # this directory's http.py would shadow the standard library's

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from typing import Any

MODES = [
    ("absent", "OpenTelemetry not importable"),
    ("off", "API installed, no provider"),
    ("traces", "traces (SDK, batch, in-memory)"),
    ("metrics", "metrics (SDK, in-memory reader)"),
    ("both", "traces + metrics"),
]


class _Block:
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


def child(mode: str, n: int) -> dict[str, Any]:
    exporter = reader = None
    if mode == "absent":
        sys.meta_path.insert(0, _Block())  # type: ignore[arg-type]
    elif mode in ("traces", "metrics", "both"):
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        if mode in ("traces", "both"):
            exporter = InMemorySpanExporter()
            tp = TracerProvider()
            tp.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 17))
            trace.set_tracer_provider(tp)
        if mode in ("metrics", "both"):
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    import durable_core as dc
    from durable_core import _impl

    reg = dc.Registry()

    def step(ctx: Any, x: int) -> int:
        return x + 1

    def chain(ctx: Any, k: int):  # noqa: ANN202
        v = 0
        for _ in range(k):
            v = yield ctx.call_activity("step", input=v)
        return v

    reg.add_activity(step)
    reg.add_orchestrator(chain)
    url = f"sqlite:///{tempfile.mkdtemp(prefix='dc-otel-')}/b.db"
    with dc.Client(url) as c:
        ids = [c.schedule_new_orchestration("chain", input=5) for _ in range(n)]
    rt = dc.Runtime(url, registry=reg)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    rt.start()
    for iid in ids:
        st = rt.client.wait_for_orchestration_completion(iid, timeout=600)
        assert st.runtime_status == dc.OrchestrationStatus.COMPLETED, st
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    rt.stop()
    out: dict[str, Any] = {"impl": _impl.IMPLEMENTATION, "cpu_us": cpu / n * 1e6,
                           "rate": n / wall,
                           "loaded": any(m.split(".")[0] == "opentelemetry" for m in sys.modules)}
    if exporter is not None:
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        out["spans"] = len(exporter.get_finished_spans()) / n
    if reader is not None:
        data = reader.get_metrics_data()
        out["metrics"] = sum(len(sm.metrics) for rm in data.resource_metrics
                             for sm in rm.scope_metrics)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="orchestrations per cell")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.n)))
        return
    results: dict[str, list[dict[str, Any]]] = {m: [] for m, _ in MODES}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for mode, _label in MODES:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode,
                                "--n", str(args.n)], capture_output=True, text=True, timeout=900)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"{mode}: {p.stderr.strip().splitlines()[-1:]}")
            results[mode].append(json.loads(line[0][7:]))
    print(f"telemetry cost: {args.n} 5-activity chains per cell, one worker, SQLite, "
          f"{args.rounds} rounds interleaved (load {load0:.1f} -> {os.getloadavg()[0]:.1f})")
    hdr = (f"{'mode':<34} {'CPU us/orch':>12} {'spread':>15} {'vs absent':>10} "
           f"{'orch/s':>8} {'spans/orch':>11}")
    print(hdr)
    print("-" * len(hdr))
    base = statistics.median(r["cpu_us"] for r in results["absent"])
    for mode, label in MODES:
        rs = results[mode]
        cpu = statistics.median(r["cpu_us"] for r in rs)
        lo, hi = min(r["cpu_us"] for r in rs), max(r["cpu_us"] for r in rs)
        rate = statistics.median(r["rate"] for r in rs)
        spans = rs[0].get("spans")
        if mode == "absent" and any(r["loaded"] for r in rs):
            label += " (NOT BLOCKED)"
        if any(r["impl"] != "c" for r in rs):
            label += " (pure Python)"
        print(f"{label:<34} {cpu:>12,.0f} {f'{lo:,.0f}-{hi:,.0f}':>15} "
              f"{(cpu / base - 1) * 100:>+9.1f}% {rate:>8,.0f} "
              f"{'-' if spans is None else f'{spans:.1f}':>11}")


if __name__ == "__main__":
    main()
