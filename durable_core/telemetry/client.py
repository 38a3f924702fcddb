"""The client's side of tracing: a ``create_orchestration <name>`` span (PRODUCER) around
each start, whose context is stored with the start so the worker's spans join the trace.

With no tracer provider set, no span is made; the caller's own trace context (an instrumented
HTTP request's span, say) is still stored when there is one, so the orchestration joins it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import __version__
from . import attributes as A
from .context import encode_current

__all__ = ["ClientTracing"]

log = logging.getLogger("durable_core.telemetry")

_INACTIVE = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


class ClientTracing:
    """Spans of one client (``tracer_provider`` None: the global provider, looked up per call)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self._tp = tracer_provider
        self._seen: Any = None
        self._tracer: Any = None
        self._warned = False

    def _current_tracer(self) -> Any:
        tp = self._tp if self._tp is not None else trace.get_tracer_provider()
        if tp is not self._seen:
            self._seen = tp
            self._tracer = (None if isinstance(tp, _INACTIVE)
                            else tp.get_tracer("durable_core", __version__))
        return self._tracer

    @contextlib.contextmanager
    def start(self, name: str, instance_id: str, version: Optional[str], *,
              retry: tuple[type[BaseException], ...] = ()) -> Iterator[Optional[str]]:
        """Around one start: yields the trace context to store with it (None: no trace).

        An exception in ``retry`` (the store was busy: the caller tries again) drops the span
        unended, so a start that needed retries has one span, not one per try."""
        tracer = self._current_tracer()
        if tracer is None:
            span = trace.get_current_span()
            yield encode_current() if span.get_span_context().is_valid else None
            return
        attrs = {A.ORCHESTRATION_NAME: name, A.INSTANCE_ID: instance_id}
        if version is not None:
            attrs[A.ORCHESTRATION_VERSION] = version
        try:
            span = tracer.start_span(f"create_orchestration {name}", kind=SpanKind.PRODUCER,
                                     attributes=attrs)
            ctx = trace.set_span_in_context(span)
            value = encode_current(ctx)
        except Exception:  # noqa: BLE001 - telemetry never fails a start
            if not self._warned:
                self._warned = True
                log.warning("durable_core telemetry: the start's span failed; starting without "
                            "it", exc_info=True)
            yield None
            return
        token = otel_context.attach(ctx)
        try:
            yield value
        except retry:
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_attribute(A.ERROR_TYPE, type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.end()
            raise
        else:
            span.end()
        finally:
            otel_context.detach(token)
