"""What the routes answer with: ids they accept, the two status vocabularies, absolute URLs,
payloads decoded without ever failing, history events as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

from ..cli.views import UNDECODABLE, event_record, state_value, status_name
from ..status import OrchestrationState, OrchestrationStatus
from .encoding import _json_default

__all__ = [
    "INSTANCE_ID_PATTERN",
    "ID_SCHEMA",
    "UNDECODABLE",
    "is_valid_instance_id",
    "lro_status",
    "runtime_status_name",
    "base_url",
    "safe_payload",
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
