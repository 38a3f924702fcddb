"""What the routes answer with: ids they accept (and the 400 / 404 problems about them), the
two status vocabularies, absolute URLs, payloads decoded without ever failing, history events
as JSON, and the status document built from them.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from fastapi import Request

from ..cli.views import UNDECODABLE, event_record, state_value, status_name
from ..errors import HistoryCorruptError, OrchestrationNotFoundError
from ..status import OrchestrationState, OrchestrationStatus
from .encoding import _json_default, iso as _iso
from .problems import ProblemError

__all__ = [
    "INSTANCE_ID_PATTERN",
    "ID_SCHEMA",
    "UNDECODABLE",
    "is_valid_instance_id",
    "lro_status",
    "runtime_status_name",
    "base_url",
    "safe_payload",
    "status_document",
    "error_document",
    "history_document",
]

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


def lro_status(status: OrchestrationStatus) -> str:
    """The long-running-operation vocabulary: NotStarted, Running, Succeeded, Failed, Canceled."""
    return _LRO_STATUS[OrchestrationStatus(status)]


def runtime_status_name(status: OrchestrationStatus) -> str:
    """The Durable Functions ``runtimeStatus`` spelling (Pending, Running, Completed, ...)."""
    return status_name(status)


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


def safe_payload(state: OrchestrationState, attr: str) -> Any:
    """``state.<attr>`` (``input``, ``output``, ``custom_status``) decoded; a payload the data
    converter cannot decode becomes ``{"$undecodable": <base64>, "error": ...}`` so the route
    still answers (and shows that the value is there) instead of failing with a 500."""
    return state_value(state, attr)


def _reason_text(reason: Any) -> str:
    if reason is None:
        return "the operation was canceled"
    if isinstance(reason, dict) and UNDECODABLE in reason:
        return "the operation was canceled (its reason cannot be decoded)"
    return reason if isinstance(reason, str) else json.dumps(reason, default=_json_default)


def _event_json(ev: Any, converter: Any) -> dict[str, Any]:
    return event_record(ev, converter)


def _check_id(instance_id: str) -> None:
    """Raise the 400 problem when ``instance_id`` is not an id this API accepts."""
    if not is_valid_instance_id(instance_id):
        raise ProblemError(
            400,
            "Invalid operation id",
            "ids are 1-128 characters: letters, digits and . _ : @ -",
            slug="invalid-id",
        )


def _not_found(instance_id: str) -> ProblemError:
    """The 404 problem of an operation that does not exist (or was purged)."""
    return ProblemError(
        404, "Operation not found", f"no operation {instance_id!r}", slug="not-found"
    )


# -- the status document -----------------------------------------------------------------------


def status_document(
    state: OrchestrationState,
    *,
    include_stack_traces: bool = False,
    history: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The status document of ``state`` (``history``, from :func:`history_document`, merged
    in when given)."""
    st = state.runtime_status
    body: dict[str, Any] = {
        "id": state.instance_id,
        "instanceId": state.instance_id,  # the Durable Functions spelling
        "name": state.name,
        "status": lro_status(st),
        "runtimeStatus": runtime_status_name(st),
        "createdTime": _iso(state.created_at),
        "lastUpdatedTime": _iso(state.last_updated_at),
        "customStatus": safe_payload(state, "custom_status"),
    }
    if st == OrchestrationStatus.COMPLETED:
        out = safe_payload(state, "output")
        body["result"] = out
        body["output"] = out
    elif st == OrchestrationStatus.FAILED:
        body["error"] = error_document(state, include_stack_traces=include_stack_traces)
        body["output"] = body["error"]["message"]
    elif st in (OrchestrationStatus.TERMINATED, OrchestrationStatus.CANCELED):
        reason = safe_payload(state, "output")
        body["error"] = {"code": "Canceled", "message": _reason_text(reason)}
        body["output"] = reason
    if history is not None:
        body.update(history)
    return body


def error_document(state: OrchestrationState, *, include_stack_traces: bool = False) -> dict[str, Any]:
    """The ``error`` of a failed operation's status document (its stack trace only when
    ``include_stack_traces``: it may leak internals)."""
    d = state.failure_details
    if d is None:
        return {"code": "Failed", "message": "the operation failed"}
    err: dict[str, Any] = {"code": d.error_type or "Failed", "message": d.message}
    if include_stack_traces and d.stack_trace:
        err["stackTrace"] = d.stack_trace
    return err


async def history_document(client: Any, instance_id: str) -> dict[str, Any]:
    """``historyEvents`` for the status document, read through ``client``; a history that
    cannot be decoded gives ``historyEvents: null`` and a ``historyError`` problem instead of
    failing the read (the status, input and output are still worth seeing)."""
    try:
        events = await client.get_orchestration_history(instance_id)
    except OrchestrationNotFoundError:
        raise _not_found(instance_id) from None
    except HistoryCorruptError as e:
        return {
            "historyEvents": None,
            "historyError": {
                "type": "urn:durable-core:problem:history-corrupt",
                "title": "The stored history cannot be decoded",
                "detail": str(e)[:300],
                "offset": getattr(e, "offset", None),
            },
        }
    conv = getattr(client, "converter", None)
    return {"historyEvents": [_event_json(e, conv) for e in events]}
