"""The route table of :class:`~durable_core.fastapi.OperationsAPI`: the endpoint functions of
the generic routes (start, status monitor, result, management, purge) and of the start paths
:meth:`~durable_core.fastapi.OperationsAPI.bind` adds, with their OpenAPI description, and
:func:`add_head_routes`.

Every function here takes the ``OperationsAPI`` instance and adds routes to its router (or
builds one); the endpoints answer through the instance's methods (``start``, ``status``,
``result``, ``client_for``...), so what a route does is decided there.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Union

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from starlette.responses import Response

from ..errors import OrchestrationAlreadyExistsError, OrchestrationNotFoundError, PayloadError
from ..status import TERMINAL_STATUSES
from .bodies import parse_json_body, read_body, validate_input
from .documents import _EVENT_RE, ID_SCHEMA, _check_id, _not_found
from .encoding import dumps as _dumps
from .metrics import add_metrics_route
from .problems import PROBLEM_MEDIA_TYPE, ProblemError

if TYPE_CHECKING:
    from .operations import OperationsAPI

__all__ = ["add_routes", "bound_start_router", "add_head_routes"]

_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"type": "object"}}}
_JSON_ANY = {"application/json": {"schema": {}}}
_START_RESPONSES: dict[Union[int, str], dict[str, Any]] = {
    202: {"description": "Accepted: the operation started (or already existed)", "content": _JSON_ANY},
    400: {"description": "Malformed input", "content": _PROBLEM_CONTENT},
    404: {"description": "Unknown orchestrator", "content": _PROBLEM_CONTENT},
    409: {"description": "Operation id in use", "content": _PROBLEM_CONTENT},
    413: {"description": "Body too large", "content": _PROBLEM_CONTENT},
    415: {"description": "Not JSON", "content": _PROBLEM_CONTENT},
    422: {"description": "Invalid input", "content": _PROBLEM_CONTENT},
}
_STATUS_RESPONSES: dict[Union[int, str], dict[str, Any]] = {
    200: {"description": "Status document", "content": _JSON_ANY},
    202: {"description": "Running (Durable Functions-compatible mode)", "content": _JSON_ANY},
    303: {"description": "Finished: see the result", "content": _JSON_ANY},
    400: {"description": "Invalid id", "content": _PROBLEM_CONTENT},
    404: {"description": "Unknown operation", "content": _PROBLEM_CONTENT},
    422: {"description": "Invalid query", "content": _PROBLEM_CONTENT},
}
_RESULT_RESPONSES: dict[Union[int, str], dict[str, Any]] = {
    200: {"description": "The output", "content": _JSON_ANY},
    202: {"description": "Still running", "content": _JSON_ANY},
    400: {"description": "Invalid id", "content": _PROBLEM_CONTENT},
    404: {"description": "Unknown operation", "content": _PROBLEM_CONTENT},
    409: {"description": "Failed or canceled", "content": _PROBLEM_CONTENT},
}
_MGMT_RESPONSES: dict[Union[int, str], dict[str, Any]] = {
    200: {"description": "Done", "content": _JSON_ANY},
    202: {"description": "Accepted", "content": _JSON_ANY},
    400: {"description": "Invalid input", "content": _PROBLEM_CONTENT},
    401: {"description": "No or wrong credentials", "content": _PROBLEM_CONTENT},
    403: {"description": "Management disabled", "content": _PROBLEM_CONTENT},
    404: {"description": "Unknown operation", "content": _PROBLEM_CONTENT},
    409: {"description": "Conflict with the operation's state", "content": _PROBLEM_CONTENT},
    413: {"description": "Body too large", "content": _PROBLEM_CONTENT},
    415: {"description": "Not JSON", "content": _PROBLEM_CONTENT},
    422: {"description": "Invalid input", "content": _PROBLEM_CONTENT},
}


_ID_PATH: Any = PathParam(..., description="operation id", json_schema_extra=ID_SCHEMA)
_NAME_PATH: Any = PathParam(
    ..., description="orchestrator name", json_schema_extra={"pattern": r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"}
)
_EVENT_PATH: Any = PathParam(
    ..., description="event name", json_schema_extra={"pattern": r"^[A-Za-z0-9_.:\-]{1,128}$"}
)


def add_routes(api: "OperationsAPI") -> None:
    """Add the generic routes of ``api`` to ``api.router``: start, status monitor and result,
    the management routes behind ``api``'s management auth, the metrics scrape endpoint
    (when ``api.metrics``), and ``HEAD`` beside every ``GET``."""
    mgmt = [Depends(api._mgmt_dep)]
    sec = _security_extra(api)
    start_extra: dict[str, Any] = {
        "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}}
    }
    _add_start_routes(api, start_extra)
    _add_read_routes(api)
    _add_management_routes(api, mgmt, sec, start_extra)
    if api.metrics:
        add_metrics_route(api, mgmt, sec)
    add_head_routes(api.router)


def _security_extra(api: "OperationsAPI") -> dict[str, Any]:
    """The ``security`` requirement of the management routes' OpenAPI operations (from the
    management auth's ``openapi_security``), or nothing."""
    security = api._security
    if security and security.get("requirement"):
        return {"security": security["requirement"]}
    return {}


# -- start -------------------------------------------------------------------------------------


def _add_start_routes(api: "OperationsAPI", start_extra: dict[str, Any]) -> None:
    async def start_generic(
        request: Request,
        name: str = _NAME_PATH,
        instance_id_q: Optional[str] = Query(
            None,
            alias="instanceId",
            description="client-chosen operation id (idempotent)",
            json_schema_extra=ID_SCHEMA,
        ),
    ) -> Response:
        try:
            return await api._start_generic(request, name, instance_id_q)
        except ProblemError as e:
            return e.to_response(request.url.path)

    async def start_generic_with_id(request: Request, name: str = _NAME_PATH, instance_id: str = _ID_PATH) -> Response:
        try:
            return await api._start_generic(request, name, instance_id)
        except ProblemError as e:
            return e.to_response(request.url.path)

    p, n = api.prefix, api.name
    api.router.add_api_route(
        f"{p}/orchestrators/{{name}}",
        start_generic,
        methods=["POST"],
        status_code=202,
        name=f"{n}.start",
        summary="Start an orchestration (JSON body = input)",
        responses=_START_RESPONSES,
        openapi_extra=start_extra,
        response_class=Response,
    )
    api.router.add_api_route(
        f"{p}/orchestrators/{{name}}/{{instance_id}}",
        start_generic_with_id,
        methods=["POST"],
        status_code=202,
        name=f"{n}.start_with_id",
        summary="Start an orchestration with a client-chosen id (idempotent)",
        responses=_START_RESPONSES,
        openapi_extra=start_extra,
        response_class=Response,
    )


def bound_start_router(
    api: "OperationsAPI",
    path: str,
    name: str,
    *,
    summary: Optional[str] = None,
    input_model: Any = None,
) -> APIRouter:
    """A router with ``POST path`` starting orchestrator ``name`` with the JSON body as its
    input, validated by ``input_model`` when given (else by ``api``'s input models for
    ``name``), for :meth:`~durable_core.fastapi.OperationsAPI.bind` to include."""
    schema: dict[str, Any] = {}
    if input_model is not None:
        schema = input_model.model_json_schema()

    async def start_bound(
        request: Request,
        instance_id: Optional[str] = Query(
            None,
            alias="instanceId",
            description="client-chosen operation id (idempotent)",
            json_schema_extra=ID_SCHEMA,
        ),
    ) -> Response:
        try:
            raw = await read_body(request, max_bytes=api.max_body_bytes)
            value = parse_json_body(request, raw)
            if input_model is not None:
                value = validate_input(input_model, value, raw=raw)
            else:
                value = api.validate_start_input(name, value, raw=raw)
            return await api.start(request, name, value, instance_id=instance_id)
        except ProblemError as e:
            return e.to_response(request.url.path)

    extra: dict[str, Any] = {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": schema}},
        }
    }
    target = APIRouter()
    target.add_api_route(
        path,
        start_bound,
        methods=["POST"],
        status_code=202,
        name=f"{api.name}.start.{name}.{path}",
        summary=summary or f"Start {name}",
        responses=_START_RESPONSES,
        openapi_extra=extra,
        response_class=Response,
    )
    return target


# -- status monitor and result -----------------------------------------------------------------


def _add_read_routes(api: "OperationsAPI") -> None:
    async def get_status(
        request: Request,
        instance_id: str = _ID_PATH,
        wait: Optional[float] = Query(
            None,
            ge=0,
            description="long-poll: answer when the state changes, at most this many seconds",
        ),
        show_history: bool = Query(False, alias="showHistory"),
    ) -> Response:
        try:
            return await api.status(request, instance_id, wait=wait, show_history=show_history)
        except ProblemError as e:
            return e.to_response(request.url.path)

    async def get_result(request: Request, instance_id: str = _ID_PATH) -> Response:
        try:
            return await api.result(request, instance_id)
        except ProblemError as e:
            return e.to_response(request.url.path)

    p, n = api.prefix, api.name
    api.router.add_api_route(
        f"{p}/instances/{{instance_id}}",
        get_status,
        methods=["GET"],
        name=f"{n}.status",
        summary="Status monitor of an operation",
        responses=_STATUS_RESPONSES,
        response_class=Response,
    )
    api.router.add_api_route(
        f"{p}/instances/{{instance_id}}/result",
        get_result,
        methods=["GET"],
        name=f"{n}.result",
        summary="The result of a finished operation",
        responses=_RESULT_RESPONSES,
        response_class=Response,
    )


# -- management --------------------------------------------------------------------------------


def _add_management_routes(
    api: "OperationsAPI", mgmt: list[Any], sec: dict[str, Any], start_extra: dict[str, Any]
) -> None:
    """Raise event, terminate / suspend / resume, restart and purge, each guarded by ``mgmt``
    (the management auth) and documented with ``sec`` (its security requirement)."""
    p, n, r = api.prefix, api.name, api.router
    r.add_api_route(
        f"{p}/instances/{{instance_id}}/raiseEvent/{{event_name}}",
        _raise_event_endpoint(api),
        methods=["POST"],
        status_code=202,
        dependencies=mgmt,
        name=f"{n}.raise_event",
        summary="Raise an external event (JSON body = event data)",
        responses=_MGMT_RESPONSES,
        openapi_extra={**start_extra, **sec},
        response_class=Response,
    )
    for action in ("terminate", "suspend", "resume"):
        r.add_api_route(
            f"{p}/instances/{{instance_id}}/{action}",
            _simple_endpoint(api, action),
            methods=["POST"],
            status_code=202,
            dependencies=mgmt,
            name=f"{n}.{action}",
            summary=f"{action.capitalize()} an operation",
            responses=_MGMT_RESPONSES,
            openapi_extra=sec or None,
            response_class=Response,
        )
    r.add_api_route(
        f"{p}/instances/{{instance_id}}/restart",
        _restart_endpoint(api),
        methods=["POST"],
        status_code=202,
        dependencies=mgmt,
        name=f"{n}.restart",
        summary="Restart a finished operation with its original input",
        responses=_MGMT_RESPONSES,
        openapi_extra=sec or None,
        response_class=Response,
    )
    r.add_api_route(
        f"{p}/instances/{{instance_id}}",
        _purge_endpoint(api),
        methods=["DELETE"],
        dependencies=mgmt,
        name=f"{n}.purge",
        summary="Purge a finished operation's history",
        responses=_MGMT_RESPONSES,
        openapi_extra=sec or None,
        response_class=Response,
    )


def _raise_event_endpoint(api: "OperationsAPI") -> Callable[..., Awaitable[Response]]:
    async def raise_event(request: Request, instance_id: str = _ID_PATH, event_name: str = _EVENT_PATH) -> Response:
        try:
            _check_id(instance_id)
            if not _EVENT_RE.match(event_name):
                raise ProblemError(400, "Invalid event name", slug="invalid-event-name")
            data = parse_json_body(request, await read_body(request, max_bytes=api.max_body_bytes))
            client = api.client_for(request)
            try:
                await client.raise_orchestration_event(instance_id, event_name, data=data)
            except OrchestrationNotFoundError:
                raise _not_found(instance_id) from None
            except PayloadError as e:
                raise ProblemError(422, "Event data not serializable", str(e)[:200]) from None
            return _accepted_empty(api.status_url(request, instance_id))
        except ProblemError as e:
            return e.to_response(request.url.path)

    return raise_event


def _simple_endpoint(api: "OperationsAPI", action: str) -> Callable[..., Awaitable[Response]]:
    """The endpoint of ``terminate``, ``suspend`` or ``resume`` (``?reason=`` passed on)."""

    async def endpoint(
        request: Request,
        instance_id: str = _ID_PATH,
        reason: Optional[str] = Query(None, max_length=4096),
    ) -> Response:
        try:
            _check_id(instance_id)
            client = api.client_for(request)
            try:
                if action == "terminate":
                    await client.terminate_orchestration(instance_id, output=reason)
                elif action == "suspend":
                    await client.suspend_orchestration(instance_id, reason=reason)
                else:
                    await client.resume_orchestration(instance_id, reason=reason)
            except OrchestrationNotFoundError:
                raise _not_found(instance_id) from None
            return _accepted_empty(api.status_url(request, instance_id))
        except ProblemError as e:
            return e.to_response(request.url.path)

    endpoint.__name__ = f"{action}_operation"
    return endpoint


def _restart_endpoint(api: "OperationsAPI") -> Callable[..., Awaitable[Response]]:
    async def restart(
        request: Request,
        instance_id: str = _ID_PATH,
        new_instance_id: bool = Query(False, alias="restartWithNewInstanceId"),
    ) -> Response:
        try:
            _check_id(instance_id)
            client = api.client_for(request)
            try:
                iid = await client.restart_orchestration(
                    instance_id, restart_with_new_instance_id=new_instance_id
                )
            except OrchestrationNotFoundError:
                raise _not_found(instance_id) from None
            except OrchestrationAlreadyExistsError:
                raise ProblemError(
                    409,
                    "Operation still running",
                    "restart the same id only after it finished, or pass "
                    "restartWithNewInstanceId=true",
                    slug="still-running",
                ) from None
            return api.accepted_response(request, iid)
        except ProblemError as e:
            return e.to_response(request.url.path)

    return restart


def _purge_endpoint(api: "OperationsAPI") -> Callable[..., Awaitable[Response]]:
    async def purge(request: Request, instance_id: str = _ID_PATH) -> Response:
        try:
            _check_id(instance_id)
            client = api.client_for(request)
            state = await client.get_orchestration_state(instance_id, fetch_payloads=False)
            if state is None:
                raise _not_found(instance_id)
            if state.runtime_status not in TERMINAL_STATUSES:
                raise ProblemError(
                    409,
                    "Operation still running",
                    "only finished operations can be purged; terminate it first",
                    slug="still-running",
                )
            n = await client.purge_orchestration(instance_id)
            if not n:
                raise _not_found(instance_id)
            return Response(
                _dumps({"instancesDeleted": n}), 200, media_type="application/json"
            )
        except ProblemError as e:
            return e.to_response(request.url.path)

    return purge


def _accepted_empty(status_url: str) -> Response:
    """``202 Accepted`` without a body, pointing at the status monitor."""
    return Response(
        b"", status_code=202, headers={"Location": status_url, "Operation-Location": status_url}
    )


# -- HEAD --------------------------------------------------------------------------------------


def add_head_routes(router: Union[APIRouter, FastAPI]) -> None:
    """Answer ``HEAD`` on every ``GET`` route of ``router`` (an app or a router) that lacks it.

    FastAPI routes answer only the methods they list; this adds a sibling ``HEAD`` route per
    ``GET`` route -- same path, dependencies and answer, without the body, left out of the
    OpenAPI document -- so monitors and caches that probe with ``HEAD`` get the ``GET``'s
    status and headers instead of a 405. Call it after the ``GET`` routes are added.
    """
    from fastapi.routing import APIRoute

    have = {
        (rt.path, m) for rt in router.routes if isinstance(rt, APIRoute) for m in rt.methods
    }
    for rt in list(router.routes):
        if not isinstance(rt, APIRoute) or "GET" not in rt.methods or (rt.path, "HEAD") in have:
            continue
        router.add_api_route(
            rt.path,
            _headless(rt.endpoint),
            methods=["HEAD"],
            dependencies=list(rt.dependencies),
            name=f"{rt.name}.head",
            include_in_schema=False,
            response_class=rt.response_class,
        )
        have.add((rt.path, "HEAD"))


def _headless(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` answering without its body (headers, Content-Length included, unchanged)."""

    @functools.wraps(endpoint)
    async def head(*args: Any, **kwargs: Any) -> Any:
        resp = endpoint(*args, **kwargs)
        if inspect.isawaitable(resp):
            resp = await resp
        if isinstance(resp, Response):
            resp.body = b""
        return resp

    return head
