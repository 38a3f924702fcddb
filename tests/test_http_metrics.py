"""The Prometheus scrape endpoint of OperationsAPI (``GET {prefix}/metrics``), through httpx
against the ASGI app: its auth, the registry it serves, OpenMetrics negotiation, the route
switched off, prometheus_client missing, and OpenTelemetry's Prometheus reader feeding it.

The route does not touch the durable client, so these apps run without a lifespan.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from durable_core.fastapi import APIKeyAuth, OperationsAPI, ProblemError

from http_support import ROOT, serve

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter
except ImportError:  # the tests of the route without it still run
    prometheus_client = None

pytestmark = pytest.mark.anyio
needs_prometheus = pytest.mark.skipif(
    prometheus_client is None, reason="prometheus_client is not installed"
)

KEY = "metrics-key"
P = "/operations"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app(**api_kw: Any) -> tuple[FastAPI, OperationsAPI]:
    api = OperationsAPI(orchestrators=["echo"], **api_kw)
    app = FastAPI()
    api.install(app)
    return app, api


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status
    assert body["title"]
    return body


def registry_with_counter(value: float) -> CollectorRegistry:
    reg = CollectorRegistry()
    c = Counter("test_jobs", "jobs done in this test", ["kind"], registry=reg)
    c.labels(kind="report").inc(value)
    return reg


# -- auth ----------------------------------------------------------------------------------------


@needs_prometheus
async def test_metrics_are_off_without_management_auth() -> None:
    app, _ = make_app(metrics_registry=registry_with_counter(3))
    async with serve(app) as http:
        r = await http.get(f"{P}/metrics", headers={"X-API-Key": KEY})
        p = assert_problem(r, 403)
        assert p["type"].endswith("management-disabled")
        assert "test_jobs" not in r.text


@needs_prometheus
async def test_metrics_need_the_management_key() -> None:
    app, _ = make_app(management_auth=APIKeyAuth(KEY), metrics_registry=registry_with_counter(3))
    async with serve(app) as http:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            r = await http.get(f"{P}/metrics", headers=headers)
            assert_problem(r, 401)
            assert "www-authenticate" in r.headers
            assert "test_jobs" not in r.text
        ok = await http.get(f"{P}/metrics", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200, ok.text
        assert "test_jobs_total" in ok.text


@needs_prometheus
async def test_a_refusing_management_dependency_refuses_metrics() -> None:
    seen: list[str] = []

    async def only_admins(request: Request) -> None:
        seen.append(request.url.path)
        if request.headers.get("x-role") != "admin":
            raise ProblemError(403, "Forbidden", "admins only", slug="forbidden")

    app, _ = make_app(management_auth=only_admins, metrics_registry=registry_with_counter(3))
    async with serve(app) as http:
        r = await http.get(f"{P}/metrics", headers={"x-role": "viewer"})
        assert assert_problem(r, 403)["detail"] == "admins only"
        assert "test_jobs" not in r.text
        assert seen == [f"{P}/metrics"]  # the route ran the management dependency
        ok = await http.get(f"{P}/metrics", headers={"x-role": "admin"})
        assert ok.status_code == 200, ok.text


# -- what it serves --------------------------------------------------------------------------------


@needs_prometheus
async def test_serves_the_given_registry_in_the_text_format() -> None:
    app, _ = make_app(
        allow_unauthenticated_management=True, metrics_registry=registry_with_counter(7)
    )
    async with serve(app) as http:
        r = await http.get(f"{P}/metrics")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain"), r.headers
        assert "version=" in r.headers["content-type"]
        assert r.headers["cache-control"] == "no-store"
        assert "# TYPE test_jobs_total counter" in r.text
        assert 'test_jobs_total{kind="report"} 7.0' in r.text
        assert "# EOF" not in r.text  # not OpenMetrics unless asked


@needs_prometheus
async def test_a_scrape_sees_later_increments() -> None:
    reg = CollectorRegistry()
    c = Counter("test_ticks", "ticks", registry=reg)
    app, _ = make_app(allow_unauthenticated_management=True, metrics_registry=reg)
    async with serve(app) as http:
        c.inc(2)
        assert "test_ticks_total 2.0" in (await http.get(f"{P}/metrics")).text
        c.inc(3)
        assert "test_ticks_total 5.0" in (await http.get(f"{P}/metrics")).text


@needs_prometheus
async def test_openmetrics_on_request() -> None:
    app, _ = make_app(
        allow_unauthenticated_management=True, metrics_registry=registry_with_counter(2)
    )
    async with serve(app) as http:
        r = await http.get(
            f"{P}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
        assert r.text.endswith("# EOF\n")
        assert 'test_jobs_total{kind="report"} 2.0' in r.text


@needs_prometheus
async def test_default_registry_when_none_is_given() -> None:
    name = "durable_core_test_default_registry_probe"
    probe = Counter(name, "registered in the default registry by this test")
    try:
        probe.inc(4)
        app, _ = make_app(allow_unauthenticated_management=True)
        async with serve(app) as http:
            r = await http.get(f"{P}/metrics")
            assert r.status_code == 200, r.text
            assert f"{name}_total 4.0" in r.text
    finally:
        prometheus_client.REGISTRY.unregister(probe)


@needs_prometheus
async def test_the_route_follows_the_prefix_and_head_works() -> None:
    app, _ = make_app(
        prefix="/ops/", allow_unauthenticated_management=True,
        metrics_registry=registry_with_counter(1),
    )
    async with serve(app) as http:
        assert (await http.get("/ops/metrics")).status_code == 200
        assert_problem(await http.get(f"{P}/metrics"), 404)
        head = await http.head("/ops/metrics")
        assert head.status_code == 200
        assert head.content == b""


@needs_prometheus
async def test_metrics_false_leaves_the_route_out() -> None:
    app, _ = make_app(
        allow_unauthenticated_management=True, metrics=False,
        metrics_registry=registry_with_counter(1),
    )
    async with serve(app) as http:
        r = await http.get(f"{P}/metrics")
        assert_problem(r, 404)
        assert "test_jobs" not in r.text
        assert f"{P}/metrics" not in app.openapi()["paths"]


def test_openapi_documents_the_route_with_the_management_security() -> None:
    app, _ = make_app(management_auth=APIKeyAuth(KEY))
    op = app.openapi()["paths"][f"{P}/metrics"]["get"]
    assert op["security"] == [{"ApiKeyHeader": []}, {"BearerKey": []}]
    assert {"200", "401", "403", "501"} <= set(op["responses"])


# -- prometheus_client missing ---------------------------------------------------------------------


async def test_501_problem_when_prometheus_client_is_missing(monkeypatch: Any) -> None:
    app, _ = make_app(allow_unauthenticated_management=True)
    for mod in [m for m in sys.modules if m == "prometheus_client" or m.startswith("prometheus_client.")]:
        monkeypatch.setitem(sys.modules, mod, None)
    async with serve(app) as http:
        r = await http.get(f"{P}/metrics")
        p = assert_problem(r, 501)
        assert "pip install 'durable_core[prometheus]'" in p["detail"]
        assert p["type"].endswith("metrics-unavailable")


def test_the_integration_imports_without_prometheus_client() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        from durable_core.fastapi import OperationsAPI

        api = OperationsAPI(orchestrators=["echo"], allow_unauthenticated_management=True)
        app = FastAPI()
        api.install(app)
        r = TestClient(app).get("/operations/metrics")
        assert r.status_code == 501, (r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "durable_core[prometheus]" in r.json()["detail"]
        assert [m for m in sys.modules if m.startswith("prometheus_client.")] == []
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")


# -- the documented OpenTelemetry wiring -----------------------------------------------------------


@needs_prometheus
async def test_opentelemetry_prometheus_reader_feeds_the_route() -> None:
    pytest.importorskip("opentelemetry.sdk.metrics")
    exporter = pytest.importorskip("opentelemetry.exporter.prometheus")
    from opentelemetry.sdk.metrics import MeterProvider

    if "registry" in inspect.signature(exporter.PrometheusMetricReader.__init__).parameters:
        reg: Any = CollectorRegistry()
        reader = exporter.PrometheusMetricReader(registry=reg)
    else:  # older readers register in the default registry only
        reg = None
        reader = exporter.PrometheusMetricReader()
    # an explicit provider: the global one can be set once per process, tests must not
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("durable_core")
        started = meter.create_counter(
            "durable_core.orchestrations.started", unit="{instance}", description="started"
        )
        started.add(3, {"durable_core.orchestration.name": "report"})
        app, _ = make_app(management_auth=APIKeyAuth(KEY), metrics_registry=reg)
        async with serve(app) as http:
            r = await http.get(f"{P}/metrics", headers={"X-API-Key": KEY})
            assert r.status_code == 200, r.text
            lines = [
                ln for ln in r.text.splitlines()
                if ln.startswith("durable_core_orchestrations_started") and not ln.startswith("#")
            ]
            assert lines, r.text
            assert any(ln.endswith(" 3.0") and "report" in ln for ln in lines), lines
            started.add(2, {"durable_core.orchestration.name": "report"})
            r2 = await http.get(f"{P}/metrics", headers={"X-API-Key": KEY})
            assert any(
                ln.endswith(" 5.0") and "report" in ln
                for ln in r2.text.splitlines()
                if ln.startswith("durable_core_orchestrations_started")
            ), r2.text
    finally:
        provider.shutdown()
