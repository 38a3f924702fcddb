"""Auth for the management routes and the dashboard's actions.

A route's auth is a FastAPI dependency: :class:`APIKeyAuth`, or any dependency of the app's own
(OAuth, a session check). Without one the management routes answer 403 -- they are never open
by default.
"""

from __future__ import annotations

import hmac
from typing import Any, Iterable, Union

from fastapi import Request

from .problems import ProblemError

__all__ = ["APIKeyAuth"]


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


