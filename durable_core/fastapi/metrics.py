"""The Prometheus scrape endpoint: ``GET {prefix}/metrics`` of :class:`OperationsAPI`.

It serves a ``prometheus_client`` registry (``OperationsAPI(metrics_registry=...)``, the
library's default ``REGISTRY`` when that is ``None``) in the text exposition format, or in
OpenMetrics when the scraper asks for it (``Accept: application/openmetrics-text``), as
``prometheus_client``'s own HTTP server negotiates it. The runtime's metrics get there through
OpenTelemetry: a ``MeterProvider`` with ``opentelemetry.exporter.prometheus``'s
``PrometheusMetricReader`` registers itself in that registry.

The route sits behind the management auth: metrics tell the names of the orchestrations and
activities and how busy the service is. ``prometheus_client`` is imported when the route is
called, so the integration imports without it; the route then answers 501.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .problems import PROBLEM_MEDIA_TYPE, ProblemError

if TYPE_CHECKING:
    from .operations import OperationsAPI

__all__ = ["add_metrics_route", "render_metrics"]

_INSTALL_HINT = "pip install 'durable_core[prometheus]' to serve metrics"

_PROBLEM = {PROBLEM_MEDIA_TYPE: {"schema": {"type": "object"}}}
_RESPONSES: dict[Union[int, str], dict[str, Any]] = {
    200: {
        "description": "The metrics (Prometheus text format, or OpenMetrics on request)",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}},
        },
    },
    401: {"description": "No or wrong credentials", "content": _PROBLEM},
    403: {"description": "Management disabled", "content": _PROBLEM},
    501: {"description": "prometheus_client is not installed", "content": _PROBLEM},
}


def render_metrics(registry: Any, accept: Optional[str]) -> tuple[bytes, str]:
    """The exposition of ``registry`` (``None``: ``prometheus_client.REGISTRY``) in the format
    the ``Accept`` header asks for, and its content type.

    Raises a 501 :class:`ProblemError` when ``prometheus_client`` cannot be imported.
    """
    try:
        from prometheus_client import REGISTRY
        from prometheus_client.exposition import choose_encoder
    except ImportError:
        raise ProblemError(
            501,
            "Metrics are not available",
            f"the prometheus_client package is not installed: {_INSTALL_HINT}",
            slug="metrics-unavailable",
        ) from None
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY if registry is None else registry), content_type


def add_metrics_route(api: "OperationsAPI", dependencies: Sequence[Any], openapi_extra: Any) -> None:
    """Add ``GET {api.prefix}/metrics`` to ``api.router``, guarded by ``dependencies`` (the
    management auth). The registry is ``api.metrics_registry``, read at every scrape."""

    async def metrics(request: Request) -> Response:
        try:
            # collecting runs the collectors' callbacks (the backlog gauges read the store):
            # keep that off the event loop
            body, content_type = await run_in_threadpool(
                render_metrics, api.metrics_registry, request.headers.get("accept")
            )
        except ProblemError as e:
            return e.to_response(request.url.path)
        return Response(body, 200, headers={"Cache-Control": "no-store"}, media_type=content_type)

    api.router.add_api_route(
        f"{api.prefix}/metrics",
        metrics,
        methods=["GET"],
        dependencies=list(dependencies),
        name=f"{api.name}.metrics",
        summary="Prometheus scrape endpoint",
        responses=_RESPONSES,
        openapi_extra=openapi_extra or None,
        response_class=Response,
    )
