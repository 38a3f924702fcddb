"""The web dashboard: instances, their histories as timelines, and the operator's actions.

Mount it in any FastAPI or Starlette app::

    from durable_core.fastapi import APIKeyAuth, dashboard
    app.mount("/dashboard", dashboard(auth=APIKeyAuth("s3cret")))

or serve it alone with ``durable-core dashboard``. It is a single page (``static/``: HTML, one
script, one style sheet -- no build step, nothing fetched from another origin) over a small
JSON API (:mod:`.api`) built on :class:`durable_core.AsyncClient` alone: the list with its
filters, counts by status and paging; an instance's state, payloads, failure, parent and
children; its history as a timeline of spans and as a paged event list; long-polls that answer
when an instance changes (the client's ``wait_for_orchestration_change``, no tight polling).

Actions (terminate, suspend, resume, restart, raise event, purge) sit behind ``auth`` -- the
same kind of dependency as the operations router's ``management_auth``. Without one they are
hidden and their routes answer 403: a dashboard is read-only unless given auth (or
``allow_unauthenticated_actions=True`` says otherwise explicitly).

Everything from payloads is rendered as text (never as markup), and every answer carries a
Content-Security-Policy that allows scripts from the dashboard itself only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .api import OUTER_APP_KEY, DashboardConfig, build_app

__all__ = ["dashboard", "standalone_app", "STATIC_DIR"]

#: where the page's files are (shipped inside the package)
STATIC_DIR = Path(__file__).resolve().parent / "static"


class _RememberOuterApp:
    """Passes the app the dashboard is mounted in along in the scope: a mounted FastAPI app
    replaces ``scope["app"]`` with itself, and the client usually lives on the outer app's
    ``state`` (set by its lifespan)."""

    def __init__(self, inner: FastAPI) -> None:
        self.inner = inner

    @property
    def state(self) -> Any:
        return self.inner.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and OUTER_APP_KEY not in scope:
            scope = dict(scope)
            scope[OUTER_APP_KEY] = scope.get("app")
        await self.inner(scope, receive, send)


def dashboard(
    client: Any = None,
    *,
    auth: Optional[Callable[..., Any]] = None,
    allow_unauthenticated_actions: bool = False,
    title: str = "durable_core",
    max_body_bytes: int = 1 << 20,
) -> ASGIApp:
    """The dashboard as an ASGI app to mount (``app.mount("/dashboard", dashboard(...))``).

    ``client``: an :class:`~durable_core.AsyncClient` (or a zero-argument callable returning
    one); by default each request uses ``durable_client`` from the state of the app the
    dashboard is mounted in (what :func:`~durable_core.fastapi.runtime_lifespan` and
    :func:`~durable_core.fastapi.client_lifespan` publish). ``auth``: a FastAPI dependency
    that guards the actions (e.g. :class:`~durable_core.fastapi.APIKeyAuth`); without it the
    dashboard is read-only unless ``allow_unauthenticated_actions``.
    """
    if auth is not None and allow_unauthenticated_actions:
        raise ValueError("pass auth or allow_unauthenticated_actions, not both")
    cfg = DashboardConfig(
        client=client,
        auth=auth,
        actions=auth is not None or allow_unauthenticated_actions,
        title=title,
        max_body_bytes=max_body_bytes,
        static_dir=STATIC_DIR,
    )
    return _RememberOuterApp(build_app(cfg))


def standalone_app(store: str, *, api_key: Optional[str] = None) -> FastAPI:
    """The app ``durable-core dashboard`` serves: a client on ``store`` and the dashboard at
    ``/`` (actions behind ``api_key`` when given, read-only otherwise)."""
    from ..auth import APIKeyAuth
    from ..lifespans import client_lifespan

    app = FastAPI(lifespan=client_lifespan(store), docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.mount("/", dashboard(auth=APIKeyAuth(api_key) if api_key else None))
    return app
