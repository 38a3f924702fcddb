"""RFC 9457 problem details: the error format of every route, and the OpenAPI rewrite that
documents it.

:class:`ProblemError` is raised by handlers (it is an ``HTTPException``, so an app without the
handlers still answers its status code); :func:`install_problem_handlers` makes an app answer
its own errors -- routing 404/405, request validation 422 -- the same way.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from .encoding import dumps as _dumps

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemError",
    "problem_response",
    "install_problem_handlers",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM_TYPE_BASE = "urn:durable-core:problem:"


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

