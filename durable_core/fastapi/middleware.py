"""ASGI middleware: the request-body size limit, enforced before the application reads."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem_response

__all__ = ["BodySizeLimitMiddleware"]

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


