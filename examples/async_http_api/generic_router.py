"""The asynchronous HTTP API pattern through the generic router, with progress in custom status.

Instead of writing the routes by hand (``client.py``), ``OperationsAPI`` exposes the
orchestration as a long-running operation: ``POST /api/jobs`` starts it (``202`` with
``Location``/``Operation-Location``/``Retry-After`` and the management URLs), the status
monitor ``GET /operations/instances/{id}`` shows ``customStatus.percentComplete`` while it runs
(``?wait=30`` long-polls; ``?showHistory=true`` adds the history), ``.../result`` gives the
output, and the management routes (terminate, suspend, resume, raise event, restart, purge)
need the API key::

    python generic_router.py --db sqlite:///durable.db --port 8001

or as two processes sharing the store (an API-only process and a worker)::

    python -m durable_core worker generic_router --db sqlite:///durable.db
    python generic_router.py --client-only --db sqlite:///durable.db --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from typing import Any, Callable, Optional

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

import durable_core as dc
from durable_core.fastapi import (
    APIKeyAuth,
    BodySizeLimitMiddleware,
    OperationsAPI,
    client_lifespan,
    runtime_lifespan,
)


class JobRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str = Field(..., min_length=1, max_length=200)
    steps: int = Field(5, ge=1, le=100)
    seconds_per_step: float = Field(1.0, ge=0, le=60)


@dc.activity
async def process_chunk(ctx: dc.ActivityContext, chunk: dict) -> dict:
    """One step of the job: simulated work."""
    await asyncio.sleep(float(chunk["seconds"]))
    return {"index": chunk["index"], "ok": True}


@dc.orchestrator
def process_with_progress(ctx: dc.OrchestrationContext, job: dict):
    """Process ``job["steps"]`` chunks one after another, reporting progress as custom status."""
    steps = int(job["steps"])
    done = 0
    for i in range(steps):
        ctx.set_custom_status({"percentComplete": round(100 * i / steps), "step": i, "steps": steps})
        yield ctx.call_activity(
            process_chunk, input={"index": i, "seconds": job.get("seconds_per_step", 1.0)}
        )
        done += 1
    ctx.set_custom_status({"percentComplete": 100, "step": steps, "steps": steps})
    return {"job": job["name"], "chunks": done}


def build_api(api_key: str, *, auth: Optional[APIKeyAuth] = None, **options: Any) -> OperationsAPI:
    """The operations API: the generic routes plus ``POST /api/jobs`` bound to the orchestrator
    (``auth``, if given, guards the management routes instead of a new ``APIKeyAuth(api_key)``)."""
    api = OperationsAPI(
        orchestrators=[process_with_progress],
        management_auth=auth or APIKeyAuth(api_key),
        **options,
    )
    api.bind("/api/jobs", process_with_progress, input_model=JobRequest, summary="Start a job")
    return api


def create_app(lifespan: Optional[Callable[[FastAPI], Any]], api_key: str, **options: Any) -> FastAPI:
    """A FastAPI app serving the generic router (``lifespan`` provides the durable client)."""
    app = FastAPI(title="durable_core generic operations router sample", lifespan=lifespan)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=1 << 20)
    build_api(api_key, **options).install(app)
    return app


def api_key_from_env() -> str:
    """``$DURABLE_API_KEY``, or a fresh random key (printed at start-up)."""
    return os.environ.get("DURABLE_API_KEY") or secrets.token_urlsafe(18)


def main(argv: Optional[list[str]] = None) -> None:
    """Serve the generic router with the worker in the same process."""
    import uvicorn

    parser = argparse.ArgumentParser(description="generic operations router sample")
    parser.add_argument("--db", default="sqlite:///durable.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--client-only",
        action="store_true",
        help="serve the API only; a separate worker (python -m durable_core worker generic_router) runs the jobs",
    )
    args = parser.parse_args(argv)
    key = api_key_from_env()
    base = f"http://{args.host}:{args.port}"
    where = "API only: run a worker on the same store" if args.client_only else "worker in this process"
    print(
        f"generic router on {base} (store {args.db}, {where})\n"
        f"  API key for management routes: {key}\n"
        f"  curl -i -X POST {base}/api/jobs -H 'Content-Type: application/json' "
        f"-d '{{\"name\": \"report\", \"steps\": 5, \"seconds_per_step\": 1}}'\n"
        f"  curl -i '{base}/operations/instances/<id>?wait=30'",
        flush=True,
    )
    lifespan = client_lifespan(args.db) if args.client_only else runtime_lifespan(args.db)
    uvicorn.run(create_app(lifespan, key), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
