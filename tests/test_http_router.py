"""The generic operations router (durable_core.fastapi) through httpx against the ASGI app.

Every test runs on the in-memory fake client and on the real runtime (tmp SQLite file).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import anyio
import httpx
import pytest
from fastapi import FastAPI

from durable_core.fastapi import APIKeyAuth, OperationsAPI

from http_support import BACKENDS, lifespan_for, poll_until_done, serve

pytestmark = pytest.mark.anyio

KEY = "test-key"
AUTH = {"X-API-Key": KEY}
P = "/operations"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: Any) -> str:
    return request.param


def make_app(backend: str, tmp_path: Any, **api_kw: Any) -> tuple[FastAPI, OperationsAPI]:
    api_kw.setdefault("orchestrators", ["echo", "fail", "wait_event", "steps"])
    if "allow_unauthenticated_management" not in api_kw:
        api_kw.setdefault("management_auth", APIKeyAuth(KEY))
    api = OperationsAPI(**api_kw)
    app = FastAPI(lifespan=lifespan_for(backend, tmp_path))
    api.bind("/api/echo", "echo")
    api.install(app)
    return app, api


@pytest.fixture
async def http(backend: str, tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    app, _ = make_app(backend, tmp_path)
    async with serve(app) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


def durable(http: httpx.AsyncClient) -> Any:
    return http.app.state.durable_client  # type: ignore[attr-defined]


async def count_instances(http: httpx.AsyncClient) -> int:
    client = durable(http)
    if hasattr(client, "instances"):
        return len(client.instances)
    res = await client.query_orchestrations(page_size=1000)
    return len(res.states)


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    return body


# -- start / status / result -------------------------------------------------------------------


async def test_start_answers_202_with_locations_and_management_urls(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/echo", json={"x": 1})
    assert r.status_code == 202
    body = r.json()
    iid = body["id"]
    status_url = f"http://testserver{P}/instances/{iid}"
    assert r.headers["location"] == status_url
    assert r.headers["operation-location"] == status_url
    assert int(r.headers["retry-after"]) >= 0
    assert body["statusQueryGetUri"] == status_url
    for k in (
        "sendEventPostUri",
        "terminatePostUri",
        "suspendPostUri",
        "resumePostUri",
        "purgeHistoryDeleteUri",
        "restartPostUri",
    ):
        assert body[k].startswith(status_url), k
    done = await poll_until_done(http, status_url)
    d = done.json()
    assert d["id"] == d["instanceId"] == iid and d["name"] == "echo"
    assert d["status"] == "Succeeded" and d["runtimeStatus"] == "Completed"
    assert d["result"] == {"x": 1} and d["output"] == {"x": 1}
    assert d["createdTime"].endswith("Z") and d["lastUpdatedTime"]
    assert "retry-after" not in done.headers
    res = await http.get(f"{P}/instances/{iid}/result")
    assert res.status_code == 200 and res.json() == {"x": 1}


async def test_bound_route_starts_its_orchestrator(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/echo", json=[1, 2, 3])
    assert r.status_code == 202
    done = await poll_until_done(http, r.headers["location"])
    assert done.json()["result"] == [1, 2, 3]


async def test_start_without_body_means_no_input(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/echo")
    assert r.status_code == 202
    done = await poll_until_done(http, r.headers["location"])
    assert done.json()["status"] == "Succeeded" and done.json()["result"] is None


async def test_running_status_is_200_with_retry_after_and_custom_status(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event", json=None)
    url = r.headers["location"]
    iid = r.json()["id"]
    await durable(http).wait_for_orchestration_start(iid, timeout=30)
    for _ in range(200):
        s = await http.get(url)
        if s.json()["customStatus"] is not None:
            break
        await asyncio.sleep(0.02)
    assert s.status_code == 200
    assert s.headers["retry-after"] == "1"
    assert "location" not in s.headers
    b = s.json()
    assert b["status"] == "Running" and b["runtimeStatus"] == "Running"
    assert b["customStatus"] == {"stage": "waiting"}
    assert "result" not in b and "error" not in b
    res = await http.get(f"{P}/instances/{iid}/result")
    assert res.status_code == 202
    assert res.headers["location"] == url and res.headers["retry-after"] == "1"
    await http.post(f"{P}/instances/{iid}/terminate", headers=AUTH)


async def test_durable_functions_mode_and_303(backend: str, tmp_path: Any) -> None:
    app, _ = make_app(backend, tmp_path, durable_functions_compat=True, redirect_to_result=True)
    async with serve(app) as http:
        r = await http.post(f"{P}/orchestrators/wait_event")
        url = r.headers["location"]
        iid = r.json()["id"]
        s = await http.get(url)
        assert s.status_code == 202
        assert s.headers["location"] == url and s.headers["retry-after"] == "1"
        await app.state.durable_client.raise_orchestration_event(iid, "go", data=7)
        await app.state.durable_client.wait_for_orchestration_completion(iid, timeout=30)
        s = await http.get(url)
        assert s.status_code == 303
        assert s.headers["location"] == url + "/result"
        assert s.json()["status"] == "Succeeded"
        res = await http.get(url, follow_redirects=True)
        assert res.status_code == 200 and res.json() == {"got": 7}


async def test_failure_is_reported_in_status_and_result(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/fail", json="x")
    done = await poll_until_done(http, r.headers["location"])
    d = done.json()
    assert done.status_code == 200
    assert d["status"] == "Failed" and d["runtimeStatus"] == "Failed"
    assert d["error"]["code"] == "ValueError"
    assert "boom: x" in d["error"]["message"]
    assert "stackTrace" not in d["error"]
    res = await http.get(f"{P}/instances/{d['id']}/result")
    p = assert_problem(res, 409)
    assert p["operationStatus"] == "Failed" and p["error"]["code"] == "ValueError"


async def test_terminate_cancels(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event")
    iid = r.json()["id"]
    await durable(http).wait_for_orchestration_start(iid, timeout=30)
    t = await http.post(r.json()["terminatePostUri"].replace("{text}", "user%20asked"), headers=AUTH)
    assert t.status_code == 202, t.text
    done = await poll_until_done(http, r.headers["location"])
    d = done.json()
    assert d["status"] == "Canceled" and d["runtimeStatus"] == "Terminated"
    assert d["error"]["message"] == "user asked"
    assert_problem(await http.get(f"{P}/instances/{iid}/result"), 409)


async def test_suspend_resume_and_raise_event(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event")
    iid = r.json()["id"]
    url = r.headers["location"]
    await durable(http).wait_for_orchestration_start(iid, timeout=30)
    s = await http.post(f"{P}/instances/{iid}/suspend?reason=pause", headers=AUTH)
    assert s.status_code == 202
    for _ in range(500):
        st = (await http.get(url)).json()
        if st["runtimeStatus"] == "Suspended":
            break
        await asyncio.sleep(0.01)
    assert st["runtimeStatus"] == "Suspended" and st["status"] == "Running"
    s = await http.post(f"{P}/instances/{iid}/resume", headers=AUTH)
    assert s.status_code == 202
    e = await http.post(f"{P}/instances/{iid}/raiseEvent/go", json={"v": 1}, headers=AUTH)
    assert e.status_code == 202
    done = await poll_until_done(http, url)
    assert done.json()["result"] == {"got": {"v": 1}}


async def test_show_history(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/echo", json={"a": "b"})
    await poll_until_done(http, r.headers["location"])
    s = await http.get(r.headers["location"] + "?showHistory=true")
    ev = s.json()["historyEvents"]
    types = [e["eventType"] for e in ev]
    assert "ExecutionStarted" in types and "ExecutionCompleted" in types
    started = next(e for e in ev if e["eventType"] == "ExecutionStarted")
    assert started["input"] == {"a": "b"} and started["name"] == "echo"
    assert started["timestamp"].endswith("Z")
    plain = await http.get(r.headers["location"])
    assert "historyEvents" not in plain.json()


async def test_restart_and_purge(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/echo/job-1", json=5)
    url = r.headers["location"]
    await poll_until_done(http, url)
    rs = await http.post(f"{P}/instances/job-1/restart?restartWithNewInstanceId=true", headers=AUTH)
    assert rs.status_code == 202
    new_id = rs.json()["id"]
    assert new_id != "job-1"
    assert (await poll_until_done(http, rs.headers["location"])).json()["result"] == 5
    pg = await http.delete(url, headers=AUTH)
    assert pg.status_code == 200 and pg.json()["instancesDeleted"] == 1
    assert_problem(await http.get(url), 404)
    assert_problem(await http.delete(url, headers=AUTH), 404)


async def test_purge_refuses_running(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event")
    p = assert_problem(await http.delete(r.headers["location"], headers=AUTH), 409)
    assert p["type"].endswith("still-running")
    await http.post(f"{P}/instances/{r.json()['id']}/terminate", headers=AUTH)


# -- long-poll ---------------------------------------------------------------------------------


async def test_long_poll_wakes_on_completion(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event")
    iid = r.json()["id"]
    url = r.headers["location"]
    await durable(http).wait_for_orchestration_start(iid, timeout=30)

    async def release() -> None:
        await asyncio.sleep(0.2)
        await durable(http).raise_orchestration_event(iid, "go", data="now")

    with anyio.fail_after(45):  # the poll asks for 60 s: answering sooner means it woke
        task = asyncio.ensure_future(release())
        s = await http.get(url + "?wait=60")
        await task
    assert s.status_code == 200
    assert s.json()["status"] == "Succeeded" and s.json()["result"] == {"got": "now"}


async def test_long_poll_times_out_with_current_state(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event")
    iid = r.json()["id"]
    await durable(http).wait_for_orchestration_start(iid, timeout=30)
    s = await http.get(r.headers["location"] + "?wait=0.2")
    assert s.status_code == 200 and s.json()["status"] == "Running"
    assert s.headers["retry-after"] == "1"
    await http.post(f"{P}/instances/{iid}/terminate", headers=AUTH)


async def test_long_poll_on_finished_answers_at_once(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/echo", json=1)
    await poll_until_done(http, r.headers["location"])
    with anyio.fail_after(30):
        s = await http.get(r.headers["location"] + "?wait=600")
    assert s.json()["status"] == "Succeeded"


# -- idempotent start --------------------------------------------------------------------------


async def test_client_supplied_id_is_idempotent(http: httpx.AsyncClient) -> None:
    a = await http.post(f"{P}/orchestrators/echo/order-42", json={"n": 1})
    assert a.status_code == 202 and a.json()["id"] == "order-42"
    assert "idempotent-replayed" not in a.headers
    before = await count_instances(http)
    b = await http.post(f"{P}/orchestrators/echo/order-42", json={"n": 1})
    assert b.status_code == 202 and b.json()["id"] == "order-42"
    assert b.headers["idempotent-replayed"] == "true"
    assert b.headers["location"] == a.headers["location"]
    q = await http.post(f"{P}/orchestrators/echo?instanceId=order-42", json={"n": 1})
    assert q.status_code == 202 and q.json()["id"] == "order-42"
    assert await count_instances(http) == before
    c = await http.post(f"{P}/orchestrators/echo/order-42", json={"n": 2})
    assert_problem(c, 409)
    d = await http.post(f"{P}/orchestrators/wait_event/order-42", json={"n": 1})
    assert_problem(d, 409)
    assert await count_instances(http) == before
    done = await poll_until_done(http, a.headers["location"])
    assert done.json()["result"] == {"n": 1}


@pytest.mark.parametrize("header", ["Idempotency-Key", "Repeatability-Request-ID"])
async def test_idempotency_headers(http: httpx.AsyncClient, header: str) -> None:
    a = await http.post(f"{P}/orchestrators/echo", json=[1], headers={header: "k-1"})
    assert a.status_code == 202
    n = await count_instances(http)
    b = await http.post(f"{P}/orchestrators/echo", json=[1], headers={header: "k-1"})
    assert b.status_code == 202 and b.json()["id"] == a.json()["id"]
    assert b.headers["idempotent-replayed"] == "true"
    assert await count_instances(http) == n
    c = await http.post(f"{P}/orchestrators/echo", json=[2], headers={header: "k-1"})
    assert_problem(c, 422)
    other = await http.post(f"{P}/orchestrators/echo", json=[1], headers={header: "k-2"})
    assert other.json()["id"] != a.json()["id"]
    bound = await http.post("/api/echo", json=[1], headers={header: "k-1"})
    assert bound.json()["id"] == a.json()["id"]


async def test_hundred_concurrent_starts(http: httpx.AsyncClient) -> None:
    rs = await asyncio.gather(
        *(http.post(f"{P}/orchestrators/echo", json={"i": i}) for i in range(100))
    )
    assert all(r.status_code == 202 for r in rs)
    ids = {r.json()["id"] for r in rs}
    assert len(ids) == 100
    client = durable(http)
    states = await asyncio.gather(
        *(client.wait_for_orchestration_completion(i, timeout=120) for i in ids)
    )
    assert sorted(s.output["i"] for s in states) == list(range(100))
    # the same 100 again with keys: 100 replays, nothing new
    keyed = await asyncio.gather(
        *(
            http.post(f"{P}/orchestrators/echo", json={"i": i}, headers={"Idempotency-Key": f"c{i}"})
            for i in range(100)
        )
    )
    again = await asyncio.gather(
        *(
            http.post(f"{P}/orchestrators/echo", json={"i": i}, headers={"Idempotency-Key": f"c{i}"})
            for i in range(100)
        )
    )
    assert [r.json()["id"] for r in keyed] == [r.json()["id"] for r in again]
    assert all(r.headers.get("idempotent-replayed") == "true" for r in again)


# -- bad input ---------------------------------------------------------------------------------


async def test_bad_input_gets_problems_and_writes_nothing(http: httpx.AsyncClient) -> None:
    before = await count_instances(http)
    start = f"{P}/orchestrators/echo"
    cases = [
        (http.post(start, content=b"{not json", headers={"content-type": "application/json"}), 400),
        (http.post(start, content=b'{"a": NaN}', headers={"content-type": "application/json"}), 400),
        (http.post(start, content=b"[1,", headers={"content-type": "application/json"}), 400),
        (http.post(start, content=b"\xff\xfe", headers={"content-type": "application/json"}), 400),
        (http.post(start, content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"}), 415),
        (http.post(start, content=b"{}", headers={"content-type": "text/plain"}), 415),
        (http.post(start, content=b"{}"), 415),
        (http.post(start, content=b"x" * (2 << 20), headers={"content-type": "application/json"}), 413),
        (http.post(f"{P}/orchestrators/echo/bad%20id", json=1), 400),
        (http.post(f"{P}/orchestrators/echo/{'a' * 200}", json=1), 400),
        (http.post(f"{P}/orchestrators/echo?instanceId=-x", json=1), 400),
        (http.post(start, json=1, headers={"Idempotency-Key": "k" * 300}), 400),
        (http.post(f"{P}/orchestrators/nope", json=1), 404),
        (http.post(f"{P}/orchestrators/bad%20name", json=1), 404),
        (http.post("/api/echo", content=b"{", headers={"content-type": "application/json"}), 400),
        (http.post("/api/echo", content=b"<x/>", headers={"content-type": "application/xml"}), 415),
    ]
    for coro, status in cases:
        assert_problem(await coro, status)
    assert await count_instances(http) == before


async def test_chunked_oversized_body_is_cut_off(http: httpx.AsyncClient) -> None:
    before = await count_instances(http)

    async def gen() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    r = await http.post(
        f"{P}/orchestrators/echo", content=gen(), headers={"content-type": "application/json"}
    )
    p = assert_problem(r, 413)
    assert p["max_bytes"] == 1 << 20
    assert await count_instances(http) == before


async def test_bad_ids_and_queries(http: httpx.AsyncClient) -> None:
    assert_problem(await http.get(f"{P}/instances/no-such-op"), 404)
    assert_problem(await http.get(f"{P}/instances/no-such-op/result"), 404)
    assert_problem(await http.get(f"{P}/instances/bad%20id"), 400)
    assert_problem(await http.get(f"{P}/instances/{'x' * 300}/result"), 400)
    assert_problem(await http.get(f"{P}/instances/abc?wait=-1"), 422)
    assert_problem(await http.get(f"{P}/instances/abc?wait=soon"), 422)
    assert_problem(await http.get(f"{P}/instances/abc?showHistory=maybe"), 422)
    assert_problem(await http.get("/nowhere"), 404)
    assert_problem(await http.put(f"{P}/instances/abc"), 405)
    for action in ("terminate", "suspend", "resume", "restart"):
        assert_problem(await http.post(f"{P}/instances/no-such-op/{action}", headers=AUTH), 404)
        assert_problem(await http.post(f"{P}/instances/bad%20id/{action}", headers=AUTH), 400)
    assert_problem(await http.post(f"{P}/instances/no-such-op/raiseEvent/go", headers=AUTH), 404)
    assert_problem(await http.post(f"{P}/instances/abc/raiseEvent/bad%20name", headers=AUTH), 400)
    ev = await http.post(
        f"{P}/instances/abc/raiseEvent/go", content=b"{", headers={**AUTH, "content-type": "application/json"}
    )
    assert_problem(ev, 400)


async def test_no_client_is_503(tmp_path: Any) -> None:
    api = OperationsAPI(orchestrators=["echo"], allow_unauthenticated_management=True)
    app = FastAPI()
    api.install(app)
    async with serve(app) as http:
        assert_problem(await http.post(f"{P}/orchestrators/echo", json=1), 503)
        assert_problem(await http.get(f"{P}/instances/abc"), 503)


# -- auth on management ------------------------------------------------------------------------


async def test_management_needs_the_key(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event")
    iid = r.json()["id"]
    routes = [
        ("POST", f"{P}/instances/{iid}/raiseEvent/go"),
        ("POST", f"{P}/instances/{iid}/terminate"),
        ("POST", f"{P}/instances/{iid}/suspend"),
        ("POST", f"{P}/instances/{iid}/resume"),
        ("POST", f"{P}/instances/{iid}/restart"),
        ("DELETE", f"{P}/instances/{iid}"),
    ]
    for method, url in routes:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            res = await http.request(method, url, headers=headers)
            assert_problem(res, 401)
            assert "www-authenticate" in res.headers
    st = (await http.get(r.headers["location"])).json()
    assert st["status"] in ("NotStarted", "Running")  # nothing happened to it
    ok = await http.post(f"{P}/instances/{iid}/terminate", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 202


async def test_management_is_off_without_auth(backend: str, tmp_path: Any) -> None:
    app, _ = make_app(backend, tmp_path, management_auth=None)
    async with serve(app) as http:
        r = await http.post(f"{P}/orchestrators/wait_event")
        iid = r.json()["id"]
        p = assert_problem(await http.post(f"{P}/instances/{iid}/terminate", headers=AUTH), 403)
        assert p["type"].endswith("management-disabled")
        assert_problem(await http.delete(f"{P}/instances/{iid}"), 403)
        await app.state.durable_client.terminate_orchestration(iid)


async def test_management_opt_out(backend: str, tmp_path: Any) -> None:
    app, _ = make_app(backend, tmp_path, allow_unauthenticated_management=True)
    async with serve(app) as http:
        r = await http.post(f"{P}/orchestrators/wait_event")
        t = await http.post(f"{P}/instances/{r.json()['id']}/terminate")
        assert t.status_code == 202
        assert (await poll_until_done(http, r.headers["location"])).json()["status"] == "Canceled"


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        OperationsAPI(management_auth=APIKeyAuth("k"), allow_unauthenticated_management=True)
    with pytest.raises(ValueError):
        APIKeyAuth([])
    with pytest.raises(ValueError):
        OperationsAPI(retry_after=-1)


async def test_long_poll_wakes_on_progress(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/steps", json={"steps": 2})
    iid = r.json()["id"]
    url = r.headers["location"]
    client = durable(http)
    await client.wait_for_orchestration_start(iid, timeout=30)
    for _ in range(500):  # the first custom status is written by the first episode
        first = (await http.get(url)).json()
        if first["customStatus"] is not None:
            break
        await asyncio.sleep(0.01)
    assert first["customStatus"] == {"percentComplete": 0, "step": 0}

    async def step() -> None:
        await asyncio.sleep(0.2)
        await client.raise_orchestration_event(iid, "next")

    with anyio.fail_after(45):  # asks for 60 s: it must answer when the progress changes
        task = asyncio.ensure_future(step())
        s = await http.get(url + "?wait=60")
        await task
    b = s.json()
    assert b["status"] == "Running" and b["customStatus"] == {"percentComplete": 50, "step": 1}
    assert (await http.get(url + "?wait=0.1")).json()["customStatus"]["step"] == 1
    await client.raise_orchestration_event(iid, "next")
    assert (await poll_until_done(http, url)).json()["result"] == {"steps": 2}
    # nothing left registered with the store
    assert _watching(client) == 0


async def test_restart_in_place(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event/again-1")
    url = r.headers["location"]
    p = assert_problem(await http.post(f"{P}/instances/again-1/restart", headers=AUTH), 409)
    assert p["type"].endswith("still-running")
    await http.post(f"{P}/instances/again-1/raiseEvent/go", json=1, headers=AUTH)
    assert (await poll_until_done(http, url)).json()["result"] == {"got": 1}
    rs = await http.post(f"{P}/instances/again-1/restart", headers=AUTH)
    assert rs.status_code == 202 and rs.json()["id"] == "again-1"
    st = (await http.get(url)).json()
    assert st["status"] in ("NotStarted", "Running")
    await http.post(f"{P}/instances/again-1/raiseEvent/go", json=2, headers=AUTH)
    assert (await poll_until_done(http, url)).json()["result"] == {"got": 2}


async def test_registry_decides_what_starts(backend: str, tmp_path: Any) -> None:
    import durable_core as dc

    from http_orchestrations import echo

    reg = dc.Registry()
    reg.add_orchestrator(echo, name="echo")
    api = OperationsAPI(registry=reg, allow_unauthenticated_management=True)
    app = FastAPI(lifespan=lifespan_for(backend, tmp_path))
    api.install(app)
    async with serve(app) as http:
        http.app = app  # type: ignore[attr-defined]
        ok = await http.post(f"{P}/orchestrators/echo", json=3)
        assert ok.status_code == 202
        assert (await poll_until_done(http, ok.headers["location"])).json()["result"] == 3
        n = await count_instances(http)
        assert_problem(await http.post(f"{P}/orchestrators/fail", json=3), 404)
        assert await count_instances(http) == n


def test_openapi_documents_the_management_key(tmp_path: Any) -> None:
    app, _ = make_app("fake", tmp_path)
    doc = app.openapi()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    paths = doc["paths"]
    assert paths[f"{P}/instances/{{instance_id}}/terminate"]["post"]["security"]
    assert paths[f"{P}/instances/{{instance_id}}"]["delete"]["security"]
    assert "security" not in paths[f"{P}/instances/{{instance_id}}"]["get"]
    assert "security" not in paths[f"{P}/orchestrators/{{name}}"]["post"]
    bare, _ = make_app("fake", tmp_path, management_auth=None)
    assert "securitySchemes" not in bare.openapi().get("components", {})


async def test_long_poll_stops_when_the_client_hangs_up(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{P}/orchestrators/wait_event")
    iid = r.json()["id"]
    client = durable(http)
    await client.wait_for_orchestration_start(iid, timeout=30)
    app = http.app  # type: ignore[attr-defined]
    sent: list[dict] = []
    calls = 0

    async def receive() -> dict:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0.2)  # then the client goes away
        return {"type": "http.disconnect"}

    async def send(msg: dict) -> None:
        sent.append(msg)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": f"{P}/instances/{iid}", "raw_path": f"{P}/instances/{iid}".encode(),
        "root_path": "", "query_string": b"wait=60", "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80), "state": {},
    }
    with anyio.fail_after(30):  # asked to wait 60 s: returns because the client left
        await app(scope, receive, send)
    assert _watching(client) == 0
    assert (await http.get(f"{P}/instances/{iid}")).json()["status"] == "Running"
    await client.terminate_orchestration(iid)


async def test_bind_after_install_and_on_a_router(backend: str, tmp_path: Any) -> None:
    from fastapi import APIRouter

    app, api = make_app(backend, tmp_path)
    app.openapi()  # generated before the late bind: must be refreshed
    api.bind("/late/echo", "echo", summary="late")
    other = APIRouter()
    api.bind("/mine/echo", "echo", router=other)
    app.include_router(other)
    assert "/late/echo" in app.openapi()["paths"]
    async with serve(app) as http:
        for path in ("/late/echo", "/mine/echo"):
            r = await http.post(path, json=path)
            assert r.status_code == 202, r.text
            assert (await poll_until_done(http, r.headers["location"])).json()["result"] == path


def _watching(client) -> int:
    """Waits still registered: the fake counts its own; a real client's store counts watchers."""
    notifier = getattr(client.backend, "notifier", None)  # the in-memory fake's
    if notifier is not None:
        return sum(len(v) for v in notifier.waiters.values())
    return client.backend.watcher_count()


async def test_the_default_registry_decides_what_the_generic_route_starts(tmp_path: Any) -> None:
    """With neither ``orchestrators=`` nor ``registry=``, the functions decorated with
    ``@dc.orchestrator`` are what the generic start route exposes (it answered 500 once: the
    default registry was imported from a module that does not exist)."""
    import durable_core as dc
    from durable_core.registry import default_registry

    @dc.orchestrator(name="router_default_registry_flow")
    def flow(ctx: Any, x: Any) -> Any:
        return x

    try:
        api = OperationsAPI(allow_unauthenticated_management=True)
        app = FastAPI(lifespan=lifespan_for("fake", tmp_path))
        api.install(app)
        async with serve(app) as c:
            ok = await c.post("/operations/orchestrators/router_default_registry_flow", json=1)
            assert ok.status_code == 202, ok.text
            unknown = await c.post("/operations/orchestrators/not_registered_anywhere", json=1)
            assert unknown.status_code == 404, unknown.text
    finally:
        default_registry._orchestrators.pop("router_default_registry_flow", None)  # noqa: SLF001
