"""One trace from the ``POST`` that started an operation (FastAPI's own request span)
through every step and activity to the completion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("durable_core.engine")
pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("fastapi.telemetry")

from fastapi import FastAPI  # noqa: E402

from durable_core.fastapi import OperationsAPI, runtime_lifespan  # noqa: E402
from durable_core.telemetry import attributes as A  # noqa: E402

from http_support import serve  # noqa: E402
from telemetry_support import Otel, attr, by_id, parent_of, registry  # noqa: E402

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_post_to_completion_is_one_trace(tmp_path: Any) -> None:
    otel = Otel()
    tp = otel.tracer_provider
    app = FastAPI(
        lifespan=runtime_lifespan(f"sqlite:///{tmp_path / 'h.db'}", registry=registry(),
                                  stop_grace=0.5, tracer_provider=tp),
        telemetry={"tracer_provider": tp, "metrics": False, "logs": False},
    )
    api = OperationsAPI(allow_unauthenticated_management=True)
    api.bind("/api/chain", "chain")
    api.install(app)
    async with serve(app) as http:
        r = await http.post("/api/chain", json=1)
        assert r.status_code == 202, r.text
        status_url = r.headers["location"]
        for _ in range(400):
            s = await http.get(status_url)
            if s.json().get("runtimeStatus") == "Completed":
                break
            await asyncio.sleep(0.01)
        assert s.json()["runtimeStatus"] == "Completed", s.json()
    spans = otel.spans()
    (create,) = otel.spans("create_orchestration ")
    index = by_id(spans)
    # walk up from the create span to the request's server span
    chain = []
    node = create
    while parent_of(node) is not None and parent_of(node) in index:
        node = index[parent_of(node)]
        chain.append(node)
    assert chain and chain[-1].kind.name == "SERVER" and "POST" in chain[-1].name, [
        (s.name, s.kind.name) for s in chain]
    request = chain[-1]
    iid = attr(create, A.INSTANCE_ID)
    ours = [s for s in spans if attr(s, A.INSTANCE_ID) == iid]
    assert len(otel.spans("orchestration_step ")) == 4
    assert len(otel.spans("activity ")) == 3
    assert {s.context.trace_id for s in ours} == {request.context.trace_id}
    otel.shutdown()
