"""Shared pieces of the telemetry tests: in-memory span exporter and metric reader, a
registry of the flows the tests trace, and span-tree helpers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Optional

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

import durable_core as dc  # noqa: E402


class Otel:
    """A tracer provider and a meter provider that keep what they record in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def metrics(self) -> dict[str, list[Any]]:
        """metric name -> its data points (collected now)."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out

    def total(self, name: str, **attrs: Any) -> float:
        """Sum of a counter's points (or a histogram's counts) whose attributes match."""
        n = 0.0
        for p in self.metrics().get(name, []):
            a = dict(p.attributes)
            if all(a.get(k) == v for k, v in attrs.items()):
                n += p.value if hasattr(p, "value") else p.count
        return n

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


FAILS: dict[str, int] = {}


def flaky(ctx: Any, key: str) -> str:
    """Fails the first two times it is called with ``key``."""
    FAILS[key] = FAILS.get(key, 0) + 1
    if FAILS[key] <= 2:
        raise RuntimeError(f"attempt {FAILS[key]} fails")
    return f"ok after {FAILS[key]}"


def inc(ctx: Any, x: int) -> int:
    return x + 1


def boom(ctx: Any, x: Any) -> None:
    raise ValueError("no good")


def chain(ctx: Any, x: int) -> Any:
    for _ in range(3):
        x = yield ctx.call_activity("inc", input=x)
    return x


def fan(ctx: Any, x: int) -> Any:
    rs = yield dc.when_all([ctx.call_activity("inc", input=x + i) for i in range(5)])
    return sum(rs)


def retried(ctx: Any, key: str) -> Any:
    policy = dc.RetryPolicy(first_retry_interval=timedelta(milliseconds=10),
                            max_number_of_attempts=5)
    return (yield ctx.call_activity("flaky", input=key, retry_policy=policy))


def parent(ctx: Any, x: int) -> Any:
    r = yield ctx.call_sub_orchestrator("chain", input=x, instance_id=f"{ctx.instance_id}-child")
    return r * 2


def waits(ctx: Any, x: int) -> Any:
    ctx.logger.info("waiting for go")
    yield ctx.create_timer(timedelta(milliseconds=20))
    got = yield ctx.wait_for_external_event("go")
    return got + (yield ctx.call_activity("inc", input=x))


def failing(ctx: Any, x: int) -> Any:
    return (yield ctx.call_activity("boom", input=x))


def registry() -> dc.Registry:
    reg = dc.Registry()
    for f in (inc, flaky, boom):
        reg.add_activity(f)
    for f in (chain, fan, retried, parent, waits, failing):
        reg.add_orchestrator(f)
    return reg


def by_id(spans: Iterable[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def parent_of(span: ReadableSpan) -> Optional[int]:
    return span.parent.span_id if span.parent is not None else None


def attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)
