"""Runtime: a worker and clients on one store, in one process.

``with dc.Runtime("sqlite:///durable.db") as rt:`` runs the worker on its own thread (with its
own asyncio loop) and gives ``rt.client`` (blocking) and ``rt.async_client`` (asyncio).
``async with dc.Runtime(...) as rt:`` (or ``await rt.astart()``) runs the worker on the current
event loop instead. Either way, a commit by the worker wakes waiting clients at once, and a
client's commit wakes the worker at once.

Orchestration steps run exactly once (each is one transaction); activities are
at-least-once: one that was running when its worker died runs again, so make activities
safe to repeat.

For a worker process and separate client processes sharing the store file, use
``python -m durable_core worker module:attr --db URL`` (or :class:`~durable_core.worker.Worker`)
and :class:`~durable_core.client.Client` / :class:`~durable_core.client.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional, Union

from .backends import DEFAULT_URL, Backend, open_backend
from .client import AsyncClient, Client
from .converter import DataConverter
from .worker import Worker

__all__ = ["Runtime"]


class Runtime:
    """A worker plus clients on the store at ``url`` (``Runtime()``: ``durable.db`` here), or on
    an open :class:`~durable_core.backends.base.Backend` (closed by :meth:`stop`).

    ``registry`` defaults to the functions decorated with ``@dc.orchestrator`` /
    ``@dc.activity``; ``converter`` (JSON by default) is shared by worker and clients.
    Other keyword arguments go to :class:`~durable_core.worker.Worker` (``tracer_provider``
    to the clients too).
    """

    def __init__(
        self,
        url: "Union[str, Backend]" = DEFAULT_URL,
        *,
        registry: Any = None,
        converter: Optional[DataConverter] = None,
        max_concurrent_activities: int = 16,
        max_concurrent_orchestrations: int = 100,
        **worker_options: Any,
    ) -> None:
        lease = worker_options.pop("lease_seconds", None)
        if isinstance(url, Backend):
            self.backend = url
            self.url = url.url
        else:
            self.url = url
            self.backend = open_backend(url, lease_seconds=lease)
        try:
            self._init(registry, converter, max_concurrent_activities,
                       max_concurrent_orchestrations, worker_options)
        except BaseException:
            self.backend.close()
            raise

    def _init(self, registry: Any, converter: Optional[DataConverter],
              max_concurrent_activities: int, max_concurrent_orchestrations: int,
              worker_options: dict[str, Any]) -> None:
        self.worker = Worker(
            self.backend,
            registry=registry,
            converter=converter,
            max_concurrent_activities=max_concurrent_activities,
            max_concurrent_orchestrations=max_concurrent_orchestrations,
            **worker_options,
        )
        tp = worker_options.get("tracer_provider")
        #: blocking client sharing this runtime's store
        self.client = Client(self.backend, converter=converter, tracer_provider=tp)
        #: asyncio client sharing this runtime's store
        self.async_client = AsyncClient(self.backend, converter=converter, tracer_provider=tp)
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._mode: Optional[str] = None
        self._closed = False

    # -- worker on its own thread ------------------------------------------------------------
    def start(self) -> None:
        """Start the worker on a background thread (returns once it is serving)."""
        if self._mode is not None:
            raise RuntimeError("runtime already started")
        self._mode = "thread"
        ready = threading.Event()
        error: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.worker.start())
            except BaseException as exc:  # reported to start()
                error.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="durable_core worker", daemon=True)
        self._thread.start()
        ready.wait()
        if error:
            self._mode = None
            self._thread.join()
            self._close()  # nothing left running or open behind a failed start
            raise error[0]

    def stop(self, grace: float = 30.0) -> None:
        """Stop the worker gracefully (see :meth:`Worker.stop`) and close the store."""
        if self._mode == "thread":
            loop = self._loop
            assert loop is not None and self._thread is not None
            fut = asyncio.run_coroutine_threadsafe(self.worker.stop(grace), loop)
            try:
                fut.result()
            finally:
                loop.call_soon_threadsafe(loop.stop)
                self._thread.join()
                self._mode = None
        elif self._mode == "loop":
            raise RuntimeError("this runtime runs on an event loop: use 'await rt.astop()'")
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.backend.close()

    def __enter__(self) -> "Runtime":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- worker on the current event loop ----------------------------------------------------
    async def astart(self) -> None:
        """Start the worker on the running event loop."""
        if self._mode is not None:
            raise RuntimeError("runtime already started")
        self._mode = "loop"
        try:
            await self.worker.start()
        except BaseException:
            self._mode = None
            self._close()
            raise

    async def astop(self, grace: float = 30.0) -> None:
        """Stop the worker gracefully and close the store."""
        if self._mode == "loop":
            await self.worker.stop(grace)
            self._mode = None
        elif self._mode == "thread":
            raise RuntimeError("this runtime runs on its own thread: use rt.stop()")
        self._close()

    async def __aenter__(self) -> "Runtime":
        await self.astart()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.astop()
