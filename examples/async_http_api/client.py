"""The HTTP side of the asynchronous HTTP API sample: a FastAPI app over an AsyncClient.

Ported from the Durable Task SDK sample: the same routes and response fields
(``operation_id``, ``status_url``, ``status``, ``result``, ``error``, ``last_updated``), so its
clients keep working; starts now answer ``202 Accepted`` with ``Location`` and ``Retry-After``.

    POST /api/start-operation   {"processing_time": 10}          -> 202 {operation_id, status_url}
    GET  /api/operations/{id}                                     -> {operation_id, status, result, error, last_updated}
    POST /api/process           {"name": "...", "delay_seconds": 10} -> 202 {operation_id, status_url, result_url}
    GET  /api/status/{id}                                         -> {operation_id, status, last_updated, ...}
    GET  /api/result/{id}                                         -> 200 {operation_id, status, result} (202 while running)

Two processes sharing the SQLite file::

    python worker.py --db sqlite:///durable.db
    python client.py --db sqlite:///durable.db --port 8000     # or: uvicorn client:app

One process (worker + API): ``python app.py``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Optional

from fastapi import FastAPI, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from durable_core.fastapi import (
    ID_SCHEMA,
    BodySizeLimitMiddleware,
    ProblemError,
    add_head_routes,
    base_url,
    client_lifespan,
    install_problem_handlers,
    is_valid_instance_id,
    read_model,
    runtime_status_name,
    safe_payload,
)
from durable_core.status import TERMINAL_STATUSES, OrchestrationState, OrchestrationStatus

ORCHESTRATOR = "async_http_api_orchestrator"
RETRY_AFTER = "1"
MAX_BODY_BYTES = 64 * 1024


class OperationRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # "processing_time": false is an error, not 0
    processing_time: float = Field(5, ge=0, le=3600, description="seconds of simulated work")


class OperationResponse(BaseModel):
    operation_id: str
    status_url: str


class OperationStatus(BaseModel):
    operation_id: str
    status: str
    result: Optional[Any] = None
    error: Optional[str] = None
    last_updated: Optional[str] = None
    custom_status: Optional[Any] = None


class ProcessRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str = Field(..., min_length=1, max_length=200)
    delay_seconds: float = Field(5, ge=0, le=3600)


class ProcessResponse(BaseModel):
    operation_id: str
    status_url: str
    result_url: str
    message: str


class StatusResponse(BaseModel):
    operation_id: str
    status: str
    last_updated: Optional[str] = None
    created_at: Optional[str] = None
    custom_status: Optional[Any] = None
    error: Optional[str] = None
    status_url: str
    result_url: str


LOOKUP_ERRORS: dict = {
    400: {"description": "invalid operation id"},
    404: {"description": "unknown operation"},
}
START_ERRORS: dict = {
    400: {"description": "malformed JSON body"},
    413: {"description": "body too large"},
    415: {"description": "the body is not JSON"},
    422: {"description": "the body does not fit the request model"},
}
OperationId = Path(..., description="the id returned by the start call", json_schema_extra=ID_SCHEMA)


def _client(request: Request) -> Any:
    return request.app.state.durable_client


async def _state(request: Request, operation_id: str) -> OrchestrationState:
    if not is_valid_instance_id(operation_id):
        raise ProblemError(400, "Invalid operation id", slug="invalid-id")
    state = await _client(request).get_orchestration_state(operation_id)
    if state is None:
        raise ProblemError(404, "Operation not found", f"no operation {operation_id!r}", slug="not-found")
    return state


def _error(state: OrchestrationState) -> Optional[str]:
    if state.runtime_status == OrchestrationStatus.FAILED:
        d = state.failure_details
        return f"{d.error_type}: {d.message}" if d else "the operation failed"
    if state.runtime_status in (OrchestrationStatus.TERMINATED, OrchestrationStatus.CANCELED):
        reason = safe_payload(state, "output")
        return f"terminated: {reason}" if reason is not None else "terminated"
    return None


def _polling_headers(state: OrchestrationState) -> dict[str, str]:
    return {} if state.runtime_status in TERMINAL_STATUSES else {"Retry-After": RETRY_AFTER}


def _json(model: BaseModel, status_code: int = 200, headers: Optional[dict] = None) -> Response:
    # Returning a Response skips FastAPI's second validation of the return value (the
    # response_model still documents it); pydantic serializes the model in one call.
    return Response(
        model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json"
    )


def _body_doc(model: type[BaseModel], *, required: bool) -> dict:
    """The OpenAPI request body of a route that reads ``model`` itself (with ``read_model``:
    400 for malformed JSON, 415 for another content type, 422 when it does not fit)."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def create_app(lifespan: Optional[Callable[[FastAPI], Any]] = None) -> FastAPI:
    """The sample's FastAPI app; ``lifespan`` provides ``app.state.durable_client``."""
    app = FastAPI(
        title="durable_core async HTTP API sample",
        description="Start long-running operations, poll their status, fetch their results.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)

    @app.post(
        "/api/start-operation",
        status_code=202,
        response_model=OperationResponse,
        responses=START_ERRORS,
        openapi_extra=_body_doc(OperationRequest, required=False),
    )
    async def start_operation(request: Request) -> Response:
        """Start a long-running operation; poll ``status_url`` for its outcome."""
        req = await read_model(request, OperationRequest, max_bytes=MAX_BODY_BYTES)
        operation_id = await _client(request).schedule_new_orchestration(
            ORCHESTRATOR, input={"processing_time": req.processing_time}
        )
        status_url = f"{base_url(request)}/api/operations/{operation_id}"
        return _json(
            OperationResponse(operation_id=operation_id, status_url=status_url),
            202,
            {"Location": status_url, "Retry-After": RETRY_AFTER},
        )

    @app.get("/api/operations/{operation_id}", response_model=OperationStatus, responses=LOOKUP_ERRORS)
    async def get_operation_status(
        request: Request, operation_id: str = OperationId
    ) -> Response:
        """The operation's status; ``result`` once completed, ``error`` if it failed."""
        state = await _state(request, operation_id)
        completed = state.runtime_status == OrchestrationStatus.COMPLETED
        body = OperationStatus(
            operation_id=operation_id,
            status=runtime_status_name(state.runtime_status),
            result=safe_payload(state, "output") if completed else None,
            error=_error(state),
            last_updated=state.last_updated_at.isoformat(),
            custom_status=safe_payload(state, "custom_status"),
        )
        return _json(body, 200, _polling_headers(state))

    @app.post(
        "/api/process",
        status_code=202,
        response_model=ProcessResponse,
        responses=START_ERRORS,
        openapi_extra=_body_doc(ProcessRequest, required=True),
    )
    async def process(request: Request) -> Response:
        """Start processing ``name`` for ``delay_seconds``; returns status and result links."""
        req = await read_model(request, ProcessRequest, max_bytes=MAX_BODY_BYTES)
        operation_id = await _client(request).schedule_new_orchestration(
            ORCHESTRATOR, input={"name": req.name, "delay_seconds": req.delay_seconds}
        )
        base = base_url(request)
        status_url = f"{base}/api/status/{operation_id}"
        body = ProcessResponse(
            operation_id=operation_id,
            status_url=status_url,
            result_url=f"{base}/api/result/{operation_id}",
            message="Processing started",
        )
        return _json(body, 202, {"Location": status_url, "Retry-After": RETRY_AFTER})

    @app.get("/api/status/{operation_id}", response_model=StatusResponse, responses=LOOKUP_ERRORS)
    async def get_status(request: Request, operation_id: str = OperationId) -> Response:
        """Whether the operation is running, completed or failed, with its links."""
        state = await _state(request, operation_id)
        base = base_url(request)
        body = StatusResponse(
            operation_id=operation_id,
            status=runtime_status_name(state.runtime_status),
            last_updated=state.last_updated_at.isoformat(),
            created_at=state.created_at.isoformat(),
            custom_status=safe_payload(state, "custom_status"),
            error=_error(state),
            status_url=f"{base}/api/status/{operation_id}",
            result_url=f"{base}/api/result/{operation_id}",
        )
        return _json(body, 200, _polling_headers(state))

    @app.get(
        "/api/result/{operation_id}",
        response_model=OperationStatus,
        responses={202: {"description": "still running: retry after Retry-After seconds"}, **LOOKUP_ERRORS},
    )
    async def get_result(request: Request, operation_id: str = OperationId) -> Response:
        """The result once completed (202 with ``Location`` while still running)."""
        state = await _state(request, operation_id)
        body = OperationStatus(
            operation_id=operation_id,
            status=runtime_status_name(state.runtime_status),
            last_updated=state.last_updated_at.isoformat(),
        )
        if state.runtime_status == OrchestrationStatus.COMPLETED:
            body.result = safe_payload(state, "output")
        elif state.runtime_status in TERMINAL_STATUSES:
            body.error = _error(state)
        else:
            status_url = f"{base_url(request)}/api/status/{operation_id}"
            return _json(body, 202, {"Location": status_url, "Retry-After": RETRY_AFTER})
        return _json(body)

    add_head_routes(app)  # HEAD on the status and result routes, as monitors probe them
    return app


#: ``uvicorn client:app`` serves this (store from $DURABLE_DB, default sqlite:///durable.db).
app = create_app(client_lifespan(os.environ.get("DURABLE_DB", "sqlite:///durable.db")))


def main(argv: Optional[list[str]] = None) -> None:
    """Serve the API as a client process (a separate worker.py executes the operations)."""
    import uvicorn

    parser = argparse.ArgumentParser(description="async HTTP API sample: the HTTP client process")
    parser.add_argument("--db", default="sqlite:///durable.db", help="store URL (shared with worker.py)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    print(f"API on http://{args.host}:{args.port} (store {args.db}); start worker.py on the same store", flush=True)
    uvicorn.run(create_app(client_lifespan(args.db)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
