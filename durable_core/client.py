"""Clients: start, inspect, signal and manage orchestration instances.

:class:`Client` (blocking) and :class:`AsyncClient` (asyncio) have the same methods. Both talk
to the store directly -- there is no server -- so a client works beside a worker in one process
(``rt.client`` / ``rt.async_client``) or in another process (or machine, on PostgreSQL)
sharing the store.

Waiting (``wait_for_orchestration_start`` / ``_completion`` / ``_change``) is one primitive: the
client registers a watcher for the instance with the store, which wakes it when the instance
changes -- at once for a commit in this process, as soon as the backend sees it for other
processes -- and re-reads the instance then (and at least once a second, in case a
notification was lost). Nothing polls in a tight loop.

Payloads (inputs, event data, outputs) go through the data converter (JSON by default) before
anything is written: a value that cannot be serialized raises
:class:`~durable_core.errors.PayloadError` and the store is left untouched. Instance ids and
names are checked the same way (``ValueError``/``TypeError``, nothing written).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

from . import history as h
from .backends import DEFAULT_URL, Backend, open_backend
from .backends.base import InstanceFilter, InstanceRow, ReuseIdPolicy, TryLater
from .converter import DataConverter, default_converter
from .errors import OrchestrationNotFoundError, StoreBusyError
from .history import HistoryEvent
from .status import OrchestrationState, OrchestrationStatus
from .store import Store, validate_instance_id

__all__ = ["Client", "AsyncClient", "QueryResult", "ReuseIdPolicy"]

#: a waiter re-reads the instance at least this often even without a notification
SAFETY_POLL = 1.0
# the asyncio client's wait for another writer: retry at once, then every 50 us backing off to 0.5 ms
_WRITE_RETRY_MIN = 0.00005
_WRITE_RETRY_MAX = 0.0005

_T = TypeVar("_T")


@dataclass(frozen=True)
class QueryResult:
    """One page of :meth:`Client.query_orchestrations`; pass ``continuation_token`` back for
    the next page (``None`` when this was the last)."""

    states: list[OrchestrationState]
    continuation_token: Optional[str]


def _name_of(orchestrator: Union[str, Callable[..., Any]]) -> str:
    if isinstance(orchestrator, str):
        if not orchestrator:
            raise ValueError("orchestrator name must not be empty")
        return orchestrator
    name = getattr(orchestrator, "__durable_name__", None)
    if name is None:
        name = getattr(orchestrator, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"expected an orchestrator function or its name, got {orchestrator!r}")
    return name


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _us(dt: Optional[datetime]) -> Optional[int]:
    return None if dt is None else h.from_datetime(dt)


def _statuses(
    runtime_status: Union[None, OrchestrationStatus, Sequence[OrchestrationStatus]],
) -> Optional[frozenset[OrchestrationStatus]]:
    if runtime_status is None:
        return None
    if isinstance(runtime_status, (OrchestrationStatus, int)):
        return frozenset([OrchestrationStatus(runtime_status)])
    return frozenset(OrchestrationStatus(s) for s in runtime_status)


def _state_key(st: OrchestrationState) -> tuple[Any, ...]:
    """What a watcher compares: status, last update and custom status."""
    return (st.runtime_status, st.last_updated_at, st.serialized_custom_status)


def _started(st: Optional[OrchestrationState]) -> bool:
    return st is None or st.runtime_status != OrchestrationStatus.PENDING


def _finished(st: Optional[OrchestrationState]) -> bool:
    return st is None or st.runtime_status.is_terminal


def _timeout_error(instance_id: str, timeout: Optional[float], what: str) -> TimeoutError:
    return TimeoutError(f"orchestration {instance_id!r} did not {what} within {timeout} s")


class _Core:
    """What both clients share: every operation except waiting, synchronous and short."""

    def __init__(self, store: Union[str, Backend], converter: Optional[DataConverter],
                 tracer_provider: Any = None) -> None:
        from .telemetry import client_tracing

        #: spans around starts, and the trace context stored with them (None: no OpenTelemetry)
        self.tracing = client_tracing(tracer_provider)
        if isinstance(store, Backend):
            self.backend = store
            self._own = False
        else:
            self.backend = open_backend(store)
            self._own = True
        self.store = Store(self.backend)
        self.converter = converter or default_converter()

    def state(self, row: Optional[InstanceRow], fetch_payloads: bool = True) -> Optional[OrchestrationState]:
        if row is None:
            return None
        return OrchestrationState(
            instance_id=row.instance_id,
            name=row.name,
            runtime_status=row.status,
            created_at=_dt(row.created_at),
            last_updated_at=_dt(row.last_updated_at),
            serialized_input=row.input if fetch_payloads else None,
            serialized_output=row.output if fetch_payloads else None,
            serialized_custom_status=row.custom_status if fetch_payloads else None,
            failure_details=row.failure,
            parent_instance_id=row.parent_instance_id,
            execution_id=row.execution_id,
            version=row.version,
            _converter=self.converter,
        )

    def schedule(
        self,
        orchestrator: Union[str, Callable[..., Any]],
        input: Any,
        instance_id: Optional[str],
        start_at: Optional[datetime],
        tags: Optional[dict[str, str]],
        reuse_policy: Optional[ReuseIdPolicy],
        version: Optional[str] = None,
    ) -> str:
        name = _name_of(orchestrator)
        if version is None and not isinstance(orchestrator, str):
            version = getattr(orchestrator, "__durable_version__", None)
        if version is not None and not isinstance(version, str):
            raise TypeError(f"version must be a str, not {type(version).__name__}")
        if instance_id is None:
            instance_id = os.urandom(16).hex()
        else:
            validate_instance_id(instance_id)
        if tags is not None:
            if not isinstance(tags, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
                raise TypeError("tags must map str to str")
        data = self.converter.serialize(input)
        tracing = self.tracing
        span: Any = (contextlib.nullcontext() if tracing is None
                     else tracing.start(name, instance_id, version, retry=(TryLater,)))
        with span as trace_context:
            self.store.create(
                instance_id, name, data, version=version, start_at=_us(start_at),
                tags=dict(tags) if tags else None,
                reuse_policy=reuse_policy or ReuseIdPolicy.ERROR, trace_context=trace_context)
        return instance_id

    def get_state(self, instance_id: str, fetch_payloads: bool = True) -> Optional[OrchestrationState]:
        return self.state(self.store.get(instance_id, payloads=fetch_payloads), fetch_payloads)

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        if not isinstance(event_name, str) or not event_name:
            raise ValueError("event_name must be a non-empty string")
        self.store.raise_event(instance_id, event_name, self.converter.serialize(data))

    def terminate(self, instance_id: str, output: Any, recursive: bool) -> None:
        self.store.terminate(instance_id, self.converter.serialize(output), recursive=recursive)

    def suspend(self, instance_id: str, reason: Optional[str]) -> None:
        self.store.suspend(instance_id, self.converter.serialize(reason))

    def resume(self, instance_id: str, reason: Optional[str]) -> None:
        self.store.resume(instance_id, self.converter.serialize(reason))

    def restart(self, instance_id: str, new_id: bool) -> str:
        return self.store.restart(instance_id, uuid.uuid4().hex if new_id else None)

    def purge(self, instance_id: str, recursive: bool) -> int:
        return self.store.purge(instance_id, recursive=recursive)

    @staticmethod
    def filter(
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        runtime_status: Any = None,
        instance_id_prefix: Optional[str] = None,
        name: Optional[str] = None,
        parent_instance_id: Optional[str] = None,
    ) -> InstanceFilter:
        return InstanceFilter(_us(created_time_from), _us(created_time_to),
                              _statuses(runtime_status), instance_id_prefix or None, name,
                              parent_instance_id)

    def purge_by(self, flt: InstanceFilter, progress: Optional[Callable[[int], None]]) -> int:
        return self.store.purge_by(flt, progress=progress)

    def query(self, flt: InstanceFilter, page_size: int, continuation_token: Optional[str],
              fetch_payloads: bool) -> QueryResult:
        page = self.store.query(flt, page_size=page_size, continuation_token=continuation_token,
                                payloads=fetch_payloads)
        return QueryResult(
            [self.state(r, fetch_payloads) for r in page.rows],  # type: ignore[misc]
            page.continuation_token,
        )

    def count(self, flt: InstanceFilter) -> dict[OrchestrationStatus, int]:
        counts = self.store.count(flt)
        return {s: counts.get(s, 0) for s in OrchestrationStatus}

    def history(self, instance_id: str) -> list[HistoryEvent]:
        events = self.store.history(instance_id)
        if events is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        return events

    def close(self) -> None:
        if self._own:
            self.backend.close()


class _Watch:
    """One registration of an instance watcher with the store; wakes a thread or a loop."""

    def __init__(self, backend: Backend, instance_id: str,
                 loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self._backend = backend
        self._iid = instance_id
        self._loop = loop
        self._event = threading.Event()
        self._fut: Optional[asyncio.Future[None]] = None
        backend.add_instance_watcher(instance_id, self._wake)

    def _wake(self) -> None:  # any thread
        self._event.set()
        loop, fut = self._loop, self._fut
        if loop is not None and fut is not None:
            try:
                loop.call_soon_threadsafe(_set_done, fut)
            except RuntimeError:  # pragma: no cover - loop closed
                pass

    def arm(self) -> None:
        """Forget earlier wake-ups: call before reading the state the wait compares against."""
        self._event.clear()
        if self._loop is not None:
            self._fut = self._loop.create_future()
            if self._event.is_set():  # pragma: no cover - woken between clear and create
                self._fut.set_result(None)

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)

    async def await_(self, timeout: float) -> None:
        fut = self._fut
        assert fut is not None and self._loop is not None
        th = self._loop.call_later(timeout, _set_done, fut)
        try:
            await fut
        finally:
            th.cancel()

    def close(self) -> None:
        self._backend.remove_instance_watcher(self._iid, self._wake)


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class Client:
    """Blocking client for the store at ``store`` (a URL or an open backend).

    Every method writes at most one transaction; see the module docstring for waiting.

    With ``opentelemetry-api`` installed, each start is traced (a ``create_orchestration``
    span through ``tracer_provider``, or the global provider when None) and the trace context
    is stored with it, so the worker's spans join the caller's trace.
    """

    def __init__(
        self, store: Union[str, Backend] = DEFAULT_URL, *, converter: Optional[DataConverter] = None,
        tracer_provider: Any = None,
    ) -> None:
        self._core = _Core(store, converter, tracer_provider)

    @property
    def backend(self) -> Backend:
        """The store this client talks to."""
        return self._core.backend

    @property
    def converter(self) -> DataConverter:
        """The data converter payloads go through."""
        return self._core.converter

    def schedule_new_orchestration(
        self,
        orchestrator: Union[str, Callable[..., Any]],
        *,
        input: Any = None,
        instance_id: Optional[str] = None,
        start_at: Optional[datetime] = None,
        tags: Optional[dict[str, str]] = None,
        reuse_policy: Optional[ReuseIdPolicy] = None,
        version: Optional[str] = None,
    ) -> str:
        """Start an orchestration (at ``start_at`` if given); returns its instance id.

        ``version`` is recorded in the instance's ``ExecutionStarted`` (``ctx.version``);
        by default the version the orchestrator function was registered with, if any.
        Raises OrchestrationAlreadyExistsError if ``instance_id`` names an existing live
        instance (or any existing one, unless ``reuse_policy`` is REPLACE_IF_TERMINAL)."""
        return self._core.schedule(orchestrator, input, instance_id, start_at, tags, reuse_policy,
                                   version)

    def get_orchestration_state(
        self, instance_id: str, *, fetch_payloads: bool = True
    ) -> Optional[OrchestrationState]:
        """The instance's current state, or ``None`` for an unknown id."""
        return self._core.get_state(instance_id, fetch_payloads)

    def _wait_until(self, instance_id: str, done: Callable[[Optional[OrchestrationState]], bool],
                    timeout: Optional[float]) -> Optional[OrchestrationState]:
        """Read the state until ``done(state)``; the last state read (on timeout too)."""
        core = self._core
        st = core.get_state(instance_id)
        if done(st) or (timeout is not None and timeout <= 0):
            return st
        deadline = None if timeout is None else time.monotonic() + timeout
        w = _Watch(core.backend, instance_id)
        try:
            while True:
                w.arm()
                st = core.get_state(instance_id)
                if done(st):
                    return st
                wait = SAFETY_POLL
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return st
                    wait = min(wait, remaining)
                w.wait(wait)
        finally:
            w.close()

    def _wait(self, instance_id: str, timeout: Optional[float], terminal: bool) -> OrchestrationState:
        st = self._wait_until(instance_id, _finished if terminal else _started, timeout)
        if st is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        if not (_finished(st) if terminal else _started(st)):
            raise _timeout_error(instance_id, timeout, "complete" if terminal else "start")
        return st

    def wait_for_orchestration_start(
        self, instance_id: str, *, timeout: Optional[float] = None
    ) -> OrchestrationState:
        """Block until the instance has started (left PENDING). TimeoutError after ``timeout``."""
        return self._wait(instance_id, timeout, False)

    def wait_for_orchestration_completion(
        self, instance_id: str, *, timeout: Optional[float] = None
    ) -> OrchestrationState:
        """Block until the instance completes, fails or is terminated."""
        return self._wait(instance_id, timeout, True)

    def wait_for_orchestration_change(
        self,
        instance_id: str,
        *,
        since: Optional[OrchestrationState] = None,
        timeout: float = 30.0,
    ) -> Optional[OrchestrationState]:
        """Wait until the instance's state differs from ``since``, for at most ``timeout`` s.

        A change is a new status, a new last-update time or a new custom status. Returns the
        state read last: the changed one, or the unchanged one once the time is up (a watcher's
        normal outcome, not an error); ``None`` if the instance does not exist (or was purged
        meanwhile). With ``since=None`` it returns the current state at once.
        """
        if since is None:
            return self._core.get_state(instance_id)
        before = _state_key(since)
        return self._wait_until(instance_id, lambda s: s is None or _state_key(s) != before,
                                timeout)

    def raise_orchestration_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Send an external event to the instance (``wait_for_external_event`` receives it)."""
        self._core.raise_event(instance_id, event_name, data)

    def terminate_orchestration(
        self, instance_id: str, *, output: Any = None, recursive: bool = True
    ) -> None:
        """Terminate the instance (and its sub-orchestrations when ``recursive``)."""
        self._core.terminate(instance_id, output, recursive)

    def suspend_orchestration(self, instance_id: str, *, reason: Optional[str] = None) -> None:
        """Suspend the instance: new events wait until it is resumed."""
        self._core.suspend(instance_id, reason)

    def resume_orchestration(self, instance_id: str, *, reason: Optional[str] = None) -> None:
        """Resume a suspended instance."""
        self._core.resume(instance_id, reason)

    def restart_orchestration(
        self, instance_id: str, *, restart_with_new_instance_id: bool = False
    ) -> str:
        """Start the instance's orchestrator again with its original input; returns the id.

        In place (the default) the instance must have finished; its history is replaced."""
        return self._core.restart(instance_id, restart_with_new_instance_id)

    def purge_orchestration(self, instance_id: str, *, recursive: bool = True) -> int:
        """Delete a finished instance's state and history; returns how many were deleted."""
        return self._core.purge(instance_id, recursive)

    def purge_orchestrations_by(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        runtime_status: Any = None,
        instance_id_prefix: Optional[str] = None,
        name: Optional[str] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> int:
        """Delete finished instances matching the filters; returns how many.

        ``progress(deleted_so_far)`` is called after each batch (for a progress bar)."""
        flt = self._core.filter(created_time_from, created_time_to, runtime_status,
                                instance_id_prefix, name)
        return self._core.purge_by(flt, progress)

    def query_orchestrations(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        runtime_status: Any = None,
        instance_id_prefix: Optional[str] = None,
        page_size: int = 100,
        continuation_token: Optional[str] = None,
        fetch_payloads: bool = True,
        name: Optional[str] = None,
        parent_instance_id: Optional[str] = None,
    ) -> QueryResult:
        """One page of instances (oldest first) matching the filters.

        ``runtime_status``: one status or several; ``instance_id_prefix``: ids starting with it;
        ``name``: the orchestrator name (exact); ``parent_instance_id``: the sub-orchestrations
        of that instance; ``created_time_*``: inclusive bounds.
        """
        flt = self._core.filter(created_time_from, created_time_to, runtime_status,
                                instance_id_prefix, name, parent_instance_id)
        return self._core.query(flt, page_size, continuation_token, fetch_payloads)

    def count_orchestrations(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        instance_id_prefix: Optional[str] = None,
        name: Optional[str] = None,
    ) -> dict[OrchestrationStatus, int]:
        """How many instances match the filters, per status (every status is a key)."""
        return self._core.count(self._core.filter(created_time_from, created_time_to, None,
                                                  instance_id_prefix, name))

    def get_orchestration_history(self, instance_id: str) -> list[HistoryEvent]:
        """The instance's history, decoded (HistoryCorruptError if the stored bytes are bad)."""
        return self._core.history(instance_id)

    def close(self) -> None:
        """Close the store connection (if this client opened it)."""
        self._core.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncClient:
    """The asyncio client: the methods of :class:`Client` as coroutines.

    The event loop never waits on the store. On an embedded store (SQLite) calls are short and
    run on the loop; a write that finds another writer holding the store (a worker in another
    process, the checkpointer) is not blocked on the lock: it yields to the loop and tries
    again, up to the store's busy timeout (then :class:`~durable_core.StoreBusyError`). On a
    networked store (PostgreSQL) every call runs on a small thread pool, so a slow query holds
    up only the request that made it. Starts are traced as in :class:`Client` (the caller's
    trace context goes with the call to the thread pool).
    """

    def __init__(
        self, store: Union[str, Backend] = DEFAULT_URL, *, converter: Optional[DataConverter] = None,
        max_threads: int = 8, tracer_provider: Any = None,
    ) -> None:
        self._core = _Core(store, converter, tracer_provider)
        self._write_queue: Optional[tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = None
        self._inline = self._core.backend.concurrency == "inline"
        self._threads: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._max_threads = max_threads

    @property
    def backend(self) -> Backend:
        """The store this client talks to."""
        return self._core.backend

    @property
    def converter(self) -> DataConverter:
        """The data converter payloads go through."""
        return self._core.converter

    async def _offload(self, op: Callable[[], _T]) -> _T:
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                self._max_threads, thread_name_prefix="durable_core client")
        return await asyncio.get_running_loop().run_in_executor(self._threads, op)

    async def _read(self, op: Callable[[], _T]) -> _T:
        if self._inline:
            return op()
        return await self._offload(op)

    async def _write(self, op: Callable[[], _T]) -> _T:
        """Run the store write ``op`` without blocking the loop (see the class docstring).

        On an inline store, writers of this client that find the store taken queue up (first
        come, first served) behind one that retries, so a burst of requests does not poll the
        lock all at once.
        """
        if not self._inline:
            return await self._offload(op)
        backend = self._core.backend
        loop = asyncio.get_running_loop()
        queue = self._write_queue
        if queue is None or queue[0] is not loop:
            queue = self._write_queue = (loop, asyncio.Lock())
        async with queue[1]:  # taken at once, without yielding, unless writers are waiting
            delay = 0.0
            deadline = loop.time() + backend.write_timeout
            while True:
                with backend.attempt():
                    try:
                        return op()
                    except TryLater:
                        pass
                if loop.time() >= deadline:
                    raise StoreBusyError(
                        f"another writer held the store for longer than its busy timeout "
                        f"({backend.write_timeout:g} s); nothing was written"
                    )
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, _WRITE_RETRY_MIN), _WRITE_RETRY_MAX)

    async def schedule_new_orchestration(
        self,
        orchestrator: Union[str, Callable[..., Any]],
        *,
        input: Any = None,
        instance_id: Optional[str] = None,
        start_at: Optional[datetime] = None,
        tags: Optional[dict[str, str]] = None,
        reuse_policy: Optional[ReuseIdPolicy] = None,
        version: Optional[str] = None,
    ) -> str:
        """See :meth:`Client.schedule_new_orchestration`."""
        core = self._core
        args = (orchestrator, input, instance_id, start_at, tags, reuse_policy, version)
        if core.tracing is not None and not self._inline:
            # the thread pool does not carry the caller's context (its span): take it along
            ctx = contextvars.copy_context()
            return await self._write(lambda: ctx.run(core.schedule, *args))
        return await self._write(lambda: core.schedule(*args))

    async def get_orchestration_state(
        self, instance_id: str, *, fetch_payloads: bool = True
    ) -> Optional[OrchestrationState]:
        """See :meth:`Client.get_orchestration_state`."""
        return await self._read(lambda: self._core.get_state(instance_id, fetch_payloads))

    async def _wait_until(self, instance_id: str,
                          done: Callable[[Optional[OrchestrationState]], bool],
                          timeout: Optional[float]) -> Optional[OrchestrationState]:
        core = self._core
        st = await self._read(lambda: core.get_state(instance_id))
        if done(st) or (timeout is not None and timeout <= 0):
            return st
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        w = _Watch(core.backend, instance_id, loop)
        try:
            while True:
                w.arm()  # armed before the read: a commit after it wakes us
                st = await self._read(lambda: core.get_state(instance_id))
                if done(st):
                    return st
                wait = SAFETY_POLL
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return st
                    wait = min(wait, remaining)
                await w.await_(wait)
        finally:
            w.close()

    async def _wait(
        self, instance_id: str, timeout: Optional[float], terminal: bool
    ) -> OrchestrationState:
        st = await self._wait_until(instance_id, _finished if terminal else _started, timeout)
        if st is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        if not (_finished(st) if terminal else _started(st)):
            raise _timeout_error(instance_id, timeout, "complete" if terminal else "start")
        return st

    async def wait_for_orchestration_start(
        self, instance_id: str, *, timeout: Optional[float] = None
    ) -> OrchestrationState:
        """See :meth:`Client.wait_for_orchestration_start`."""
        return await self._wait(instance_id, timeout, False)

    async def wait_for_orchestration_completion(
        self, instance_id: str, *, timeout: Optional[float] = None
    ) -> OrchestrationState:
        """See :meth:`Client.wait_for_orchestration_completion`."""
        return await self._wait(instance_id, timeout, True)

    async def wait_for_orchestration_change(
        self,
        instance_id: str,
        *,
        since: Optional[OrchestrationState] = None,
        timeout: float = 30.0,
    ) -> Optional[OrchestrationState]:
        """See :meth:`Client.wait_for_orchestration_change`; waits without blocking the loop.

        Cancelling the awaiting task (a long-poll whose HTTP client hung up) stops the wait and
        unregisters it at once.
        """
        if since is None:
            return await self.get_orchestration_state(instance_id)
        before = _state_key(since)
        return await self._wait_until(
            instance_id, lambda s: s is None or _state_key(s) != before, timeout)

    async def raise_orchestration_event(
        self, instance_id: str, event_name: str, *, data: Any = None
    ) -> None:
        """See :meth:`Client.raise_orchestration_event`."""
        await self._write(lambda: self._core.raise_event(instance_id, event_name, data))

    async def terminate_orchestration(
        self, instance_id: str, *, output: Any = None, recursive: bool = True
    ) -> None:
        """See :meth:`Client.terminate_orchestration`."""
        await self._write(lambda: self._core.terminate(instance_id, output, recursive))

    async def suspend_orchestration(self, instance_id: str, *, reason: Optional[str] = None) -> None:
        """See :meth:`Client.suspend_orchestration`."""
        await self._write(lambda: self._core.suspend(instance_id, reason))

    async def resume_orchestration(self, instance_id: str, *, reason: Optional[str] = None) -> None:
        """See :meth:`Client.resume_orchestration`."""
        await self._write(lambda: self._core.resume(instance_id, reason))

    async def restart_orchestration(
        self, instance_id: str, *, restart_with_new_instance_id: bool = False
    ) -> str:
        """See :meth:`Client.restart_orchestration`."""
        new_id = restart_with_new_instance_id
        return await self._write(lambda: self._core.restart(instance_id, new_id))

    async def purge_orchestration(self, instance_id: str, *, recursive: bool = True) -> int:
        """See :meth:`Client.purge_orchestration`."""
        return await self._write(lambda: self._core.purge(instance_id, recursive))

    async def purge_orchestrations_by(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        runtime_status: Any = None,
        instance_id_prefix: Optional[str] = None,
        name: Optional[str] = None,
    ) -> int:
        """See :meth:`Client.purge_orchestrations_by`."""
        flt = self._core.filter(created_time_from, created_time_to, runtime_status,
                                instance_id_prefix, name)
        return await self._write(lambda: self._core.purge_by(flt, None))

    async def query_orchestrations(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        runtime_status: Any = None,
        instance_id_prefix: Optional[str] = None,
        page_size: int = 100,
        continuation_token: Optional[str] = None,
        fetch_payloads: bool = True,
        name: Optional[str] = None,
        parent_instance_id: Optional[str] = None,
    ) -> QueryResult:
        """See :meth:`Client.query_orchestrations`."""
        flt = self._core.filter(created_time_from, created_time_to, runtime_status,
                                instance_id_prefix, name, parent_instance_id)
        return await self._read(
            lambda: self._core.query(flt, page_size, continuation_token, fetch_payloads))

    async def count_orchestrations(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        instance_id_prefix: Optional[str] = None,
        name: Optional[str] = None,
    ) -> dict[OrchestrationStatus, int]:
        """See :meth:`Client.count_orchestrations`."""
        flt = self._core.filter(created_time_from, created_time_to, None, instance_id_prefix, name)
        return await self._read(lambda: self._core.count(flt))

    async def get_orchestration_history(self, instance_id: str) -> list[HistoryEvent]:
        """See :meth:`Client.get_orchestration_history`."""
        return await self._read(lambda: self._core.history(instance_id))

    async def close(self) -> None:
        """Close the store connection (if this client opened it)."""
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None
        self._core.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
