"""The dashboard's JSON API and the app that serves it with the page.

Routes (relative to where the dashboard is mounted):

==========================================  ==================================================
``GET  /``                                  the page (``static/index.html``)
``GET  /api/config``                        title, whether actions are enabled
``GET  /api/instances``                     a page of instances + counts by status (filters:
                                            ``status`` (repeatable), ``name``, ``prefix``,
                                            ``createdFrom``, ``createdTo``, ``pageSize``,
                                            ``token``)
``GET  /api/instances/{id}``                state, payloads, failure, parent, children
``GET  /api/instances/{id}/timeline``       the history as spans
``GET  /api/instances/{id}/history``        events ``offset`` .. ``offset+limit`` (``full=1``:
                                            payloads not truncated)
``GET  /api/instances/{id}/watch``          long-poll: answers when the instance changes
``POST /api/watch``                         long-poll over several instances (the list)
``POST /api/instances/{id}/{action}``       terminate, suspend, resume, restart, raise-event,
                                            purge -- behind the dashboard's auth
==========================================  ==================================================

Every payload is sent as text to show (``{"text": ...}``), or as ``{"error": ..., "raw":
...}`` when it cannot be decoded; a history that cannot be decoded gives an ``error`` beside
an empty list. Nothing here raises a 500 for poisoned data.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...cli import views
from ...errors import (
    HistoryCorruptError,
    OrchestrationAlreadyExistsError,
    OrchestrationNotFoundError,
    PayloadError,
)
from ...history import utc_now_us
from ...status import TERMINAL_STATUSES, OrchestrationState, OrchestrationStatus
from ..bodies import read_json_body
from ..documents import _EVENT_RE, is_valid_instance_id
from ..encoding import dumps
from ..longpoll import ClientGone, wait_while_listening
from ..routes import add_head_routes
from ..problems import ProblemError, install_problem_handlers

__all__ = ["DashboardConfig", "build_app", "OUTER_APP_KEY"]

#: the scope key under which the app the dashboard is mounted in is passed along
OUTER_APP_KEY = "durable_core.outer_app"

#: characters of a payload sent in lists and history pages (the rest on request)
PAGE_PAYLOAD_LIMIT = 4096
#: characters of a payload sent on the instance page
STATE_PAYLOAD_LIMIT = 256 * 1024
SUMMARY_LIMIT = 160
MAX_WATCHED = 200

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


@dataclass
class DashboardConfig:
    """What :func:`~durable_core.fastapi.dashboard` was asked for."""

    client: Any
    auth: Optional[Callable[..., Any]]
    actions: bool
    title: str
    max_body_bytes: int
    static_dir: Path


class _SecurityHeaders:
    """Adds the CSP and friends to every answer of the dashboard."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = [h for h in msg.get("headers", []) if h[0] not in dict(_SECURITY_HEADERS)]
                msg = {**msg, "headers": headers + _SECURITY_HEADERS}
            await send(msg)

        await self.app(scope, receive, send_with_headers)


# -- helpers -----------------------------------------------------------------------------------


def _json(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def version_of(state: OrchestrationState) -> str:
    """What a watcher compares: status, last update, custom status (as the client does)."""
    us = int(state.last_updated_at.timestamp() * 1_000_000)
    crc = zlib.crc32(state.serialized_custom_status or b"")
    return f"{int(state.runtime_status)}.{us}.{crc:08x}"


def payload_view(value: Any, limit: int = 0) -> Optional[dict[str, Any]]:
    """A decoded payload as text to show; ``error`` + ``raw`` (base64) when undecodable."""
    if value is None:
        return None
    if isinstance(value, dict) and views.UNDECODABLE in value:
        raw = str(value[views.UNDECODABLE])
        return {"error": str(value.get("error") or "cannot be decoded"),
                "raw": raw[:limit] if limit else raw, "truncated": bool(limit and len(raw) > limit)}
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    if limit and len(text) > limit:
        return {"text": text[:limit], "truncated": True, "size": len(text)}
    return {"text": text}


def _summary(state: OrchestrationState) -> dict[str, Any]:
    text = views.summary_text(state)
    return {
        "instanceId": state.instance_id,
        "name": state.name,
        "runtimeStatus": views.status_name(state.runtime_status),
        "createdAt": views.iso(state.created_at),
        "lastUpdatedAt": views.iso(state.last_updated_at),
        "parentInstanceId": state.parent_instance_id,
        "summary": text[:SUMMARY_LIMIT] + ("…" if len(text) > SUMMARY_LIMIT else ""),
        "version": version_of(state),
        "terminal": state.runtime_status in TERMINAL_STATUSES,
    }


def _event_view(ev: Any, seq: int, limit: int) -> dict[str, Any]:
    rec = views.event_record(ev, seq=seq)
    payloads = []
    for f in getattr(ev, "_fields", ()):
        if isinstance(getattr(ev, f), (bytes, bytearray)):
            key = _camel(f)
            rec[key] = payload_view(rec[key], limit)
            payloads.append(key)
    rec["payloads"] = payloads
    return rec


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _parse_time(text: Optional[str], what: str) -> Optional[datetime]:
    if not text:
        return None
    t = text.strip()
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise ProblemError(400, "Invalid time", f"{what}: expected ISO 8601, got {text!r}",
                           slug="invalid-time") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def _statuses(values: Optional[list[str]]) -> Optional[list[OrchestrationStatus]]:
    if not values:
        return None
    out = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                try:
                    out.append(views.parse_status(part))
                except ValueError as e:
                    raise ProblemError(400, "Invalid status", str(e), slug="invalid-status") from None
    return out or None


def _check_id(instance_id: str) -> None:
    if not is_valid_instance_id(instance_id):
        raise ProblemError(400, "Invalid instance id", slug="invalid-id")


def _not_found(instance_id: str) -> ProblemError:
    return ProblemError(404, "Instance not found", f"no instance {instance_id!r}", slug="not-found")


async def _unless_gone(request: Request, coro: Any) -> tuple[bool, Any]:
    """Run ``coro`` until it ends or the client hangs up: (client still there, result)."""
    try:
        return True, await wait_while_listening(request, coro)
    except ClientGone:
        return False, None


# -- the app -----------------------------------------------------------------------------------


def build_app(cfg: DashboardConfig) -> FastAPI:
    """The dashboard's FastAPI app (see the module doc for its routes)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title=cfg.title)
    install_problem_handlers(app)
    app.add_middleware(_SecurityHeaders)

    def client_for(request: Request) -> Any:
        c = cfg.client
        if c is None:
            outer = request.scope.get(OUTER_APP_KEY)
            for holder in (outer, request.app):
                c = getattr(getattr(holder, "state", None), "durable_client", None)
                if c is not None:
                    break
            if c is None:
                raise ProblemError(
                    503, "Service Unavailable",
                    "no durable client: run the app with runtime_lifespan/client_lifespan or "
                    "pass dashboard(client=...)", slug="no-client",
                )
            return c
        if callable(c) and not hasattr(c, "get_orchestration_state"):
            return c()
        return c

    async def actions_disabled() -> None:
        raise ProblemError(
            403, "Actions are disabled",
            "this dashboard is read-only: give it an auth dependency (dashboard(auth=...), "
            "durable-core dashboard --api-key)", slug="actions-disabled",
        )

    async def no_auth() -> None:
        return None

    guard: Callable[..., Any]
    if cfg.auth is not None:
        guard = cfg.auth
    elif cfg.actions:
        guard = no_auth
    else:
        guard = actions_disabled

    index = cfg.static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/config")
    async def config() -> Response:
        return _json({"title": cfg.title, "actions": cfg.actions})

    @app.get("/api/instances")
    async def instances(
        request: Request,
        status: Optional[list[str]] = Query(None),
        name: Optional[str] = Query(None, max_length=256),
        prefix: Optional[str] = Query(None, max_length=256),
        created_from: Optional[str] = Query(None, alias="createdFrom"),
        created_to: Optional[str] = Query(None, alias="createdTo"),
        page_size: int = Query(25, alias="pageSize", ge=1, le=500),
        token: Optional[str] = Query(None, max_length=1024),
    ) -> Response:
        client = client_for(request)
        t_from = _parse_time(created_from, "createdFrom")
        t_to = _parse_time(created_to, "createdTo")
        try:
            page = await client.query_orchestrations(
                runtime_status=_statuses(status), name=name or None,
                instance_id_prefix=prefix or None, created_time_from=t_from,
                created_time_to=t_to, page_size=page_size, continuation_token=token or None,
            )
        except ValueError as e:  # a continuation token that is not one of ours
            raise ProblemError(400, "Invalid query", str(e)[:200], slug="invalid-query") from None
        counts = await client.count_orchestrations(
            created_time_from=t_from, created_time_to=t_to, instance_id_prefix=prefix or None,
            name=name or None,
        )
        return _json({
            "instances": [_summary(s) for s in page.states],
            "continuationToken": page.continuation_token,
            "counts": {views.status_name(k): v for k, v in counts.items()},
        })

    @app.get("/api/instances/{instance_id}")
    async def instance(request: Request, instance_id: str) -> Response:
        _check_id(instance_id)
        client = client_for(request)
        st = await client.get_orchestration_state(instance_id)
        if st is None:
            raise _not_found(instance_id)
        kids = await client.query_orchestrations(parent_instance_id=instance_id, page_size=500,
                                                 fetch_payloads=False)
        rec = views.state_record(st)
        for key in ("input", "output", "customStatus"):
            rec[key] = payload_view(rec[key], STATE_PAYLOAD_LIMIT)
        rec["children"] = views.children_of(kids.states)
        rec["version"] = version_of(st)
        rec["terminal"] = st.runtime_status in TERMINAL_STATUSES
        return _json(rec)

    async def _events(client: Any, instance_id: str) -> tuple[list[Any], Optional[str]]:
        try:
            return list(await client.get_orchestration_history(instance_id)), None
        except OrchestrationNotFoundError:
            raise _not_found(instance_id) from None
        except HistoryCorruptError as e:
            return [], f"the stored history cannot be decoded: {e}"[:400]

    @app.get("/api/instances/{instance_id}/timeline")
    async def timeline(request: Request, instance_id: str) -> Response:
        _check_id(instance_id)
        client = client_for(request)
        st = await client.get_orchestration_state(instance_id, fetch_payloads=False)
        if st is None:
            raise _not_found(instance_id)
        events, error = await _events(client, instance_id)
        running = st.runtime_status not in TERMINAL_STATUSES
        out = views.timeline(events, running=running, now_us=utc_now_us())
        out["error"] = error
        return _json(out)

    @app.get("/api/instances/{instance_id}/history")
    async def history(
        request: Request,
        instance_id: str,
        offset: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=1000),
        full: bool = Query(False),
    ) -> Response:
        _check_id(instance_id)
        events, error = await _events(client_for(request), instance_id)
        cap = 0 if full else PAGE_PAYLOAD_LIMIT
        page = [_event_view(ev, offset + i, cap) for i, ev in enumerate(events[offset:offset + limit])]
        return _json({"total": len(events), "offset": offset, "events": page, "error": error})

    @app.get("/api/instances/{instance_id}/watch")
    async def watch(
        request: Request,
        instance_id: str,
        version: str = Query("", max_length=100),
        timeout: float = Query(25.0, ge=0, le=60),
    ) -> Response:
        _check_id(instance_id)
        client = client_for(request)
        st = await client.get_orchestration_state(instance_id)
        if st is None:
            return _json({"gone": True, "changed": True, "version": None})
        if version_of(st) == version and timeout > 0:
            there, new = await _unless_gone(
                request, client.wait_for_orchestration_change(instance_id, since=st, timeout=timeout))
            if not there:
                return Response(b"", status_code=499)
            if new is None:
                return _json({"gone": True, "changed": True, "version": None})
            st = new
        v = version_of(st)
        return _json({"gone": False, "changed": v != version, "version": v})

    @app.post("/api/watch")
    async def watch_many(request: Request) -> Response:
        body = await read_json_body(request, max_bytes=64 * 1024) or {}
        wanted = body.get("versions") if isinstance(body, dict) else None
        if not isinstance(wanted, dict) or len(wanted) > MAX_WATCHED or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in wanted.items()
        ):
            raise ProblemError(400, "Invalid watch", f"expected {{\"versions\": {{id: version}}}} "
                               f"for at most {MAX_WATCHED} instances", slug="invalid-watch")
        try:
            timeout = min(60.0, max(0.0, float(body.get("timeout", 25))))
        except (TypeError, ValueError):
            raise ProblemError(400, "Invalid watch", "timeout must be a number",
                               slug="invalid-watch") from None
        client = client_for(request)
        changed: list[str] = []
        states: dict[str, OrchestrationState] = {}
        for iid, ver in wanted.items():
            st = await client.get_orchestration_state(iid) if is_valid_instance_id(iid) else None
            if st is None or version_of(st) != ver:
                changed.append(iid)
            else:
                states[iid] = st
        if changed or not states or timeout <= 0:
            if not states and not changed and timeout > 0:
                # nothing to watch: let the list refresh on its own after the timeout
                there, _ = await _unless_gone(request, asyncio.sleep(timeout))
                if not there:
                    return Response(b"", status_code=499)
            return _json({"changed": changed})

        async def first_change() -> list[str]:
            tasks = {
                asyncio.ensure_future(
                    client.wait_for_orchestration_change(iid, since=st, timeout=timeout)
                ): iid
                for iid, st in states.items()
            }
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                out = []
                for t in done:
                    new = t.result()
                    iid = tasks[t]
                    if new is None or version_of(new) != version_of(states[iid]):
                        out.append(iid)
                return out
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        there, result = await _unless_gone(request, first_change())
        if not there:
            return Response(b"", status_code=499)
        return _json({"changed": result})

    # -- actions ---------------------------------------------------------------------------

    async def act(request: Request, instance_id: str, action: str) -> Response:
        _check_id(instance_id)
        body = await read_json_body(request, max_bytes=cfg.max_body_bytes)
        if body is not None and not isinstance(body, dict):
            raise ProblemError(400, "Invalid action body", "expected a JSON object",
                               slug="invalid-body")
        body = body or {}
        client = client_for(request)
        st = await client.get_orchestration_state(instance_id, fetch_payloads=False)
        if st is None:
            raise _not_found(instance_id)
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ProblemError(400, "Invalid reason", "reason must be a string", slug="invalid-body")
        result: dict[str, Any] = {"instanceId": instance_id, "action": action}
        try:
            if action == "terminate":
                if st.runtime_status in TERMINAL_STATUSES:
                    raise _conflict(st, "it already finished")
                await client.terminate_orchestration(instance_id, output=reason)
            elif action == "suspend":
                if st.runtime_status not in (OrchestrationStatus.RUNNING, OrchestrationStatus.PENDING):
                    raise _conflict(st, "only running instances can be suspended")
                await client.suspend_orchestration(instance_id, reason=reason)
            elif action == "resume":
                if st.runtime_status != OrchestrationStatus.SUSPENDED:
                    raise _conflict(st, "it is not suspended")
                await client.resume_orchestration(instance_id, reason=reason)
            elif action == "restart":
                new_id = bool(body.get("newInstanceId", False))
                result["instanceId"] = await client.restart_orchestration(
                    instance_id, restart_with_new_instance_id=new_id)
            elif action == "raise-event":
                name = body.get("name")
                if not isinstance(name, str) or not _EVENT_RE.match(name):
                    raise ProblemError(400, "Invalid event name",
                                       "1-128 letters, digits and _ . : -", slug="invalid-event-name")
                await client.raise_orchestration_event(instance_id, name, data=body.get("data"))
            elif action == "purge":
                if st.runtime_status not in TERMINAL_STATUSES:
                    raise _conflict(st, "terminate it first")
                result["purged"] = await client.purge_orchestration(instance_id)
        except OrchestrationNotFoundError:
            raise _not_found(instance_id) from None
        except OrchestrationAlreadyExistsError:
            raise _conflict(st, "restart it in place once it finished, or as a new instance") from None
        except PayloadError as e:
            raise ProblemError(422, "Data not serializable", str(e)[:200], slug="payload") from None
        return _json(result, 202)

    def action_route(action: str) -> Callable[..., Any]:
        async def endpoint(request: Request, instance_id: str) -> Response:
            return await act(request, instance_id, action)

        endpoint.__name__ = f"dashboard_{action.replace('-', '_')}"
        return endpoint

    for action in ("terminate", "suspend", "resume", "restart", "raise-event", "purge"):
        app.add_api_route(f"/api/instances/{{instance_id}}/{action}", action_route(action),
                          methods=["POST"], dependencies=[Depends(guard)],
                          response_class=Response)

    add_head_routes(app)
    app.mount("/static", StaticFiles(directory=str(cfg.static_dir)), name="static")
    return app


def _conflict(st: OrchestrationState, why: str) -> ProblemError:
    return ProblemError(
        409, "Not possible in this state",
        f"instance {st.instance_id!r} is {views.status_name(st.runtime_status)}: {why}",
        slug="conflict",
    )
