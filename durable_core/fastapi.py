"""The asynchronous HTTP API (long-running operation) pattern for FastAPI.

``POST`` starts an orchestration and answers ``202 Accepted`` at once, with ``Location`` and
``Operation-Location`` pointing at a status monitor and ``Retry-After`` saying when to look
again; the client polls the monitor (or long-polls it with ``?wait=N``) and fetches the result.
Everything here is built on :class:`durable_core.AsyncClient` alone, so the same router serves
from a process that only holds a client (a separate worker process shares the store) or from
a process that also runs the worker (``runtime_lifespan``).

Quick use::

    from fastapi import FastAPI
    from durable_core.fastapi import OperationsAPI, APIKeyAuth, runtime_lifespan

    api = OperationsAPI(orchestrators=[my_flow], management_auth=APIKeyAuth("s3cret"))
    app = FastAPI(lifespan=runtime_lifespan("sqlite:///durable.db"))
    api.install(app)                      # routes + RFC 9457 problem responses
    api.bind("/api/reports", my_flow)     # a custom path that starts ``my_flow``

Routes (``prefix`` defaults to ``/operations``):

========================================================  ====================================
``POST {prefix}/orchestrators/{name}[/{instance_id}]``    start (JSON body = input) -> 202
``GET  {prefix}/instances/{id}[?wait=N&showHistory=true]``  status monitor
``GET  {prefix}/instances/{id}/result``                   the output (202 while running)
``POST {prefix}/instances/{id}/raiseEvent/{event}``       management (auth dependency)
``POST {prefix}/instances/{id}/terminate|suspend|resume|restart``
``DELETE {prefix}/instances/{id}``                        purge
========================================================  ====================================

The status document speaks two vocabularies at once: ``status`` is the long-running-operation
one (``NotStarted``, ``Running``, ``Succeeded``, ``Failed``, ``Canceled``) and ``runtimeStatus``
the Durable Functions one (``Pending``, ``Running``, ``Completed``, ...), so clients written for
either keep working. ``?wait=N`` answers as soon as the operation changes (status, progress in
the custom status, or its end): commits in the same process wake it at once, commits by another
process are seen by re-reading with back-off; a client that hangs up ends the wait. Bad input (malformed JSON, a wrong content type, an oversized body, an
invalid id) gets a 4xx ``application/problem+json`` answer (RFC 9457) and writes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import math
import re
from contextlib import asynccontextmanager
from datetime import datetime
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Optional,
    Sequence,
    Union,
)
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import (
    OrchestrationAlreadyExistsError,
    OrchestrationNotFoundError,
    PayloadError,
)
from .registry import name_of
from .status import OrchestrationState, OrchestrationStatus

__all__ = [
    "OperationsAPI",
    "APIKeyAuth",
    "ProblemError",
    "BodySizeLimitMiddleware",
    "problem_response",
    "install_problem_handlers",
    "runtime_lifespan",
    "client_lifespan",
    "lro_status",
    "runtime_status_name",
    "is_valid_instance_id",
    "PROBLEM_MEDIA_TYPE",
    "INSTANCE_ID_PATTERN",
    "ID_SCHEMA",
    "read_json_body",
    "base_url",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM_TYPE_BASE = "urn:durable-core:problem:"

#: Instance ids accepted from HTTP clients: 1-128 characters of a URL-safe alphabet (``:`` is
#: allowed because sub-orchestration ids are ``parent:000n``). Anything else is a 400.
INSTANCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}$"
_ID_RE = re.compile(INSTANCE_ID_PATTERN[1:-1] + r"\Z")
#: OpenAPI description of an operation id (documented, checked by the handlers: 400 when bad).
ID_SCHEMA: dict[str, Any] = {"pattern": INSTANCE_ID_PATTERN, "maxLength": 128, "minLength": 1}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}\Z")
_EVENT_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}\Z")

_LRO_STATUS = {
    OrchestrationStatus.PENDING: "NotStarted",
    OrchestrationStatus.RUNNING: "Running",
    OrchestrationStatus.CONTINUED_AS_NEW: "Running",
    OrchestrationStatus.SUSPENDED: "Running",
    OrchestrationStatus.COMPLETED: "Succeeded",
    OrchestrationStatus.FAILED: "Failed",
    OrchestrationStatus.TERMINATED: "Canceled",
    OrchestrationStatus.CANCELED: "Canceled",
}
_DF_STATUS = {
    OrchestrationStatus.PENDING: "Pending",
    OrchestrationStatus.RUNNING: "Running",
    OrchestrationStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
    OrchestrationStatus.SUSPENDED: "Suspended",
    OrchestrationStatus.COMPLETED: "Completed",
    OrchestrationStatus.FAILED: "Failed",
    OrchestrationStatus.TERMINATED: "Terminated",
    OrchestrationStatus.CANCELED: "Canceled",
}
_TERMINAL = frozenset(
    {
        OrchestrationStatus.COMPLETED,
        OrchestrationStatus.FAILED,
        OrchestrationStatus.TERMINATED,
        OrchestrationStatus.CANCELED,
    }
)


def lro_status(status: OrchestrationStatus) -> str:
    """The long-running-operation vocabulary: NotStarted, Running, Succeeded, Failed, Canceled."""
    return _LRO_STATUS[OrchestrationStatus(status)]


def runtime_status_name(status: OrchestrationStatus) -> str:
    """The Durable Functions ``runtimeStatus`` spelling (Pending, Running, Completed, ...)."""
    return _DF_STATUS[OrchestrationStatus(status)]


def base_url(request: Request) -> str:
    """``scheme://host[:port]/root_path`` of ``request``, without a trailing slash.

    A cheap stand-in for ``request.url_for`` when building absolute links in hot routes.
    """
    scope = request.scope
    host = None
    for k, v in scope.get("headers", ()):
        if k == b"host":
            host = v.decode("latin-1")
            break
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


def is_valid_instance_id(value: str) -> bool:
    """True if ``value`` is an operation id this API accepts from a client."""
    return bool(_ID_RE.match(value))


# --------------------------------------------------------------------------------------------
# RFC 9457 problem details
# --------------------------------------------------------------------------------------------


class ProblemError(StarletteHTTPException):
    """An HTTP error answered as an RFC 9457 ``application/problem+json`` document.

    ``slug`` becomes the problem ``type`` (``urn:durable-core:problem:<slug>``); ``extra``
    members are added to the document (the RFC's extension members). It is an
    ``HTTPException``, so an app without :func:`install_problem_handlers` still answers with
    its status code (FastAPI's plain ``{"detail": ...}`` body).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: Optional[str] = None,
        *,
        slug: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, detail or title, dict(headers or {}) or None)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = dict(headers or {})
        self.extra = extra

    def to_response(self, instance: Optional[str] = None) -> Response:
        """The problem as a response."""
        return problem_response(
            self.status,
            self.title,
            self.detail,
            slug=self.slug,
            instance=instance,
            headers=self.headers,
            **self.extra,
        )


def problem_response(
    status: int,
    title: str,
    detail: Optional[str] = None,
    *,
    slug: Optional[str] = None,
    instance: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
    **extra: Any,
) -> Response:
    """Build an ``application/problem+json`` response (RFC 9457)."""
    body: dict[str, Any] = {
        "type": _PROBLEM_TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(
        _dumps(body), status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE
    )


_STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
}


def install_problem_handlers(app: FastAPI) -> None:
    """Make the app answer its own errors (404, 405, validation) as problem documents too.

    Without this the router's own routes still answer with problem documents; this extends the
    format to FastAPI's request validation (``422``) and Starlette's routing errors, and
    documents the 4xx answers of the OpenAPI document as ``application/problem+json``.
    Installing twice is harmless.
    """
    if getattr(app.state, "_durable_problem_handlers", False):
        return
    app.state._durable_problem_handlers = True

    async def _http_exc(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc, ProblemError):
            return exc.to_response(request.url.path)
        detail = exc.detail if isinstance(exc.detail, str) else None
        title = _STATUS_TITLES.get(exc.status_code, "HTTP error")
        return problem_response(
            exc.status_code,
            title,
            detail if detail != title else None,
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for e in exc.errors():
            errors.append(
                {
                    "loc": [str(p) for p in e.get("loc", ())],
                    "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", "")),
                }
            )
        return problem_response(
            422,
            "Request validation failed",
            "; ".join(f"{'.'.join(x['loc'])}: {x['msg']}" for x in errors) or None,
            slug="validation",
            instance=request.url.path,
            errors=errors,
        )

    async def _problem(request: Request, exc: ProblemError) -> Response:
        return exc.to_response(request.url.path)

    app.add_exception_handler(StarletteHTTPException, _http_exc)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(ProblemError, _problem)  # type: ignore[arg-type]

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        _document_problems(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}


def _document_problems(schema: dict[str, Any]) -> None:
    """Rewrite every documented 4xx answer as an RFC 9457 problem document."""
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    comps.setdefault("Problem", _PROBLEM_SCHEMA)
    ref = {"$ref": "#/components/schemas/Problem"}
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for code, resp in op["responses"].items():
                if str(code).startswith("4"):
                    resp["content"] = {PROBLEM_MEDIA_TYPE: {"schema": ref}}


class BodySizeLimitMiddleware:
    """ASGI middleware refusing request bodies larger than ``max_bytes`` with a 413 problem.

    It checks ``Content-Length`` up front and counts streamed (chunked) bodies as they arrive,
    so an oversized upload is cut off before the application buffers it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = 1 << 20) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        chunked = False
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    n = -1
                if n < 0 or n > limit:
                    resp = _too_large(limit) if n > limit else _bad_length()
                    await resp(scope, receive, send)
                    return
                # the server delivers exactly Content-Length bytes: nothing more to watch
                await self.app(scope, receive, send)
                return
            if k == b"transfer-encoding":
                chunked = True
        if not chunked:  # no Content-Length and not chunked: no body at all
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False
        rejected = False

        async def limited_receive() -> Message:
            # Past the limit: answer 413 at once and tell the app the client went away (an
            # exception here would be turned into a 400 by the app's body parsing).
            nonlocal seen, started, rejected
            if rejected:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    rejected = True
                    if not started:
                        started = True
                        await _too_large(limit)(scope, _no_receive, send)
                    return {"type": "http.disconnect"}
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 was the answer; drop what the app says after the "disconnect"
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, limited_receive, tracking_send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _too_large(limit: int) -> Response:
    return problem_response(
        413,
        "Request body too large",
        f"the body exceeds the limit of {limit} bytes",
        slug="body-too-large",
        max_bytes=limit,
    )


def _bad_length() -> Response:
    return problem_response(400, "Invalid Content-Length", slug="bad-request")


# --------------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------------


class APIKeyAuth:
    """A FastAPI dependency accepting requests that carry one of the given API keys.

    The key is read from the ``X-API-Key`` header (name configurable) or an
    ``Authorization: Bearer <key>`` header and compared in constant time. Without a valid key it
    raises a 401 problem with ``WWW-Authenticate``.
    """

    def __init__(self, keys: Union[str, Iterable[str]], *, header: str = "X-API-Key") -> None:
        ks = [keys] if isinstance(keys, str) else list(keys)
        if not ks or any(not k for k in ks):
            raise ValueError("APIKeyAuth needs at least one non-empty key")
        self._keys = [k.encode() for k in ks]
        self.header = header
        #: how the OpenAPI document describes this auth (OperationsAPI.install adds it)
        self.openapi_security: dict[str, Any] = {
            "schemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": header},
                "BearerKey": {"type": "http", "scheme": "bearer"},
            },
            "requirement": [{"ApiKeyHeader": []}, {"BearerKey": []}],
        }

    async def __call__(self, request: Request) -> None:
        got = request.headers.get(self.header)
        if got is None:
            auth = request.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                got = auth[7:].strip()
        if got is not None:
            g = got.encode("utf-8", "surrogateescape")
            ok = False
            for k in self._keys:
                ok |= hmac.compare_digest(g, k)
            if ok:
                return
        raise ProblemError(
            401,
            "Unauthorized",
            f"this route needs an API key ({self.header} header or Authorization: Bearer)",
            slug="unauthorized",
            headers={"WWW-Authenticate": f'Bearer realm="operations", header="{self.header}"'},
        )


async def _management_disabled() -> None:
    raise ProblemError(
        403,
        "Management is disabled",
        "management routes need an auth dependency (OperationsAPI(management_auth=...)); "
        "pass allow_unauthenticated_management=True to opt out explicitly",
        slug="management-disabled",
    )


async def _no_auth() -> None:
    return None


# --------------------------------------------------------------------------------------------
# Lifespans
# --------------------------------------------------------------------------------------------

LifespanFactory = Callable[[FastAPI], Any]


def runtime_lifespan(
    url: str = "sqlite:///durable.db",
    *,
    registry: Any = None,
    converter: Any = None,
    stop_grace: float = 10.0,
    worker_thread: bool = False,
    **runtime_options: Any,
) -> LifespanFactory:
    """A FastAPI ``lifespan`` that runs a :class:`durable_core.Runtime` (worker + client)
    on the server's event loop, and publishes ``app.state.durable_runtime`` and
    ``app.state.durable_client`` (the runtime's ``AsyncClient``) for the routes.

    At shutdown running activities get ``stop_grace`` seconds to finish; what is cut off is
    retried by the next worker (activities are at-least-once). ``worker_thread=True`` runs the
    worker on its own thread and event loop instead of the server's, so a batch of replays
    never holds up HTTP answers for longer than the interpreter's switch interval.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from .runtime import Runtime

        kwargs: dict[str, Any] = dict(runtime_options)
        if registry is not None:
            kwargs["registry"] = registry
        if converter is not None:
            kwargs["converter"] = converter
        rt = Runtime(url, **kwargs)
        if worker_thread:
            await asyncio.get_running_loop().run_in_executor(None, rt.start)
        else:
            await rt.astart()
        app.state.durable_runtime = rt
        app.state.durable_client = rt.async_client
        try:
            yield
        finally:
            if worker_thread:
                await asyncio.get_running_loop().run_in_executor(None, rt.stop, stop_grace)
            else:
                await rt.astop(stop_grace)

    return lifespan


def client_lifespan(url: str = "sqlite:///durable.db", *, converter: Any = None) -> LifespanFactory:
    """A FastAPI ``lifespan`` for a client-only process: an :class:`AsyncClient` on the store
    that a separate worker process (``worker.py``) executes. Publishes ``app.state.durable_client``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from .client import AsyncClient

        client = AsyncClient(url) if converter is None else AsyncClient(url, converter=converter)
        app.state.durable_client = client
        try:
            yield
        finally:
            await _maybe_await(client.close())

    return lifespan


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


# --------------------------------------------------------------------------------------------
# JSON encoding and decoding
# --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    return repr(obj)


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        ).encode("utf-8")
    except ValueError:
        # NaN / Infinity from a user payload: encode them as strings rather than fail the read.
        return json.dumps(
            _sanitize_floats(value), separators=(",", ":"), ensure_ascii=False, default=_json_default
        ).encode("utf-8")


def _sanitize_floats(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _sanitize_floats(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_sanitize_floats(x) for x in v]
    return v


def _iso(dt: Optional[datetime]) -> Optional[str]:
    if dt is None:
        return None
    s = dt.isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


_JSON_TYPES = ("application/json",)


async def read_json_body(request: Request, *, max_bytes: int, required: bool = False) -> Any:
    """Read and parse a JSON request body, enforcing the content type and the size limit.

    An empty body means ``None`` (no input) unless ``required``. Raises :class:`ProblemError`
    (413 too large, 415 wrong content type, 400 malformed JSON) -- before anything is written.
    """
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise ProblemError(400, "Invalid Content-Length", slug="bad-request") from None
        if n > max_bytes:
            raise ProblemError(
                413,
                "Request body too large",
                f"the body exceeds the limit of {max_bytes} bytes",
                slug="body-too-large",
                max_bytes=max_bytes,
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ProblemError(
                413,
                "Request body too large",
                f"the body exceeds the limit of {max_bytes} bytes",
                slug="body-too-large",
                max_bytes=max_bytes,
            )
        if chunk:
            chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if required:
            raise ProblemError(400, "A JSON body is required", slug="invalid-json")
        return None
    ctype = request.headers.get("content-type", "")
    base = ctype.split(";", 1)[0].strip().lower()
    if base not in _JSON_TYPES and not (base.startswith("application/") and base.endswith("+json")):
        raise ProblemError(
            415,
            "Unsupported Media Type",
            f"the body must be application/json, not {ctype or 'unspecified'!r}",
            slug="unsupported-media-type",
        )
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ProblemError(400, "Malformed JSON body", str(e)[:200], slug="invalid-json") from None


# --------------------------------------------------------------------------------------------
# The operations API
# --------------------------------------------------------------------------------------------

OrchestratorRef = Union[str, Callable[..., Any]]


class OperationsAPI:
    """Exposes orchestrations as long-running operations on a FastAPI app.

    Parameters
    ----------
    client:
        An :class:`~durable_core.AsyncClient` (or a zero-argument callable returning one). When
        omitted, each request uses ``request.app.state.durable_client``, which
        :func:`runtime_lifespan` / :func:`client_lifespan` set.
    orchestrators:
        Names or functions that the generic start route may start. ``None`` allows every
        orchestrator in ``registry`` (the default registry when that is ``None``) at request
        time -- everything the process registered becomes startable over HTTP, so list them
        when the process registers more than it means to expose. An unknown name is a 404
        and starts nothing.
    prefix:
        Path prefix of the generic routes (default ``/operations``).
    management_auth:
        A FastAPI dependency guarding the management routes (raise event, terminate, suspend,
        resume, restart, purge), e.g. :class:`APIKeyAuth`. Without one those routes answer
        403 unless ``allow_unauthenticated_management=True`` opts out explicitly.
    durable_functions_compat:
        The status monitor answers a non-terminal operation with ``202`` + ``Location`` (as
        Durable Functions does) instead of the guideline's ``200``.
    redirect_to_result:
        The status monitor answers a finished operation with ``303 See Other`` to the result.
    retry_after:
        Seconds put in ``Retry-After`` while an operation is not finished.
    max_body_bytes:
        Largest accepted start / event body (413 beyond it).
    max_wait:
        Upper bound (seconds) of a ``?wait=N`` long-poll; larger values are clamped.
    include_stack_traces:
        Put failure stack traces in status documents (off by default: they may leak internals).
    dependencies:
        Extra FastAPI dependencies applied to every route (e.g. auth for everything).
    """

    def __init__(
        self,
        client: Any = None,
        *,
        orchestrators: Optional[Iterable[OrchestratorRef]] = None,
        registry: Any = None,
        prefix: str = "/operations",
        management_auth: Optional[Callable[..., Any]] = None,
        allow_unauthenticated_management: bool = False,
        durable_functions_compat: bool = False,
        redirect_to_result: bool = False,
        retry_after: int = 1,
        max_body_bytes: int = 1 << 20,
        max_wait: float = 60.0,
        include_stack_traces: bool = False,
        dependencies: Optional[Sequence[Any]] = None,
        name: str = "durable",
        tags: Optional[list[str]] = None,
    ) -> None:
        if management_auth is not None and allow_unauthenticated_management:
            raise ValueError("pass management_auth or allow_unauthenticated_management, not both")
        if retry_after < 0 or max_body_bytes < 0 or max_wait < 0:
            raise ValueError("retry_after, max_body_bytes and max_wait must be >= 0")
        self._client = client
        self._allowed: Optional[frozenset[str]] = (
            None if orchestrators is None else frozenset(name_of(o) for o in orchestrators)
        )
        self._registry = registry
        self.prefix = prefix.rstrip("/")
        self.durable_functions_compat = durable_functions_compat
        self.redirect_to_result = redirect_to_result
        self.retry_after = int(retry_after)
        self.max_body_bytes = int(max_body_bytes)
        self.max_wait = float(max_wait)
        self.include_stack_traces = include_stack_traces
        self.name = name
        if management_auth is not None:
            self._mgmt_dep: Callable[..., Any] = management_auth
        elif allow_unauthenticated_management:
            self._mgmt_dep = _no_auth
        else:
            self._mgmt_dep = _management_disabled
        self.router = APIRouter(dependencies=list(dependencies or ()), tags=tags or ["operations"])
        security = getattr(management_auth, "openapi_security", None)
        self._security: Optional[dict[str, Any]] = security if isinstance(security, dict) else None
        self._installed: list[tuple[FastAPI, bool]] = []
        self._add_routes()

    # -- wiring ------------------------------------------------------------------------------

    def install(self, app: FastAPI) -> FastAPI:
        """Include the router in ``app`` and install the problem-document error handlers
        (and the management auth's security schemes in the OpenAPI document)."""
        app.include_router(self.router)
        # Older FastAPI copies a router's routes into the app; newer ones include it by
        # reference. Remember which, so a later bind() reaches the app either way.
        status_path = f"{self.prefix}/instances/{{instance_id}}"
        copied = any(getattr(r, "path", None) == status_path for r in app.routes)
        self._installed.append((app, copied))
        install_problem_handlers(app)
        if self._security and self._security.get("schemes"):
            schemes = self._security["schemes"]
            original = app.openapi

            def openapi() -> dict[str, Any]:
                if app.openapi_schema:
                    return app.openapi_schema
                schema = original()
                comps = schema.setdefault("components", {})
                comps.setdefault("securitySchemes", {}).update(schemes)
                return schema

            app.openapi = openapi  # type: ignore[method-assign]
        return app

    def client_for(self, request: Request) -> Any:
        """The AsyncClient serving ``request``."""
        c = self._client
        if c is None:
            c = getattr(request.app.state, "durable_client", None)
            if c is None:
                raise ProblemError(
                    503,
                    "Service Unavailable",
                    "no durable client: start the app with runtime_lifespan/client_lifespan "
                    "or pass OperationsAPI(client=...)",
                    slug="no-client",
                )
            return c
        if callable(c) and not hasattr(c, "get_orchestration_state"):
            return c()
        return c

    def _orchestrator_allowed(self, name: str) -> bool:
        if self._allowed is not None:
            return name in self._allowed
        reg = self._registry
        if reg is None:
            from .registry import default_registry as reg  # type: ignore[no-redef]
        return reg.get_orchestrator(name) is not None

    # -- URLs --------------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return base_url(request)

    def urls(self, request: Request, instance_id: str) -> dict[str, str]:
        """The management URLs of an operation (absolute, as in Durable Functions)."""
        base = self._base(request) + self.prefix + "/instances/" + quote(instance_id, safe="")
        return {
            "statusQueryGetUri": base,
            "resultGetUri": base + "/result",
            "sendEventPostUri": base + "/raiseEvent/{eventName}",
            "terminatePostUri": base + "/terminate?reason={text}",
            "suspendPostUri": base + "/suspend?reason={text}",
            "resumePostUri": base + "/resume?reason={text}",
            "restartPostUri": base + "/restart",
            "purgeHistoryDeleteUri": base,
        }

    def status_url(self, request: Request, instance_id: str) -> str:
        """Absolute URL of the status monitor of ``instance_id``."""
        return self._base(request) + self.prefix + "/instances/" + quote(instance_id, safe="")

    # -- starting ----------------------------------------------------------------------------

    async def start(
        self,
        request: Request,
        orchestrator: OrchestratorRef,
        input: Any = None,
        *,
        instance_id: Optional[str] = None,
    ) -> Response:
        """Start ``orchestrator`` and answer ``202 Accepted`` with the operation's URLs.

        ``instance_id`` (or the request's ``Idempotency-Key`` / ``Repeatability-Request-ID``
        header) makes the start idempotent: if that operation exists with the same orchestrator
        and input, it is returned and nothing new starts; with a different orchestrator or input
        the answer is 409 (422 for a reused idempotency key).
        """
        name = name_of(orchestrator)
        client = self.client_for(request)
        key = request.headers.get("idempotency-key") or request.headers.get(
            "repeatability-request-id"
        )
        from_key = False
        if instance_id is None and key is not None:
            if not key or len(key) > 256:
                raise ProblemError(
                    400, "Invalid idempotency key", "1 to 256 characters", slug="invalid-key"
                )
            digest = hashlib.sha256(f"{name}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()
            instance_id = "idem-" + digest[:40]
            from_key = True
        if instance_id is not None and not is_valid_instance_id(instance_id):
            raise ProblemError(
                400,
                "Invalid operation id",
                "ids are 1-128 characters: letters, digits and . _ : @ -, "
                "starting with a letter or digit",
                slug="invalid-id",
            )
        created = True
        try:
            iid = await client.schedule_new_orchestration(name, input=input, instance_id=instance_id)
        except OrchestrationAlreadyExistsError:
            assert instance_id is not None
            iid = instance_id
            created = False
            state = await client.get_orchestration_state(iid)
            if state is not None and (state.name != name or not _same_input(state, input)):
                if from_key:
                    raise ProblemError(
                        422,
                        "Idempotency key reused",
                        "this key was used for a request with a different body",
                        slug="idempotency-key-reused",
                    ) from None
                raise ProblemError(
                    409,
                    "Operation id in use",
                    f"operation {iid!r} exists with a different orchestrator or input",
                    slug="id-conflict",
                ) from None
        except PayloadError as e:
            raise ProblemError(422, "Input not serializable", str(e)[:200], slug="payload") from None
        return self.accepted_response(request, iid, created=created)

    def accepted_response(
        self, request: Request, instance_id: str, *, created: bool = True, body: Any = None
    ) -> Response:
        """``202 Accepted`` with ``Location``/``Operation-Location``/``Retry-After`` and a body
        with ``id`` and the management URLs (or ``body`` instead, for custom shapes)."""
        urls = self.urls(request, instance_id)
        status_url = urls["statusQueryGetUri"]
        if body is None:
            body = {"id": instance_id, **urls}
        headers = {
            "Location": status_url,
            "Operation-Location": status_url,
            "Retry-After": str(self.retry_after),
        }
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return Response(_dumps(body), status_code=202, headers=headers, media_type="application/json")

    def bind(
        self,
        path: str,
        orchestrator: OrchestratorRef,
        *,
        summary: Optional[str] = None,
        input_model: Any = None,
        router: Optional[APIRouter] = None,
    ) -> None:
        """Add ``POST path`` that starts ``orchestrator`` with the JSON body as its input.

        ``input_model`` (a pydantic model class) validates the body (422 problem when it does
        not fit) and documents it in OpenAPI. The route goes to this API's router -- and to
        the apps it was already installed in -- or to ``router`` when given.
        """
        name = name_of(orchestrator)
        target = APIRouter()
        api = self

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
                value = await read_json_body(request, max_bytes=api.max_body_bytes)
                if input_model is not None:
                    value = _validate(input_model, value)
                return await api.start(request, name, value, instance_id=instance_id)
            except ProblemError as e:
                return e.to_response(request.url.path)

        extra: dict[str, Any] = {
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": schema}},
            }
        }
        target.add_api_route(
            path,
            start_bound,
            methods=["POST"],
            status_code=202,
            name=f"{self.name}.start.{name}.{path}",
            summary=summary or f"Start {name}",
            responses=_START_RESPONSES,
            openapi_extra=extra,
            response_class=Response,
        )
        if router is not None:
            router.include_router(target)
            return
        self.router.include_router(target)
        for app, copied in self._installed:
            if copied:  # this FastAPI copied our routes at include time: add the new one too
                app.include_router(target)
            app.openapi_schema = None

    # -- status ------------------------------------------------------------------------------

    def status_body(
        self,
        request: Request,
        state: OrchestrationState,
        *,
        history: Optional[list[dict[str, Any]]] = None,
    ) -> dict[str, Any]:
        """The status document of ``state``."""
        st = state.runtime_status
        body: dict[str, Any] = {
            "id": state.instance_id,
            "instanceId": state.instance_id,  # the Durable Functions spelling
            "name": state.name,
            "status": _LRO_STATUS[st],
            "runtimeStatus": _DF_STATUS[st],
            "createdTime": _iso(state.created_at),
            "lastUpdatedTime": _iso(state.last_updated_at),
            "customStatus": _decode_safely(state, "custom_status"),
        }
        if st == OrchestrationStatus.COMPLETED:
            out = _decode_safely(state, "output")
            body["result"] = out
            body["output"] = out
        elif st == OrchestrationStatus.FAILED:
            body["error"] = self._error(state)
            body["output"] = body["error"]["message"]
        elif st in (OrchestrationStatus.TERMINATED, OrchestrationStatus.CANCELED):
            reason = _decode_safely(state, "output")
            body["error"] = {"code": "Canceled", "message": _reason_text(reason)}
            body["output"] = reason
        if history is not None:
            body["historyEvents"] = history
        return body

    def _error(self, state: OrchestrationState) -> dict[str, Any]:
        d = state.failure_details
        if d is None:
            return {"code": "Failed", "message": "the operation failed"}
        err: dict[str, Any] = {"code": d.error_type or "Failed", "message": d.message}
        if self.include_stack_traces and d.stack_trace:
            err["stackTrace"] = d.stack_trace
        return err

    async def _wait_for_change(
        self, client: Any, state: OrchestrationState, timeout: float
    ) -> Optional[OrchestrationState]:
        """Wait up to ``timeout`` seconds for ``state`` to change; the new state, or None.

        With a store that signals changes (the runtime's in-process notifier) the wait is woken
        by the commit itself; changes committed by another process (a separate worker) are seen
        by re-reading the instance with back-off (5 ms growing to 250 ms), never a busy loop.
        A client without a notifier falls back on ``wait_for_orchestration_start`` /
        ``wait_for_orchestration_completion``.
        """
        if timeout <= 0:
            return None
        return await client.wait_for_orchestration_change(
            state.instance_id, since=state, timeout=timeout)

    async def _history(self, client: Any, instance_id: str) -> list[dict[str, Any]]:
        events = await client.get_orchestration_history(instance_id)
        conv = getattr(client, "converter", None)
        return [_event_json(e, conv) for e in events]

    async def status(
        self,
        request: Request,
        instance_id: str,
        *,
        wait: Optional[float] = None,
        show_history: bool = False,
    ) -> Response:
        """Answer the status monitor for ``instance_id`` (see the module doc)."""
        _check_id(instance_id)
        client = self.client_for(request)
        state = await client.get_orchestration_state(instance_id)
        if state is None:
            raise _not_found(instance_id)
        if wait and state.runtime_status not in _TERMINAL:
            waiter = asyncio.ensure_future(
                self._wait_for_change(client, state, min(float(wait), self.max_wait))
            )
            gone = asyncio.ensure_future(_client_gone(request))
            try:
                await asyncio.wait((waiter, gone), return_when=asyncio.FIRST_COMPLETED)
            finally:
                pending = [t for t in (waiter, gone) if not t.done()]
                for t in pending:
                    t.cancel()
                # let the cancelled wait unregister from the store's notifier before answering
                await asyncio.gather(*pending, return_exceptions=True)
            if not waiter.done() or waiter.cancelled():
                # the client hung up: stop waiting (nobody reads this answer)
                return Response(b"", status_code=499)
            new = waiter.result()
            if new is not None:
                state = new
            else:
                state = await client.get_orchestration_state(instance_id) or state
        history = await self._history(client, instance_id) if show_history else None
        body = self.status_body(request, state, history=history)
        url = self.status_url(request, instance_id)
        terminal = state.runtime_status in _TERMINAL
        headers: dict[str, str] = {}
        if terminal:
            if self.redirect_to_result:
                headers["Location"] = url + "/result"
                return Response(_dumps(body), 303, headers=headers, media_type="application/json")
            return Response(_dumps(body), 200, media_type="application/json")
        headers["Retry-After"] = str(self.retry_after)
        if self.durable_functions_compat:
            headers["Location"] = url
            return Response(_dumps(body), 202, headers=headers, media_type="application/json")
        return Response(_dumps(body), 200, headers=headers, media_type="application/json")

    async def result(self, request: Request, instance_id: str) -> Response:
        """Answer the result resource: the output (200), 202 while running, 409 if it failed."""
        _check_id(instance_id)
        client = self.client_for(request)
        state = await client.get_orchestration_state(instance_id)
        if state is None:
            raise _not_found(instance_id)
        st = state.runtime_status
        if st == OrchestrationStatus.COMPLETED:
            return Response(
                _dumps(_decode_safely(state, "output")), 200, media_type="application/json"
            )
        url = self.status_url(request, instance_id)
        if st not in _TERMINAL:
            return Response(
                _dumps(self.status_body(request, state)),
                202,
                headers={"Location": url, "Retry-After": str(self.retry_after)},
                media_type="application/json",
            )
        body = self.status_body(request, state)
        raise ProblemError(
            409,
            "The operation did not succeed",
            f"operation {instance_id!r} ended {body['runtimeStatus']}: {body['error']['message']}",
            slug="operation-failed" if st == OrchestrationStatus.FAILED else "operation-canceled",
            headers={"Link": f'<{url}>; rel="monitor"'},
            operationStatus=body["status"],
            error=body["error"],
        )

    # -- routes ------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        api = self
        p = self.prefix
        r = self.router
        mgmt = [Depends(self._mgmt_dep)]
        n = self.name

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

        start_extra = {
            "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}}
        }
        r.add_api_route(
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
        r.add_api_route(
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

        r.add_api_route(
            f"{p}/instances/{{instance_id}}",
            get_status,
            methods=["GET"],
            name=f"{n}.status",
            summary="Status monitor of an operation",
            responses=_STATUS_RESPONSES,
            response_class=Response,
        )

        async def get_result(request: Request, instance_id: str = _ID_PATH) -> Response:
            try:
                return await api.result(request, instance_id)
            except ProblemError as e:
                return e.to_response(request.url.path)

        r.add_api_route(
            f"{p}/instances/{{instance_id}}/result",
            get_result,
            methods=["GET"],
            name=f"{n}.result",
            summary="The result of a finished operation",
            responses=_RESULT_RESPONSES,
            response_class=Response,
        )

        # -- management ------------------------------------------------------------------

        async def raise_event(request: Request, instance_id: str = _ID_PATH, event_name: str = _EVENT_PATH) -> Response:
            try:
                _check_id(instance_id)
                if not _EVENT_RE.match(event_name):
                    raise ProblemError(400, "Invalid event name", slug="invalid-event-name")
                data = await read_json_body(request, max_bytes=api.max_body_bytes)
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

        def _simple(action: str) -> Callable[..., Awaitable[Response]]:
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

        async def purge(request: Request, instance_id: str = _ID_PATH) -> Response:
            try:
                _check_id(instance_id)
                client = api.client_for(request)
                state = await client.get_orchestration_state(instance_id, fetch_payloads=False)
                if state is None:
                    raise _not_found(instance_id)
                if state.runtime_status not in _TERMINAL:
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

        mgmt_resp = _MGMT_RESPONSES
        sec: dict[str, Any] = (
            {"security": self._security["requirement"]}
            if self._security and self._security.get("requirement")
            else {}
        )
        r.add_api_route(
            f"{p}/instances/{{instance_id}}/raiseEvent/{{event_name}}",
            raise_event,
            methods=["POST"],
            status_code=202,
            dependencies=mgmt,
            name=f"{n}.raise_event",
            summary="Raise an external event (JSON body = event data)",
            responses=mgmt_resp,
            openapi_extra={**start_extra, **sec},
            response_class=Response,
        )
        for action in ("terminate", "suspend", "resume"):
            r.add_api_route(
                f"{p}/instances/{{instance_id}}/{action}",
                _simple(action),
                methods=["POST"],
                status_code=202,
                dependencies=mgmt,
                name=f"{n}.{action}",
                summary=f"{action.capitalize()} an operation",
                responses=mgmt_resp,
                openapi_extra=sec or None,
                response_class=Response,
            )
        r.add_api_route(
            f"{p}/instances/{{instance_id}}/restart",
            restart,
            methods=["POST"],
            status_code=202,
            dependencies=mgmt,
            name=f"{n}.restart",
            summary="Restart a finished operation with its original input",
            responses=mgmt_resp,
            openapi_extra=sec or None,
            response_class=Response,
        )
        r.add_api_route(
            f"{p}/instances/{{instance_id}}",
            purge,
            methods=["DELETE"],
            dependencies=mgmt,
            name=f"{n}.purge",
            summary="Purge a finished operation's history",
            responses=mgmt_resp,
            openapi_extra=sec or None,
            response_class=Response,
        )

    async def _start_generic(
        self, request: Request, name: str, instance_id: Optional[str]
    ) -> Response:
        if not _NAME_RE.match(name) or not self._orchestrator_allowed(name):
            raise ProblemError(
                404, "Unknown orchestrator", f"no orchestrator {name!r} is exposed here",
                slug="unknown-orchestrator",
            )
        if instance_id is not None:
            _check_id(instance_id)
        value = await read_json_body(request, max_bytes=self.max_body_bytes)
        return await self.start(request, name, value, instance_id=instance_id)


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


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (a GET's receive channel only says that)."""
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


def _state_key(st: OrchestrationState) -> tuple[Any, ...]:
    return (st.runtime_status, st.last_updated_at, st.serialized_custom_status)


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


_WATCH_POLL_MIN = 0.005
_WATCH_POLL_MAX = 0.25


async def _watch(
    client: Any, notifier: Any, state: OrchestrationState, timeout: float
) -> Optional[OrchestrationState]:
    """Return the instance's state once it differs from ``state`` (or at the deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    iid = state.instance_id
    before = _state_key(state)
    box: list[Optional[asyncio.Future[None]]] = [None]

    def wake() -> None:  # may run on another thread (the store's committer)
        f = box[0]
        if f is not None:
            try:
                loop.call_soon_threadsafe(_set_done, f)
            except RuntimeError:  # pragma: no cover - loop closed
                pass

    notifier.add_waiter(iid, wake)
    try:
        poll = _WATCH_POLL_MIN
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            box[0] = fut  # armed before the read: a commit after it wakes us
            new = await client.get_orchestration_state(iid)
            if new is None or _state_key(new) != before:
                return new
            remaining = deadline - loop.time()
            if remaining <= 0:
                return new
            timer = loop.call_later(min(poll, remaining), _set_done, fut)
            await fut
            woken = loop.time() < timer.when()
            timer.cancel()
            poll = _WATCH_POLL_MIN if woken else min(poll * 2, _WATCH_POLL_MAX)
    finally:
        box[0] = None
        notifier.remove_waiter(iid, wake)


def _accepted_empty(status_url: str) -> Response:
    return Response(
        b"", status_code=202, headers={"Location": status_url, "Operation-Location": status_url}
    )


def _check_id(instance_id: str) -> None:
    if not is_valid_instance_id(instance_id):
        raise ProblemError(
            400,
            "Invalid operation id",
            "ids are 1-128 characters: letters, digits and . _ : @ -",
            slug="invalid-id",
        )


def _not_found(instance_id: str) -> ProblemError:
    return ProblemError(
        404, "Operation not found", f"no operation {instance_id!r}", slug="not-found"
    )


def _validate(model: Any, value: Any) -> Any:
    from pydantic import ValidationError

    try:
        obj = model.model_validate(value if value is not None else {})
    except ValidationError as e:
        errors = [
            {"loc": [str(p) for p in x.get("loc", ())], "msg": str(x.get("msg", ""))}
            for x in e.errors()
        ]
        raise ProblemError(
            422,
            "Invalid input",
            "; ".join(f"{'.'.join(x['loc']) or 'body'}: {x['msg']}" for x in errors),
            slug="validation",
            errors=errors,
        ) from None
    return obj.model_dump(mode="json")


def _same_input(state: OrchestrationState, value: Any) -> bool:
    try:
        return bool(state.input == value)
    except Exception:  # undecodable stored input: not the same request
        return False


def _decode_safely(state: OrchestrationState, attr: str) -> Any:
    try:
        return getattr(state, attr)
    except Exception:
        raw = getattr(state, "serialized_" + attr, None)
        if raw is None:
            return None
        return {"$undecodable": base64.b64encode(raw).decode("ascii")}


def _reason_text(reason: Any) -> str:
    if reason is None:
        return "the operation was canceled"
    return reason if isinstance(reason, str) else json.dumps(reason, default=_json_default)


def _event_json(ev: Any, converter: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"eventType": type(ev).__name__}
    fields = getattr(ev, "_fields", ())
    for f in fields:
        v = getattr(ev, f)
        if f == "timestamp" or f in ("fire_at", "scheduled_start_time"):
            if isinstance(v, int):
                from .history import to_datetime

                v = _iso(to_datetime(v))
        elif isinstance(v, (bytes, bytearray)):
            v = _decode_payload(bytes(v), converter)
        elif hasattr(v, "_asdict"):
            v = {k: x for k, x in v._asdict().items()}
        d[_camel(f)] = v
    return d


def _decode_payload(data: bytes, converter: Any) -> Any:
    try:
        if converter is None:
            from .converter import default_converter

            converter = default_converter()
        return converter.deserialize(data)
    except Exception:
        return {"$undecodable": base64.b64encode(data).decode("ascii")}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
