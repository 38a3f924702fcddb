"""Reading request bodies: JSON only, size-limited, validated against an input model.

Every route that reads a body goes through :func:`read_json_body` (and, with a pydantic model,
:func:`read_model`), so they all answer the same way: 413 too large, 415 not JSON, 400 malformed
JSON or a body cut short, 422 a body that does not fit the model -- each an RFC 9457 problem,
each before anything is written.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import Request
from starlette.requests import ClientDisconnect

from .problems import ProblemError

__all__ = ["read_json_body", "read_body", "parse_json_body", "read_model", "validate_input"]

_JSON_TYPES = ("application/json",)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_large(max_bytes: int) -> ProblemError:
    return ProblemError(
        413,
        "Request body too large",
        f"the body exceeds the limit of {max_bytes} bytes",
        slug="body-too-large",
        max_bytes=max_bytes,
    )


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The raw body, at most ``max_bytes`` (413 beyond it).

    A client that hangs up before sending all of its ``Content-Length`` gets a 400 problem
    (which nobody reads) instead of an unhandled disconnect: the server logs no traceback.
    """
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise ProblemError(400, "Invalid Content-Length", slug="bad-request") from None
        if n > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            if chunk:
                chunks.append(chunk)
    except ClientDisconnect:
        raise ProblemError(
            400,
            "Incomplete request body",
            "the client closed the connection before sending the whole body",
            slug="incomplete-body",
        ) from None
    return b"".join(chunks)


def parse_json_body(request: Request, body: bytes, *, required: bool = False) -> Any:
    """Parse ``body`` (read from ``request``) as JSON: ``None`` when empty (400 if
    ``required``), 415 when the content type is not JSON, 400 when malformed (NaN and
    Infinity are not JSON)."""
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


async def read_json_body(request: Request, *, max_bytes: int, required: bool = False) -> Any:
    """Read and parse a JSON request body, enforcing the content type and the size limit.

    An empty body means ``None`` (no input) unless ``required``. Raises :class:`ProblemError`
    (413 too large, 415 wrong content type, 400 malformed JSON or a body cut short) -- before
    anything is written.
    """
    return parse_json_body(request, await read_body(request, max_bytes=max_bytes), required=required)


def validate_input(model: Any, value: Any = None, *, raw: Optional[bytes] = None) -> Any:
    """Validate a body against the pydantic ``model``; returns its JSON-ready ``model_dump``
    (what an orchestration's input is stored as).

    With ``raw`` (the body's bytes) the model validates the JSON text itself, with JSON's
    rules (what FastAPI does for a body parameter); otherwise the parsed ``value``. An empty
    body validates as ``{}`` (the model's defaults). A body that does not fit raises a 422
    problem listing each error's location (``body.field``) and message.
    """
    return _model_instance(model, value, raw).model_dump(mode="json")


def _model_instance(model: Any, value: Any, raw: Optional[bytes]) -> Any:
    from pydantic import ValidationError

    try:
        if raw is not None and raw.strip():
            return model.model_validate_json(raw)
        return model.model_validate(value if value is not None else {})
    except ValidationError as e:
        errors = [
            {
                "loc": ["body", *(str(p) for p in x.get("loc", ()))],
                "msg": str(x.get("msg", "")),
                "type": str(x.get("type", "")),
            }
            for x in e.errors()
        ]
        raise ProblemError(
            422,
            "Invalid input",
            "; ".join(f"{'.'.join(x['loc'])}: {x['msg']}" for x in errors),
            slug="validation",
            errors=errors,
        ) from None


async def read_model(request: Request, model: Any, *, max_bytes: int) -> Any:
    """Read a JSON body into an instance of the pydantic ``model``: :func:`read_json_body`'s
    400 / 413 / 415 answers, then :func:`validate_input`'s 422 -- the same answers as the
    operations router, where a FastAPI body parameter would say 422 for all of them."""
    raw = await read_body(request, max_bytes=max_bytes)
    value = parse_json_body(request, raw)
    return _model_instance(model, value, raw)
