"""The operations router: orchestrations as long-running operations (start, status monitor,
result, management), and the custom start paths that :meth:`OperationsAPI.bind` adds.

:class:`OperationsAPI` holds the configuration and what the routes do (start, status, result);
the route table -- the endpoint functions and their OpenAPI description -- is in ``routes``,
the status document in ``documents``, the ``?wait=N`` long-poll in ``longpoll``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from ..errors import OrchestrationAlreadyExistsError, PayloadError
from ..registry import name_of
from ..status import TERMINAL_STATUSES, OrchestrationState, OrchestrationStatus
from .auth import _management_disabled, _no_auth
from .bodies import parse_json_body, read_body, validate_input
from .documents import (
    _NAME_RE,
    _check_id,
    _not_found,
    base_url,
    error_document,
    history_document,
    is_valid_instance_id,
    safe_payload,
    status_document,
)
from .encoding import dumps as _dumps
from .longpoll import ClientGone, wait_for_change, wait_while_listening
from .problems import ProblemError, install_problem_handlers
from .routes import add_head_routes, add_routes, bound_start_router

# helpers that lived here before the route table and the long-poll got modules of their own
from .longpoll import _client_gone  # noqa: F401
from .routes import _accepted_empty, _headless  # noqa: F401

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["OperationsAPI", "OrchestratorRef", "add_head_routes"]

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
    input_models:
        Pydantic models validating the input of orchestrators (by name or function) on every
        route that starts them; :meth:`bind` with ``input_model`` adds to it.
    metrics:
        Serve ``GET {prefix}/metrics``, a Prometheus scrape endpoint behind the management auth
        (501 when ``prometheus_client`` is not installed); ``False`` leaves the route out.
    metrics_registry:
        The ``prometheus_client`` ``CollectorRegistry`` it serves; ``None`` is the library's
        default ``REGISTRY``, where OpenTelemetry's ``PrometheusMetricReader`` registers itself.
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
        input_models: Optional[Mapping[OrchestratorRef, Any]] = None,
        name: str = "durable",
        tags: Optional[list[str]] = None,
        metrics: bool = True,
        metrics_registry: Optional["CollectorRegistry"] = None,
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
        self._input_models: dict[str, list[Any]] = {}
        for orch, model in (input_models or {}).items():
            self._input_models.setdefault(name_of(orch), []).append(model)
        self.prefix = prefix.rstrip("/")
        self.durable_functions_compat = durable_functions_compat
        self.redirect_to_result = redirect_to_result
        self.retry_after = int(retry_after)
        self.max_body_bytes = int(max_body_bytes)
        self.max_wait = float(max_wait)
        self.include_stack_traces = include_stack_traces
        self.name = name
        self.metrics, self.metrics_registry = metrics, metrics_registry
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
            from ..registry import default_registry as reg  # type: ignore[no-redef]
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
        key = request.headers.get("idempotency-key")
        if key is None:
            key = request.headers.get("repeatability-request-id")
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
        if input_model is not None:
            models = self._input_models.setdefault(name, [])
            if input_model not in models:
                models.append(input_model)
        target = bound_start_router(self, path, name, summary=summary, input_model=input_model)
        if router is not None:
            router.include_router(target)
            return
        self.router.include_router(target)
        for app, copied in self._installed:
            if copied:  # this FastAPI copied our routes at include time: add the new one too
                app.include_router(target)
            app.openapi_schema = None

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
        raw = await read_body(request, max_bytes=self.max_body_bytes)
        value = self.validate_start_input(name, parse_json_body(request, raw), raw=raw)
        return await self.start(request, name, value, instance_id=instance_id)

    def validate_start_input(self, name: str, value: Any, *, raw: Optional[bytes] = None) -> Any:
        """Check a start's input against the input models of orchestrator ``name`` (from
        ``bind(..., input_model=...)`` or ``input_models=``); returns the validated input.

        Every route that starts ``name`` goes through this, so the generic
        ``{prefix}/orchestrators/{name}`` route cannot bypass the model a bound path enforces.
        With several models the input must fit one of them (the first that fits is used); when
        none fits, the 422 lists the first model's errors. Without a model ``value`` is
        returned as it is.
        """
        models = self._input_models.get(name)
        if not models:
            return value
        first: Optional[ProblemError] = None
        for model in models:
            try:
                return validate_input(model, value, raw=raw)
            except ProblemError as e:
                first = first or e
        assert first is not None
        raise first

    # -- status ------------------------------------------------------------------------------

    def status_body(
        self,
        request: Request,
        state: OrchestrationState,
        *,
        history: Optional[dict[str, Any]] = None,
    ) -> dict[str, Any]:
        """The status document of ``state``."""
        return status_document(
            state, include_stack_traces=self.include_stack_traces, history=history
        )

    def _error(self, state: OrchestrationState) -> dict[str, Any]:
        return error_document(state, include_stack_traces=self.include_stack_traces)

    async def _wait_for_change(
        self, client: Any, state: OrchestrationState, timeout: float
    ) -> Optional[OrchestrationState]:
        """Wait up to ``timeout`` seconds for ``state`` to change; the state read last (the
        changed one, or the unchanged one at the deadline), ``None`` if the instance is gone
        (see :func:`.longpoll.wait_for_change`)."""
        return await wait_for_change(client, state, timeout)

    async def _history(self, client: Any, instance_id: str) -> dict[str, Any]:
        """``historyEvents`` for the status document (see :func:`.documents.history_document`)."""
        return await history_document(client, instance_id)

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
        if wait and state.runtime_status not in TERMINAL_STATUSES:
            try:
                new = await wait_while_listening(
                    request, self._wait_for_change(client, state, min(float(wait), self.max_wait))
                )
            except ClientGone:
                # the client hung up: stop waiting (nobody reads this answer)
                return Response(b"", status_code=499)
            if new is None:  # purged while we waited
                raise _not_found(instance_id)
            state = new
        history = await self._history(client, instance_id) if show_history else None
        body = self.status_body(request, state, history=history)
        url = self.status_url(request, instance_id)
        terminal = state.runtime_status in TERMINAL_STATUSES
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
                _dumps(safe_payload(state, "output")), 200, media_type="application/json"
            )
        url = self.status_url(request, instance_id)
        if st not in TERMINAL_STATUSES:
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
        add_routes(self)


def _same_input(state: OrchestrationState, value: Any) -> bool:
    try:
        return bool(state.input == value)
    except Exception:  # undecodable stored input: not the same request
        return False
