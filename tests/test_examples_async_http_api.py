"""The async HTTP API samples (examples/async_http_api/) end to end.

client.py (the ported Durable Task SDK sample) runs on the fake client and on the real runtime;
generic_router.py and app.py need the runtime (their orchestrations are registered with it).
Also served by a real uvicorn on a free loopback port, and as two processes (worker.py +
client.py) sharing a SQLite file.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import httpx
import pytest

from http_support import (
    EXAMPLES,
    BACKENDS,
    free_port,
    lifespan_for,
    runtime_available,
    serve,
    spawn,
    stop,
    wait_for_http,
)

import client as sample_client  # examples/async_http_api/client.py

pytestmark = pytest.mark.anyio
needs_runtime = pytest.mark.skipif(not runtime_available(), reason="runtime not built yet")
FINISHED = ("Completed", "Failed", "Terminated", "Canceled")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: Any) -> str:
    return request.param


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def poll(http: httpx.AsyncClient, url: str, limit: int = 2000) -> httpx.Response:
    for _ in range(limit):
        r = await http.get(url)
        assert r.status_code in (200, 202), r.text
        if r.json()["status"] in FINISHED:
            return r
        assert r.headers["retry-after"] == "1"
        await asyncio.sleep(0.02)
    raise AssertionError("never finished")


# -- client.py -----------------------------------------------------------------------------------


async def test_start_operation_flow(backend: str, tmp_path: Any) -> None:
    app = sample_client.create_app(lifespan_for(backend, tmp_path))
    async with serve(app) as http:
        r = await http.post("/api/start-operation", json={"processing_time": 0.05})
        assert r.status_code == 202
        body = r.json()
        assert set(body) == {"operation_id", "status_url"}
        assert r.headers["location"] == body["status_url"]
        assert body["status_url"] == f"http://testserver/api/operations/{body['operation_id']}"
        assert r.headers["retry-after"] == "1"
        done = await poll(http, body["status_url"])
        s = done.json()
        assert s["operation_id"] == body["operation_id"]
        assert s["status"] == "Completed" and s["error"] is None
        assert s["result"]["status"] == "completed"
        assert s["result"]["processing_time"] == 0.05
        assert s["last_updated"]
        assert "retry-after" not in done.headers


async def test_process_status_result_flow(backend: str, tmp_path: Any) -> None:
    app = sample_client.create_app(lifespan_for(backend, tmp_path))
    async with serve(app) as http:
        r = await http.post("/api/process", json={"name": "Ada", "delay_seconds": 0.3})
        assert r.status_code == 202
        b = r.json()
        iid = b["operation_id"]
        assert b["status_url"].endswith(f"/api/status/{iid}")
        assert b["result_url"].endswith(f"/api/result/{iid}")
        assert r.headers["location"] == b["status_url"]
        early = await http.get(b["result_url"])
        if early.status_code == 202:  # still running: points back at the status
            assert early.headers["location"] == b["status_url"]
            assert early.json()["status"] in ("Pending", "Running")
        s = (await poll(http, b["status_url"])).json()
        assert s["status"] == "Completed" and s["status_url"] == b["status_url"]
        res = await http.get(b["result_url"])
        assert res.status_code == 200
        out = res.json()
        assert out["status"] == "Completed"
        assert out["result"]["message"] == "Hello, Ada! Processed in 0.3 seconds."


async def test_failed_and_terminated_operations(backend: str, tmp_path: Any) -> None:
    app = sample_client.create_app(lifespan_for(backend, tmp_path))
    async with serve(app) as http:
        durable = app.state.durable_client
        bad = await durable.schedule_new_orchestration(
            "async_http_api_orchestrator", input={"processing_time": -1}
        )
        s = (await poll(http, f"/api/operations/{bad}")).json()
        assert s["status"] == "Failed" and s["result"] is None
        assert "processing_time must be >= 0" in s["error"]
        res = await http.get(f"/api/result/{bad}")
        assert res.status_code == 200 and res.json()["status"] == "Failed"
        r = await http.post("/api/start-operation", json={"processing_time": 600})
        iid = r.json()["operation_id"]
        await durable.wait_for_orchestration_start(iid, timeout=30)
        await durable.terminate_orchestration(iid, output="stop")
        s = (await poll(http, f"/api/status/{iid}")).json()
        assert s["status"] == "Terminated" and "stop" in s["error"]


async def test_sample_bad_input(backend: str, tmp_path: Any) -> None:
    app = sample_client.create_app(lifespan_for(backend, tmp_path))
    async with serve(app) as http:
        durable = app.state.durable_client
        j = {"content-type": "application/json"}
        assert_problem(await http.post("/api/start-operation", json={"processing_time": "soon"}), 422)
        assert_problem(await http.post("/api/start-operation", json={"processing_time": -1}), 422)
        # like the generic router: malformed JSON is a 400, another content type a 415
        assert_problem(await http.post("/api/start-operation", content=b"{", headers=j), 400)
        assert_problem(await http.post("/api/start-operation", content=b"x=1",
                                       headers={"content-type": "text/plain"}), 415)
        assert_problem(await http.post("/api/process", content=b'{"name": NaN}', headers=j), 400)
        assert_problem(await http.post("/api/process", content=b"name=x",
                                       headers={"content-type": "application/x-www-form-urlencoded"}), 415)
        assert_problem(await http.post("/api/process", content=b"null", headers=j), 422)
        assert_problem(await http.post("/api/process", json={"delay_seconds": 1}), 422)
        assert_problem(await http.post("/api/process", json={"name": "", "delay_seconds": 1}), 422)
        big = json.dumps({"name": "x" * 100_000}).encode()
        assert_problem(await http.post("/api/process", content=big, headers=j), 413)
        assert_problem(await http.get("/api/operations/nope"), 404)
        assert_problem(await http.get("/api/status/bad%20id"), 400)
        assert_problem(await http.get(f"/api/result/{'x' * 300}"), 400)
        if hasattr(durable, "instances"):
            assert durable.instances == {}
        else:
            assert (await durable.query_orchestrations()).states == []


async def test_sample_openapi_lists_the_seed_routes(tmp_path: Any) -> None:
    app = sample_client.create_app(lifespan_for("fake", tmp_path))
    paths = app.openapi()["paths"]
    for p in ("/api/start-operation", "/api/operations/{operation_id}", "/api/process",
              "/api/status/{operation_id}", "/api/result/{operation_id}"):
        assert p in paths


# -- generic_router.py and app.py (registered with the runtime) ------------------------------------


@needs_runtime
async def test_generic_router_sample_shows_progress(tmp_path: Any) -> None:
    import generic_router
    from durable_core.fastapi import runtime_lifespan

    app = generic_router.create_app(runtime_lifespan(f"sqlite:///{tmp_path / 'g.db'}"), "k")
    async with serve(app) as http:
        r = await http.post("/api/jobs", json={"name": "report", "steps": 4, "seconds_per_step": 0.05})
        assert r.status_code == 202
        url = r.headers["location"]
        assert r.headers["operation-location"] == url
        seen = set()
        for _ in range(200):
            s = await http.get(url + "?wait=2")
            b = s.json()
            if b["customStatus"]:
                seen.add(b["customStatus"]["percentComplete"])
            if b["status"] == "Succeeded":
                break
        assert b["status"] == "Succeeded" and b["result"] == {"job": "report", "chunks": 4}
        assert 100 in seen
        assert (await http.get(url + "/result")).json() == {"job": "report", "chunks": 4}
        assert_problem(await http.post("/api/jobs", json={"name": "x", "steps": 0}), 422)
        assert_problem(await http.delete(url), 401)
        assert (await http.delete(url, headers={"X-API-Key": "k"})).status_code == 200


@needs_runtime
async def test_app_serves_both_samples_in_one_process(tmp_path: Any) -> None:
    import app as sample_app

    app = sample_app.create_app(f"sqlite:///{tmp_path / 'a.db'}", api_key="k")
    async with serve(app) as http:
        a = await http.post("/api/start-operation", json={"processing_time": 0})
        b = await http.post("/api/jobs", json={"name": "n", "steps": 2, "seconds_per_step": 0})
        assert a.status_code == b.status_code == 202
        assert (await poll(http, a.json()["status_url"])).json()["status"] == "Completed"
        with anyio.fail_after(60):
            while (await http.get(b.headers["location"] + "?wait=5")).json()["status"] != "Succeeded":
                pass


# -- real servers ----------------------------------------------------------------------------------


def _sync_flow(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        r = http.post("/api/start-operation", json={"processing_time": 0.1})
        assert r.status_code == 202
        loc = r.headers["location"]
        assert loc.startswith(base)
        for _ in range(1500):
            s = http.get(loc).json()
            if s["status"] in FINISHED:
                break
            anyio_sleep(0.02)
        assert s["status"] == "Completed", s
        assert s["result"]["processing_time"] == 0.1
        p = http.post("/api/process", json={"name": "Bo", "delay_seconds": 0})
        assert p.status_code == 202
        for _ in range(1500):
            res = http.get(p.json()["result_url"])
            if res.status_code == 200:
                break
            anyio_sleep(0.02)
        assert res.json()["result"]["message"].startswith("Hello, Bo!")
        bad = http.post("/api/process", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")


def anyio_sleep(s: float) -> None:
    import time

    time.sleep(s)


def test_uvicorn_serves_client_on_fake() -> None:
    port = free_port()
    proc = spawn(["-m", "uvicorn", "http_fake_app:app", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning"])
    try:
        wait_for_http(f"http://127.0.0.1:{port}/openapi.json", proc)
        _sync_flow(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


@needs_runtime
async def test_uvicorn_serves_app_py(tmp_path: Any) -> None:
    """app.py under a real uvicorn: both samples, failure, termination, idempotency,
    long-poll, 100 concurrent starts."""
    port = free_port()
    db = f"sqlite:///{tmp_path / 'one.db'}"
    proc = spawn(["examples/async_http_api/app.py", "--db", db, "--port", str(port)],
                 env={"DURABLE_API_KEY": "k"})
    base = f"http://127.0.0.1:{port}"
    key = {"X-API-Key": "k"}
    try:
        await anyio.to_thread.run_sync(wait_for_http, f"{base}/openapi.json", proc)
        await anyio.to_thread.run_sync(_sync_flow, base)
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
            gen = "/operations/orchestrators/process_with_progress"
            job = {"name": "j", "steps": 2, "seconds_per_step": 0}
            # idempotent start with a client id, then the same again
            a = await http.post(f"{gen}/job-7", json=job)
            b = await http.post(f"{gen}/job-7", json=job)
            assert a.status_code == b.status_code == 202
            assert b.headers["idempotent-replayed"] == "true"
            assert a.headers["location"] == b.headers["location"] == f"{base}/operations/instances/job-7"
            s = await poll_generic(http, a.headers["location"])
            assert s["status"] == "Succeeded" and s["result"] == {"job": "j", "chunks": 2}
            # the generic route validates with the model bound to /api/jobs: nothing starts
            f = await http.post(gen, json={"name": "bad", "steps": "many"})
            assert f.status_code == 422 and "location" not in f.headers
            # long-poll wakes on termination (the job would run for 100 s)
            t = await http.post(gen, json={"name": "long", "steps": 100, "seconds_per_step": 1})
            url = t.headers["location"]

            async def terminate() -> None:
                await anyio.sleep(0.5)
                r = await http.post(url + "/terminate?reason=enough", headers=key)
                assert r.status_code == 202

            with anyio.fail_after(45):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(terminate)
                    for _ in range(100):  # each poll answers at a change (progress, then the end)
                        s = (await http.get(url + "?wait=60")).json()
                        if s["status"] == "Canceled":
                            break
            assert s["runtimeStatus"] == "Terminated" and s["error"]["message"] == "enough"
            # 100 concurrent starts
            rs = await asyncio.gather(
                *(http.post("/api/start-operation", json={"processing_time": 0}) for _ in range(100))
            )
            assert all(r.status_code == 202 for r in rs)
            ids = {r.json()["operation_id"] for r in rs}
            assert len(ids) == 100
            for i in ids:
                assert (await poll(http, f"/api/operations/{i}")).json()["status"] == "Completed"
            # the runtime's metrics reach Prometheus's scrape, behind the management key
            assert (await http.get("/operations/metrics")).status_code == 401
            m = await http.get("/operations/metrics", headers=key)
            assert m.status_code == 200
            done = [ln for ln in m.text.splitlines()
                    if ln.startswith("durable_core_orchestrations_completed_total{")
                    and "async_http_api_orchestrator" in ln]
            assert done and float(done[0].rsplit(" ", 1)[1]) >= 100, done
    finally:
        out = stop(proc)
    assert f"{base}/api/start-operation" in out  # the banner says where to curl
    assert f"{base}/dashboard/" in out  # and where the dashboard is
    assert f"{base}/operations/metrics" in out  # and where the metrics are


async def poll_generic(http: httpx.AsyncClient, url: str) -> dict:
    for _ in range(100):
        s = (await http.get(url + "?wait=10")).json()
        if s["status"] in ("Succeeded", "Failed", "Canceled"):
            return s
    raise AssertionError("never finished")


@needs_runtime
def test_two_processes_share_the_store(tmp_path: Any) -> None:
    db = f"sqlite:///{tmp_path / 'two.db'}"
    port = free_port()
    api = spawn(["examples/async_http_api/client.py", "--db", db, "--port", str(port)])
    w = spawn(["examples/async_http_api/worker.py", "--db", db])
    try:
        wait_for_http(f"http://127.0.0.1:{port}/openapi.json", api)
        _sync_flow(f"http://127.0.0.1:{port}")
    finally:
        out_w = stop(w)
        stop(api)
    assert "worker running" in out_w


async def test_sample_cuts_off_a_chunked_oversized_body(tmp_path: Any) -> None:
    app = sample_client.create_app(lifespan_for("fake", tmp_path))
    async with serve(app) as http:

        async def gen() -> Any:
            yield b'{"name": "'
            for _ in range(20):
                yield b"x" * 8192

        r = await http.post("/api/process", content=gen(), headers={"content-type": "application/json"})
        assert_problem(r, 413)
        assert app.state.durable_client.instances == {}


async def test_openapi_documents_problems(tmp_path: Any) -> None:
    app = sample_client.create_app(lifespan_for("fake", tmp_path))
    doc = app.openapi()
    assert "Problem" in doc["components"]["schemas"]
    resp = doc["paths"]["/api/process"]["post"]["responses"]
    assert list(resp["422"]["content"]) == ["application/problem+json"]
    assert list(resp["202"]["content"]) == ["application/json"]


@needs_runtime
async def test_app_with_the_worker_on_its_own_thread(tmp_path: Any) -> None:
    import app as sample_app

    app = sample_app.create_app(f"sqlite:///{tmp_path / 't.db'}", api_key="k", worker_thread=True,
                                stop_grace=0.5)
    async with serve(app) as http:
        r = await http.post("/api/start-operation", json={"processing_time": 0})
        assert r.status_code == 202
        assert (await poll(http, r.json()["status_url"])).json()["status"] == "Completed"
        import threading

        assert any(t.name == "durable_core worker" for t in threading.enumerate())


@needs_runtime
async def test_generic_router_in_two_processes(tmp_path: Any) -> None:
    """API-only process + worker process: long-polls see the other process's commits."""
    db = f"sqlite:///{tmp_path / 'gen.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = spawn(["examples/async_http_api/generic_router.py", "--client-only", "--db", db,
                 "--port", str(port)], env={"DURABLE_API_KEY": "k"})
    w = spawn(["-m", "durable_core", "worker", "generic_router", "--db", db], cwd=EXAMPLES)
    try:
        await anyio.to_thread.run_sync(wait_for_http, f"{base}/openapi.json", api)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            r = await http.post("/api/jobs", json={"name": "two", "steps": 3, "seconds_per_step": 0.2})
            assert r.status_code == 202
            url = r.headers["location"]
            progress = []
            with anyio.fail_after(60):
                while True:
                    s = (await http.get(url + "?wait=30")).json()
                    if s["customStatus"]:
                        progress.append(s["customStatus"]["percentComplete"])
                    if s["status"] != "Running" and s["status"] != "NotStarted":
                        break
            assert s["status"] == "Succeeded" and s["result"] == {"job": "two", "chunks": 3}
            assert progress == sorted(progress) and progress[-1] == 100
    finally:
        stop(w)
        out = stop(api)
    assert "API only" in out
