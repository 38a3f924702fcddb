"""The dashboard's JSON API and page, mounted in the HTTP sample (app.py) and on its own:
auth on actions, read-only without it, answers for poisoned data, long-polls that wake on a
change, the page's security headers. The browser tests (test_dashboard_browser.py) drive the
page itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import httpx
import pytest
from fastapi import FastAPI

import corrupt_store
import ops_flows
from http_support import runtime_available, serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120),
              pytest.mark.skipif(not runtime_available(), reason="runtime not built yet")]
KEY = "dash-key"
AUTH = {"X-API-Key": KEY}
D = "/dashboard"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sample(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Path]]:
    import app as sample_app

    db = tmp_path / "dash.db"
    app = sample_app.create_app(f"sqlite:///{db}", api_key=KEY, stop_grace=0.5)
    async with serve(app) as http:
        yield http, app.state.durable_client, db


async def job(http: httpx.AsyncClient, durable: Any, steps: int = 2, seconds: float = 0) -> str:
    r = await http.post("/api/jobs", json={"name": "d", "steps": steps, "seconds_per_step": seconds})
    assert r.status_code == 202, r.text
    return r.json()["id"]


async def test_page_static_files_and_headers(sample: Any) -> None:
    http, _, _ = sample
    r = await http.get(D)
    assert r.status_code in (307, 308) and r.headers["location"].endswith("/dashboard/")
    page = await http.get(D + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="static/app.js"' in page.text and "http" not in page.text.split("<body>")[0]
    js = await http.get(D + "/static/app.js")
    assert js.status_code == 200 and "innerHTML" not in js.text  # payloads only ever as text
    assert (await http.get(D + "/static/app.css")).status_code == 200
    assert (await http.head(D + "/")).status_code == 200
    cfg = (await http.get(D + "/api/config")).json()
    assert cfg == {"title": "async HTTP API sample", "actions": True}


async def test_list_filters_counts_and_paging(sample: Any) -> None:
    http, durable, _ = sample
    ids = [await job(http, durable) for _ in range(3)]
    for i in ids:
        await durable.wait_for_orchestration_completion(i, timeout=60)
    bad = (await http.post("/api/start-operation", json={"processing_time": 0})).json()["operation_id"]
    await durable.wait_for_orchestration_completion(bad, timeout=60)
    doc = (await http.get(D + "/api/instances")).json()
    assert doc["counts"]["Completed"] == 4 and set(doc["counts"]) >= {"Running", "Failed"}
    assert {x["instanceId"] for x in doc["instances"]} == {*ids, bad}
    one = (await http.get(D + "/api/instances", params={"name": "async_http_api_orchestrator"})).json()
    assert [x["instanceId"] for x in one["instances"]] == [bad]
    assert (await http.get(D + "/api/instances", params={"status": "Failed"})).json()["instances"] == []
    assert len((await http.get(D + "/api/instances", params={"prefix": ids[0][:10]})).json()["instances"]) >= 1
    p1 = (await http.get(D + "/api/instances", params={"pageSize": 2})).json()
    assert len(p1["instances"]) == 2 and p1["continuationToken"]
    p2 = (await http.get(D + "/api/instances", params={"pageSize": 2, "token": p1["continuationToken"]})).json()
    assert len(p2["instances"]) == 2
    future = (await http.get(D + "/api/instances", params={"createdFrom": "2999-01-01T00:00:00Z"})).json()
    assert future["instances"] == [] and sum(future["counts"].values()) == 0
    for params in ({"status": "Sleeping"}, {"createdFrom": "soon"}, {"pageSize": 0}):
        r = await http.get(D + "/api/instances", params=params)
        assert r.status_code in (400, 422) and r.headers["content-type"].startswith("application/problem+json")


async def test_instance_timeline_and_history(sample: Any) -> None:
    http, durable, _ = sample
    iid = await job(http, durable, steps=3)
    await durable.wait_for_orchestration_completion(iid, timeout=60)
    doc = (await http.get(f"{D}/api/instances/{iid}")).json()
    assert doc["runtimeStatus"] == "Completed" and '"chunks": 3' in doc["output"]["text"]
    assert doc["input"]["text"].startswith("{") and doc["terminal"] is True
    tl = (await http.get(f"{D}/api/instances/{iid}/timeline")).json()
    acts = [s for s in tl["spans"] if s["kind"] == "activity"]
    assert [s["outcome"] for s in acts] == ["completed"] * 3
    assert all(s["end"] >= s["start"] for s in acts) and tl["error"] is None
    hist = (await http.get(f"{D}/api/instances/{iid}/history", params={"offset": 0, "limit": 5})).json()
    assert hist["total"] == tl["events"] and len(hist["events"]) == 5 and hist["events"][0]["seq"] == 0
    one = (await http.get(f"{D}/api/instances/{iid}/history",
                          params={"offset": acts[0]["startSeq"], "limit": 1, "full": "true"})).json()
    ev = one["events"][0]
    assert ev["eventType"] == "TaskScheduled" and "input" in ev["payloads"]
    assert (await http.get(f"{D}/api/instances/nope")).status_code == 404
    assert (await http.get(f"{D}/api/instances/bad%20id")).status_code == 400


async def test_corrupt_instance_still_shows(sample: Any) -> None:
    http, durable, db = sample
    iid = await job(http, durable)
    await durable.wait_for_orchestration_completion(iid, timeout=60)
    corrupt_store.truncate_history(db, iid)
    corrupt_store.set_raw_output(db, iid)
    doc = (await http.get(f"{D}/api/instances/{iid}")).json()
    assert doc["output"]["error"] and doc["output"]["raw"]
    tl = (await http.get(f"{D}/api/instances/{iid}/timeline")).json()
    assert tl["spans"] == [] and "cannot be decoded" in tl["error"]
    hist = (await http.get(f"{D}/api/instances/{iid}/history")).json()
    assert hist["events"] == [] and hist["error"]
    listing = (await http.get(D + "/api/instances")).json()
    assert any(x["instanceId"] == iid and "undecodable" in x["summary"] for x in listing["instances"])


async def test_actions_need_the_key(sample: Any) -> None:
    http, durable, _ = sample
    iid = await job(http, durable, steps=50, seconds=1)
    await durable.wait_for_orchestration_start(iid, timeout=60)
    url = f"{D}/api/instances/{iid}"
    for action in ("terminate", "suspend", "resume", "restart", "raise-event", "purge"):
        for headers in ({}, {"X-API-Key": "wrong"}):
            r = await http.post(f"{url}/{action}", json={}, headers=headers)
            assert r.status_code == 401, (action, r.text)
    assert (await durable.get_orchestration_state(iid)).runtime_status.name == "RUNNING"
    assert (await http.post(f"{url}/resume", json={}, headers=AUTH)).status_code == 409
    assert (await http.post(f"{url}/purge", json={}, headers=AUTH)).status_code == 409
    assert (await http.post(f"{url}/raise-event", json={"name": "bad name"}, headers=AUTH)).status_code == 400
    assert (await http.post(f"{url}/raise-event", json={"name": "poke", "data": [1]}, headers=AUTH)).status_code == 202
    assert (await http.post(f"{url}/terminate", content=b"{", headers={**AUTH, "content-type": "application/json"})).status_code == 400
    r = await http.post(f"{url}/terminate", json={"reason": "from the dashboard"}, headers=AUTH)
    assert r.status_code == 202
    st = await durable.wait_for_orchestration_completion(iid, timeout=60)
    assert st.runtime_status.name == "TERMINATED" and st.output == "from the dashboard"
    assert (await http.post(f"{url}/terminate", json={}, headers=AUTH)).status_code == 409
    again = await http.post(f"{url}/restart", json={"newInstanceId": True}, headers=AUTH)
    assert again.status_code == 202 and again.json()["instanceId"] != iid
    await durable.terminate_orchestration(again.json()["instanceId"])
    assert (await http.post(f"{url}/purge", json={}, headers=AUTH)).json()["purged"] == 1
    assert (await http.get(url)).status_code == 404


async def test_read_only_without_auth(tmp_path: Path) -> None:
    from durable_core.fastapi import client_lifespan, dashboard

    url = f"sqlite:///{tmp_path / 'ro.db'}"
    ids = ops_flows.populate(url)
    app = FastAPI(lifespan=client_lifespan(url))
    app.mount("/d", dashboard())
    async with serve(app) as http:
        assert (await http.get("/d/api/config")).json()["actions"] is False
        for action in ("terminate", "suspend", "raise-event", "purge"):
            r = await http.post(f"/d/api/instances/{ids['waiter']}/{action}", json={"name": "go"})
            assert r.status_code == 403 and r.json()["type"].endswith(":actions-disabled")
        st = await app.state.durable_client.get_orchestration_state(ids["waiter"])
        assert st.runtime_status.name == "RUNNING"
        assert len((await http.get("/d/api/instances")).json()["instances"]) == 5
    with pytest.raises(ValueError):
        dashboard(auth=lambda: None, allow_unauthenticated_actions=True)


async def test_watch_answers_on_a_change(sample: Any) -> None:
    http, durable, _ = sample
    iid = await job(http, durable, steps=50, seconds=1)
    st = await durable.wait_for_orchestration_start(iid, timeout=60)
    while st.custom_status is None:
        st = await durable.wait_for_orchestration_change(iid, since=st, timeout=10)
    doc = (await http.get(f"{D}/api/instances/{iid}")).json()
    quiet = await http.get(f"{D}/api/instances/{iid}/watch", params={"version": doc["version"], "timeout": 0.2})
    assert quiet.json() == {"gone": False, "changed": False, "version": doc["version"]}

    async def later() -> None:
        await asyncio.sleep(0.3)
        await durable.terminate_orchestration(iid)

    with anyio.fail_after(30):  # asks to wait 50 s: answering sooner means the change woke it
        task = asyncio.ensure_future(later())
        w = await http.get(f"{D}/api/instances/{iid}/watch", params={"version": doc["version"], "timeout": 50})
        await task
    assert w.json()["changed"] is True and w.json()["version"] != doc["version"]
    # the list's watch over several instances
    other = await job(http, durable, steps=50, seconds=1)
    o = await durable.wait_for_orchestration_start(other, timeout=60)
    while o.custom_status is None:
        o = await durable.wait_for_orchestration_change(other, since=o, timeout=10)
    versions = {x["instanceId"]: x["version"] for x in (await http.get(D + "/api/instances")).json()["instances"]
                if not x["terminal"]}
    assert other in versions

    async def stop_other() -> None:
        await asyncio.sleep(0.3)
        await durable.terminate_orchestration(other)

    with anyio.fail_after(30):
        task = asyncio.ensure_future(stop_other())
        r = await http.post(D + "/api/watch", json={"versions": versions, "timeout": 50})
        await task
    assert other in r.json()["changed"]
    assert (await http.post(D + "/api/watch", json={"versions": "x"})).status_code == 400
