"""FastAPI lifespans that publish ``app.state.durable_client``: with the worker in process
(:func:`runtime_lifespan`) or for an API-only process beside a worker (:func:`client_lifespan`).
"""

from __future__ import annotations

import asyncio
import inspect
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Optional

from fastapi import FastAPI

__all__ = ["LifespanFactory", "runtime_lifespan", "client_lifespan"]

LifespanFactory = Callable[[FastAPI], Any]


def runtime_lifespan(
    url: str = "sqlite:///durable.db",
    *,
    registry: Any = None,
    converter: Any = None,
    stop_grace: float = 10.0,
    worker_thread: Optional[bool] = None,
    **runtime_options: Any,
) -> LifespanFactory:
    """A FastAPI ``lifespan`` that runs a :class:`durable_core.Runtime` (worker + client)
    on the server's event loop, and publishes ``app.state.durable_runtime`` and
    ``app.state.durable_client`` (the runtime's ``AsyncClient``) for the routes.

    At shutdown running activities get ``stop_grace`` seconds to finish; what is cut off is
    retried by the next worker (activities are at-least-once). ``worker_thread=True`` runs the
    worker on its own thread and event loop instead of the server's, so a batch of replays
    never holds up HTTP answers for longer than the interpreter's switch interval. The default
    (``None``) does so when the store's calls wait on a network (``Backend.concurrency ==
    "thread"``): a dispatcher turn's round trips then never hold up the server's loop.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from ..runtime import Runtime

        kwargs: dict[str, Any] = dict(runtime_options)
        if registry is not None:
            kwargs["registry"] = registry
        if converter is not None:
            kwargs["converter"] = converter
        rt = Runtime(url, **kwargs)
        on_thread = (rt.backend.concurrency == "thread") if worker_thread is None else worker_thread
        if on_thread:
            await asyncio.get_running_loop().run_in_executor(None, rt.start)
        else:
            await rt.astart()
        app.state.durable_runtime = rt
        app.state.durable_client = rt.async_client
        try:
            yield
        finally:
            if on_thread:
                await asyncio.get_running_loop().run_in_executor(None, rt.stop, stop_grace)
            else:
                await rt.astop(stop_grace)

    return lifespan


def client_lifespan(url: str = "sqlite:///durable.db", *, converter: Any = None) -> LifespanFactory:
    """A FastAPI ``lifespan`` for a client-only process: an :class:`AsyncClient` on the store
    that a separate worker process (``worker.py``) executes. Publishes ``app.state.durable_client``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from ..client import AsyncClient

        client = AsyncClient(url) if converter is None else AsyncClient(url, converter=converter)
        app.state.durable_client = client
        try:
            yield
        finally:
            await _maybe_await(client.close())

    return lifespan


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


