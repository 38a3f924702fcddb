"""The asynchronous HTTP API sample in one process: worker + API on one SQLite file.

    python examples/async_http_api/app.py --db sqlite:///durable.db --port 8000

serves the dashboard at ``/dashboard/`` and the ported Durable Task SDK routes (``client.py``: ``/api/start-operation``,
``/api/operations/{id}``, ``/api/process``, ``/api/status/{id}``, ``/api/result/{id}``) and the
generic operations router (``generic_router.py``: ``/api/jobs``, ``/operations/...``), with the
worker (``worker.py``'s orchestration and activity) running on the server's event loop.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from fastapi import FastAPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import client  # noqa: E402  (the HTTP routes)
import generic_router  # noqa: E402  (the generic router and its orchestration)
import worker  # noqa: E402,F401  (registers the sample's orchestration and activity)

from durable_core.fastapi import APIKeyAuth, dashboard, runtime_lifespan  # noqa: E402


def create_app(
    db: str = "sqlite:///durable.db", api_key: Optional[str] = None, **runtime_options: Any
) -> FastAPI:
    """Both samples' routes on one app whose lifespan runs the runtime in process
    (``runtime_options`` go to :func:`durable_core.fastapi.runtime_lifespan`), and the
    dashboard at ``/dashboard``, its actions behind the management routes' API key."""
    app = client.create_app(runtime_lifespan(db, **runtime_options))
    auth = APIKeyAuth(api_key or generic_router.api_key_from_env())
    generic_router.build_api("", auth=auth).install(app)
    app.mount("/dashboard", dashboard(auth=auth, title="async HTTP API sample"))
    return app


def banner(base: str, db: str, key: str) -> str:
    """What to curl, printed at start-up."""
    j = "-H 'Content-Type: application/json'"
    return "\n".join(
        [
            f"durable_core async HTTP API sample on {base}  (store {db}, worker in this process)",
            f"  API docs:        {base}/docs",
            f"  dashboard:       {base}/dashboard/   (open {base}/dashboard/#key={key} to use its actions)",
            f"  management key:  {key}   (X-API-Key header; set DURABLE_API_KEY to choose it)",
            "  try:",
            f"    curl -i -X POST {base}/api/start-operation {j} -d '{{\"processing_time\": 10}}'",
            f"    curl -i {base}/api/operations/<operation_id>",
            f"    curl -i -X POST {base}/api/process {j} -d '{{\"name\": \"Ada\", \"delay_seconds\": 5}}'",
            f"    curl -i {base}/api/status/<operation_id>   then   curl -i {base}/api/result/<operation_id>",
            f"    curl -i -X POST {base}/api/jobs {j} -d '{{\"name\": \"report\", \"steps\": 5}}'",
            f"    curl -i '{base}/operations/instances/<id>?wait=30'",
        ]
    )


def enable_prometheus() -> bool:
    """Route the runtime's OpenTelemetry metrics to Prometheus's default registry, which the
    operations router serves at ``/operations/metrics`` (True when the SDK and OpenTelemetry's
    Prometheus reader are installed, as ``make run`` installs them)."""
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError:
        return False
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    return True


def main(argv: Optional[list[str]] = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="async HTTP API sample (worker + API, one process)")
    parser.add_argument("--db", default="sqlite:///durable.db", help="store URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    key = generic_router.api_key_from_env()
    base = f"http://{args.host}:{args.port}"
    print(banner(base, args.db, key), flush=True)
    if enable_prometheus():
        print(f"  metrics:         curl -H 'X-API-Key: {key}' {base}/operations/metrics", flush=True)
    uvicorn.run(create_app(args.db, key), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
