"""OpenTelemetry traces and metrics, and the fields the worker's log records carry.

Optional: install ``durable_core[otel]`` (``opentelemetry-api``) and set a tracer and/or meter
provider (the SDK's, or any other implementation), globally or per worker / client::

    Worker(store, registry=registry, tracer_provider=tp, meter_provider=mp)
    Client(store, tracer_provider=tp)

Nothing else changes in user code. Without the API installed the runtime imports nothing of
OpenTelemetry, and with it installed but no provider set the runtime records nothing.

- :mod:`.attributes` -- the span and metric attribute names;
- :mod:`.client` -- the ``create_orchestration`` span and the trace context stored with a start;
- :mod:`.worker` -- step, orchestration and activity spans; the metrics' recording;
- :mod:`.metrics` -- the instruments;
- :mod:`.context` -- the stored form of a trace context.

See ``docs/tracing.md`` for the span tree, the metric names and the Prometheus endpoint.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["available", "worker_telemetry", "client_tracing"]


def available() -> bool:
    """Whether ``opentelemetry-api`` can be imported."""
    try:
        import opentelemetry.trace  # noqa: F401
        import opentelemetry.metrics  # noqa: F401
    except ImportError:
        return False
    return True


def worker_telemetry(owner: str, backend: Any, *, tracer_provider: Any = None,
                     meter_provider: Any = None, cache_size: int = 4096) -> Optional[Any]:
    """A :class:`~.worker.WorkerTelemetry`, or None without ``opentelemetry-api``."""
    if not available():
        if tracer_provider is not None or meter_provider is not None:
            raise ImportError("tracer_provider/meter_provider need opentelemetry-api: "
                              "pip install 'durable_core[otel]'")
        return None
    from .worker import WorkerTelemetry

    return WorkerTelemetry(owner, backend, tracer_provider=tracer_provider,
                           meter_provider=meter_provider, cache_size=cache_size)


def client_tracing(tracer_provider: Any = None) -> Optional[Any]:
    """A :class:`~.client.ClientTracing`, or None without ``opentelemetry-api``."""
    if not available():
        if tracer_provider is not None:
            raise ImportError("tracer_provider needs opentelemetry-api: "
                              "pip install 'durable_core[otel]'")
        return None
    from .client import ClientTracing

    return ClientTracing(tracer_provider)
