"""The status monitor's long-poll (``?wait=N``): wait for an operation to change, and stop
waiting when the client hangs up.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Optional, TypeVar

from fastapi import Request

from ..status import OrchestrationState

__all__ = ["ClientGone", "wait_while_listening", "wait_for_change"]

T = TypeVar("T")


class ClientGone(Exception):
    """The client hung up during a long-poll: nobody reads the answer."""


async def wait_for_change(
    client: Any, state: OrchestrationState, timeout: float
) -> Optional[OrchestrationState]:
    """Wait up to ``timeout`` seconds for ``state`` to change; the state read last (the
    changed one, or the unchanged one at the deadline), ``None`` if the instance is gone.

    The client's wait primitive does the waiting: woken by the commit itself in this
    process, by re-reading with back-off for commits of another process.
    """
    return await client.wait_for_orchestration_change(
        state.instance_id, since=state, timeout=timeout
    )


async def wait_while_listening(request: Request, waiting: Awaitable[T]) -> T:
    """The outcome of ``waiting`` (e.g. :func:`wait_for_change`), given up -- raising
    :class:`ClientGone` -- as soon as the client of ``request`` disconnects. Whichever wait
    loses is cancelled and has finished (the change wait unregisters itself) before this
    returns."""
    waiter = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait((waiter, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        pending = [t for t in (waiter, gone) if not t.done()]
        for t in pending:
            t.cancel()
        # let the cancelled wait finish (it unregisters itself) before answering
        await asyncio.gather(*pending, return_exceptions=True)
    if not waiter.done() or waiter.cancelled():
        raise ClientGone
    return waiter.result()


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (a GET's receive channel only says that)."""
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return
