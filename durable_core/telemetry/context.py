"""Trace context as the store keeps it: a W3C ``traceparent``, then ``;`` and the
``tracestate`` when there is one (``traceparent`` never contains ``;``).

It rides in the ``ExecutionStarted`` event of an orchestration (set by the client that started
it, or by the worker for a sub-orchestration or a continue-as-new) and in each activity row (set
by the step that scheduled it), so a trace crosses processes through the store. Encoding and
decoding go through OpenTelemetry's own W3C propagator.
"""

from __future__ import annotations

from typing import Any, Optional

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["encode_current", "encode_span", "decode"]

_PROPAGATOR = TraceContextTextMapPropagator()


def _encode(carrier: dict[str, str]) -> Optional[str]:
    tp = carrier.get("traceparent")
    if not tp:
        return None
    ts = carrier.get("tracestate")
    return f"{tp};{ts}" if ts else tp


def encode_current(context: Optional[Context] = None) -> Optional[str]:
    """The stored form of the current (or ``context``'s) span context; None when invalid."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return _encode(carrier)


def encode_span(span: Any) -> Optional[str]:
    """The stored form of ``span``'s context (the parent its children name)."""
    return encode_current(trace.set_span_in_context(span))


def decode(value: Optional[str]) -> Optional[Context]:
    """A context whose current span is the remote parent ``value`` names (None: no parent,
    or a value that is not a valid trace context, which is ignored rather than failing work)."""
    if not value:
        return None
    tp, _, ts = value.partition(";")
    carrier = {"traceparent": tp}
    if ts:
        carrier["tracestate"] = ts
    ctx = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx
