"""Hostile input and poisoned data over HTTP: every route answers 4xx or a readable document,
never a 500 or a traceback.

- The generic start route validates with the input model bound to the orchestrator (it used to
  start ``process_with_progress`` with ``seconds_per_step: 1e308``).
- A corrupt history or an undecodable payload still gets an answer (``historyError``, the
  ``$undecodable`` marker) on the generic router and on the ported sample's routes.
- An empty ``Idempotency-Key`` is a 400; ``HEAD`` works on the ``GET`` routes; a body shorter
  than its ``Content-Length`` logs no traceback.

The store is damaged only through ``tests/corrupt_store.py``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

import corrupt_store
from http_support import BACKENDS, free_port, lifespan_for, runtime_available, serve, spawn, stop, wait_for_http

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
needs_runtime = pytest.mark.skipif(not runtime_available(), reason="runtime not built yet")
KEY = "hostile-key"
GEN = "/operations/orchestrators/process_with_progress"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


@pytest.fixture
async def sample(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Path]]:
    """app.py (both samples, worker in process) on a fresh store: (http, durable client, db)."""
    import app as sample_app

    db = tmp_path / "hostile.db"
    app = sample_app.create_app(f"sqlite:///{db}", api_key=KEY, stop_grace=0.5)
    async with serve(app) as http:
        yield http, app.state.durable_client, db


async def count(durable: Any) -> int:
    if hasattr(durable, "instances"):  # the in-memory fake
        return len(durable.instances)
    return len((await durable.query_orchestrations(page_size=1000)).states)


# -- 2. every route that starts an orchestrator validates its input ---------------------------

BAD_JOBS = [
    pytest.param(b'{"name": "x", "seconds_per_step": 1e308}', id="huge-seconds"),
    pytest.param(b'{"name": "x", "steps": -5}', id="negative-steps"),
    pytest.param(b'{"name": "x", "steps": "abc"}', id="string-steps"),
    pytest.param(b'{"steps": 2}', id="no-name"),
    pytest.param(b"null", id="null-body"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b'{"name": "x", "steps": 2, "seconds_per_step": "1"}', id="string-seconds"),
]


@needs_runtime
@pytest.mark.parametrize("body", BAD_JOBS)
async def test_generic_start_validates_with_the_bound_model(sample: Any, body: bytes) -> None:
    http, durable, _ = sample
    j = {"content-type": "application/json"}
    for path in (GEN, f"{GEN}/job-{abs(hash(body)) % 10_000}", "/api/jobs"):
        p = assert_problem(await http.post(path, content=body, headers=j), 422)
        assert p["type"].endswith(":validation") and p["errors"], p
        assert all(e["loc"][0] == "body" for e in p["errors"])
    assert await count(durable) == 0


@needs_runtime
async def test_generic_start_still_starts_a_valid_job(sample: Any) -> None:
    http, durable, _ = sample
    r = await http.post(GEN, json={"name": "ok", "steps": 1, "seconds_per_step": 0})
    assert r.status_code == 202, r.text
    st = await durable.wait_for_orchestration_completion(r.json()["id"], timeout=60)
    # the model's defaults and normalisation are what the orchestration got as input
    assert st.input == {"name": "ok", "steps": 1, "seconds_per_step": 0.0}
    assert st.output == {"job": "ok", "chunks": 1}


async def test_input_models_option_guards_the_generic_route(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    from durable_core.fastapi import OperationsAPI

    class Echo(BaseModel):
        n: int = Field(..., ge=0)

    api = OperationsAPI(orchestrators=["echo"], input_models={"echo": Echo},
                        allow_unauthenticated_management=True)
    app = FastAPI(lifespan=lifespan_for("fake", tmp_path))
    api.install(app)
    async with serve(app) as http:
        assert_problem(await http.post("/operations/orchestrators/echo", json={"n": -1}), 422)
        assert_problem(await http.post("/operations/orchestrators/echo/e-1", json={"n": "x"}), 422)
        assert app.state.durable_client.instances == {}
        ok = await http.post("/operations/orchestrators/echo", json={"n": 3})
        assert ok.status_code == 202


# -- 6. corrupt data answers a document, not a 500 --------------------------------------------


async def _finished_job(http: httpx.AsyncClient, durable: Any) -> str:
    r = await http.post("/api/jobs", json={"name": "j", "steps": 2, "seconds_per_step": 0})
    assert r.status_code == 202, r.text
    iid = r.json()["id"]
    await durable.wait_for_orchestration_completion(iid, timeout=60)
    return iid


@needs_runtime
@pytest.mark.parametrize(
    "damage", [corrupt_store.truncate_history, corrupt_store.empty_history_chunk,
               corrupt_store.flip_history_bytes],
)
async def test_status_with_history_on_a_corrupt_history(sample: Any, damage: Any) -> None:
    http, durable, db = sample
    iid = await _finished_job(http, durable)
    damage(db, iid)
    url = f"/operations/instances/{iid}"
    r = await http.get(url + "?showHistory=true")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["status"] == "Succeeded" and b["result"] == {"job": "j", "chunks": 2}
    assert b["historyEvents"] is None
    assert b["historyError"]["type"].endswith(":history-corrupt") and b["historyError"]["detail"]
    assert (await http.get(url)).status_code == 200
    assert (await http.get(url + "/result")).json() == {"job": "j", "chunks": 2}


@needs_runtime
async def test_undecodable_payloads_on_every_route(sample: Any) -> None:
    http, durable, db = sample
    r = await http.post("/api/start-operation", json={"processing_time": 0})
    op = r.json()["operation_id"]
    await durable.wait_for_orchestration_completion(op, timeout=60)
    corrupt_store.set_raw_output(db, op)
    corrupt_store.set_raw_custom_status(db, op)
    for path in (f"/api/operations/{op}", f"/api/result/{op}", f"/api/status/{op}"):
        res = await http.get(path)
        assert res.status_code == 200, (path, res.text)
        body = res.json()
        assert body["status"] == "Completed"
        if "result" in body and path != f"/api/status/{op}":
            assert "$undecodable" in body["result"] and body["result"]["error"]
        if "custom_status" in body and body["custom_status"] is not None:
            assert "$undecodable" in body["custom_status"]
    gen = f"/operations/instances/{op}"
    s = await http.get(gen + "?showHistory=true")
    assert s.status_code == 200 and "$undecodable" in s.json()["result"]
    res = await http.get(gen + "/result")
    assert res.status_code == 200 and "$undecodable" in res.json()
    # a terminated instance whose reason cannot be decoded
    t = await http.post("/api/start-operation", json={"processing_time": 600})
    tid = t.json()["operation_id"]
    await durable.wait_for_orchestration_start(tid, timeout=60)
    await durable.terminate_orchestration(tid, output="stop")
    await durable.wait_for_orchestration_completion(tid, timeout=60)
    corrupt_store.set_raw_output(db, tid)
    for path in (f"/api/operations/{tid}", f"/api/result/{tid}", f"/api/status/{tid}"):
        res = await http.get(path)
        assert res.status_code == 200, (path, res.text)
        assert res.json()["status"] == "Terminated" and res.json()["error"].startswith("terminated")
    p = assert_problem(await http.get(f"/operations/instances/{tid}/result"), 409)
    assert p["error"]["code"] == "Canceled"


# -- smaller ones ----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: Any) -> str:
    return request.param


@pytest.mark.parametrize("header", ["Idempotency-Key", "Repeatability-Request-ID"])
async def test_empty_idempotency_key_is_a_400(backend: str, tmp_path: Path, header: str) -> None:
    from fastapi import FastAPI

    from durable_core.fastapi import OperationsAPI

    api = OperationsAPI(orchestrators=["echo"], allow_unauthenticated_management=True)
    api.bind("/api/echo", "echo")
    app = FastAPI(lifespan=lifespan_for(backend, tmp_path))
    api.install(app)
    async with serve(app) as http:
        for path in ("/operations/orchestrators/echo", "/api/echo"):
            for _ in range(2):
                p = assert_problem(await http.post(path, json=1, headers={header: ""}), 400)
                assert p["type"].endswith(":invalid-key")
        assert await count(app.state.durable_client) == 0


async def test_head_on_get_routes(backend: str, tmp_path: Path) -> None:
    import client as sample_client

    from durable_core.fastapi import OperationsAPI

    app = sample_client.create_app(lifespan_for(backend, tmp_path))
    OperationsAPI(orchestrators=["echo"], allow_unauthenticated_management=True).install(app)
    async with serve(app) as http:
        r = await http.post("/operations/orchestrators/echo", json={"x": 1})
        iid = r.json()["id"]
        await app.state.durable_client.wait_for_orchestration_completion(iid, timeout=60)
        op = (await http.post("/api/start-operation", json={"processing_time": 0})).json()
        await app.state.durable_client.wait_for_orchestration_completion(op["operation_id"], timeout=60)
        paths = [f"/operations/instances/{iid}", f"/operations/instances/{iid}/result",
                 f"/api/operations/{op['operation_id']}", f"/api/status/{op['operation_id']}",
                 f"/api/result/{op['operation_id']}"]
        for path in paths:
            get = await http.get(path)
            head = await http.head(path)
            assert head.status_code == get.status_code == 200, (path, head.status_code)
            assert head.content == b""
            assert head.headers["content-type"] == get.headers["content-type"]
            assert head.headers["content-length"] == str(len(get.content))
        assert (await http.head("/operations/instances/nope")).status_code == 404
        assert (await http.head("/api/operations/nope")).status_code == 404
        # HEAD stays out of the OpenAPI document
        assert all("head" not in ops for ops in app.openapi()["paths"].values())


def _send_short_body(port: int, path: str) -> bytes:
    """POST promising 200 bytes, send 10, then close our side; returns what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 200\r\n\r\n".encode() + b'{"name": "'
        )
        s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except OSError:
            pass
        return b"".join(chunks)


def test_short_body_logs_no_traceback() -> None:
    port = free_port()
    proc = spawn(["-m", "uvicorn", "http_fake_app:app", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "info"])
    try:
        wait_for_http(f"http://127.0.0.1:{port}/openapi.json", proc)
        for path in ("/api/process", "/api/start-operation", "/operations/orchestrators/echo",
                     "/operations/instances/x/raiseEvent/go"):
            _send_short_body(port, path)
        # still serving
        r = httpx.post(f"http://127.0.0.1:{port}/api/process", json={"name": "a", "delay_seconds": 0})
        assert r.status_code == 202
    finally:
        out = stop(proc)
    assert "Traceback" not in out and "Exception in ASGI application" not in out, out
