"""The asynchronous HTTP API sample on PostgreSQL, its API process and its worker process apart:
start, long-poll and result across processes (the long-poll woken by LISTEN/NOTIFY)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest

from http_support import EXAMPLES, free_port, runtime_available, spawn, stop, wait_for_http
from pg_support import hub_url, pg_schema  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.anyio, pytest.mark.timeout(180),
              pytest.mark.skipif(not runtime_available(), reason="runtime not built yet")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_generic_router_api_and_worker_processes_on_postgres(pg_schema: str) -> None:
    db = hub_url(pg_schema)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    w = spawn(["-m", "durable_core", "worker", "generic_router", "--db", db], cwd=EXAMPLES)
    api = spawn(["examples/async_http_api/generic_router.py", "--client-only", "--db", db,
                 "--port", str(port)], env={"DURABLE_API_KEY": "k"})
    try:
        await anyio.to_thread.run_sync(wait_for_http, f"{base}/openapi.json", api)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            r = await http.post("/api/jobs", json={"name": "pg", "steps": 3,
                                                   "seconds_per_step": 0.2})
            assert r.status_code == 202
            url = r.headers["location"]
            progress = []
            polls = 0
            t0 = time.monotonic()
            with anyio.fail_after(60):
                while True:
                    s = (await http.get(url + "?wait=30")).json()
                    polls += 1
                    if s["customStatus"]:
                        progress.append(s["customStatus"]["percentComplete"])
                    if s["status"] not in ("Running", "NotStarted"):
                        break
            took = time.monotonic() - t0
            assert s["status"] == "Succeeded" and s["result"] == {"job": "pg", "chunks": 3}
            assert progress == sorted(progress) and progress[-1] == 100
            # each long-poll answered at a change, not by timing out
            assert polls <= 10 and took < 10, (polls, took)
            res = await http.get(url + "/result")
            assert res.status_code == 200
            # many concurrent long-polls on one API process
            rs = [await http.post("/api/jobs", json={"name": f"j{i}", "steps": 1,
                                                     "seconds_per_step": 0})
                  for i in range(20)]
            locs = [r.headers["location"] for r in rs]

            async def finish(loc: str) -> dict:
                for _ in range(20):
                    s = (await http.get(loc + "?wait=30")).json()
                    if s["status"] not in ("Running", "NotStarted"):
                        return s
                raise AssertionError("never finished")

            with anyio.fail_after(60):
                out: list[Any] = []
                async with anyio.create_task_group() as tg:
                    for loc in locs:
                        tg.start_soon(lambda l=loc: _append(out, finish(l)))
            assert len(out) == 20 and all(s["status"] == "Succeeded" for s in out)
    finally:
        stop(w)
        out_api = stop(api)
    assert "API only" in out_api


async def _append(out: list, coro: Any) -> None:
    out.append(await coro)


def test_client_sample_and_worker_processes_on_postgres(pg_schema: str) -> None:
    from test_examples_async_http_api import _sync_flow

    db = hub_url(pg_schema)
    port = free_port()
    w = spawn(["examples/async_http_api/worker.py", "--db", db])
    api = spawn(["examples/async_http_api/client.py", "--db", db, "--port", str(port)])
    try:
        wait_for_http(f"http://127.0.0.1:{port}/openapi.json", api)
        _sync_flow(f"http://127.0.0.1:{port}")
    finally:
        out_w = stop(w)
        stop(api)
    assert "worker running" in out_w


async def test_the_in_process_worker_runs_on_its_own_thread_on_a_networked_store(
        pg_schema: str) -> None:
    """runtime_lifespan on PostgreSQL: the worker's turns wait on the network, so by default
    they run on the worker's own thread and loop, never on the server's."""
    import threading

    from fastapi import FastAPI

    from durable_core.fastapi import runtime_lifespan

    app = FastAPI()
    async with runtime_lifespan(hub_url(pg_schema), stop_grace=0.5)(app):
        assert app.state.durable_runtime._mode == "thread"
        assert any(t.name == "durable_core worker" for t in threading.enumerate())
        st = await app.state.durable_client.get_orchestration_state("nope")
        assert st is None
