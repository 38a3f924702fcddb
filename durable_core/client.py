"""Clients: start, inspect, signal and manage orchestration instances.

:class:`Client` (blocking) and :class:`AsyncClient` (asyncio) have the same methods. Both talk
to the store directly -- there is no server -- so a client works beside a worker in one process
(``rt.client`` / ``rt.async_client``) or in another process sharing the store file.

Waiting for an instance is woken at once by a commit in the same process; across processes the
client polls the store with back-off (1 ms growing to 50 ms).

Payloads (inputs, event data, outputs) go through the data converter (JSON by default) before
anything is written: a value that cannot be serialized raises
:class:`~durable_core.errors.PayloadError` and the store is left untouched.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

from . import history as h
from .backends import DEFAULT_URL, Backend, open_backend
from .backends.base import InstanceRow, ReuseIdPolicy, WouldBlock
from .converter import DataConverter, default_converter
from .errors import OrchestrationNotFoundError, StoreBusyError
from .history import HistoryEvent
from .status import OrchestrationState, OrchestrationStatus

__all__ = ["Client", "AsyncClient", "QueryResult", "ReuseIdPolicy"]

_PENDING = int(OrchestrationStatus.PENDING)
_TERMINAL = frozenset(
    int(s)
    for s in (
        OrchestrationStatus.COMPLETED,
        OrchestrationStatus.FAILED,
        OrchestrationStatus.TERMINATED,
        OrchestrationStatus.CANCELED,
    )
)
_POLL_MIN = 0.001
_POLL_MAX = 0.05
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
) -> Optional[list[OrchestrationStatus]]:
    if runtime_status is None:
        return None
    if isinstance(runtime_status, (OrchestrationStatus, int)):
        return [OrchestrationStatus(runtime_status)]
    return [OrchestrationStatus(s) for s in runtime_status]


class _Core:
    """What both clients share: every operation except waiting, synchronous and short."""

    def __init__(self, store: Union[str, Backend], converter: Optional[DataConverter]) -> None:
        if isinstance(store, Backend):
            self.backend = store
            self._own = False
        else:
            self.backend = open_backend(store)
            self._own = True
            # a client process (an API beside a worker process) checkpoints off its event loop
            # too, instead of inside whichever of its commits crosses SQLite's WAL threshold
            start_ckpt = getattr(self.backend, "start_background_checkpoints", None)
            if start_ckpt is not None:
                start_ckpt()
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
    ) -> str:
        name = _name_of(orchestrator)
        data = self.converter.serialize(input)
        if instance_id is None:
            instance_id = os.urandom(16).hex()
        elif not isinstance(instance_id, str) or not instance_id:
            raise ValueError("instance_id must be a non-empty string")
        if tags is not None:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
                raise TypeError("tags must map str to str")
        self.backend.create_instance(
            instance_id,
            name,
            data,
            start_at=_us(start_at),
            tags=dict(tags) if tags else None,
            reuse_policy=reuse_policy or ReuseIdPolicy.ERROR,
            now=h.utc_now_us(),
        )
        return instance_id

    def get_state(self, instance_id: str, fetch_payloads: bool) -> Optional[OrchestrationState]:
        return self.state(self.backend.get_instance(instance_id), fetch_payloads)

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        if not isinstance(event_name, str) or not event_name:
            raise ValueError("event_name must be a non-empty string")
        payload = self.converter.serialize(data)
        now = h.utc_now_us()
        self.backend.enqueue_event(instance_id, h.EventRaised(-1, now, event_name, payload), now=now)

    def terminate(self, instance_id: str, output: Any, recursive: bool) -> None:
        payload = self.converter.serialize(output)
        self.backend.terminate(instance_id, payload, recursive=recursive, now=h.utc_now_us())

    def suspend(self, instance_id: str, reason: Optional[str]) -> None:
        payload = self.converter.serialize(reason)
        now = h.utc_now_us()
        self.backend.enqueue_event(instance_id, h.ExecutionSuspended(-1, now, payload), now=now)

    def resume(self, instance_id: str, reason: Optional[str]) -> None:
        payload = self.converter.serialize(reason)
        now = h.utc_now_us()
        self.backend.enqueue_event(instance_id, h.ExecutionResumed(-1, now, payload), now=now)

    def restart(self, instance_id: str, new_id: bool) -> str:
        return self.backend.restart(
            instance_id, uuid.uuid4().hex if new_id else None, now=h.utc_now_us()
        )

    def purge(self, instance_id: str, recursive: bool) -> int:
        return self.backend.purge(instance_id, recursive=recursive)

    def purge_by(
        self,
        created_time_from: Optional[datetime],
        created_time_to: Optional[datetime],
        runtime_status: Any,
    ) -> int:
        return self.backend.purge_by(
            created_from=_us(created_time_from),
            created_to=_us(created_time_to),
            statuses=_statuses(runtime_status),
        )

    def query(
        self,
        created_time_from: Optional[datetime],
        created_time_to: Optional[datetime],
        runtime_status: Any,
        instance_id_prefix: Optional[str],
        page_size: int,
        continuation_token: Optional[str],
        fetch_payloads: bool,
        name: Optional[str] = None,
        parent_instance_id: Optional[str] = None,
    ) -> QueryResult:
        page = self.backend.query(
            created_from=_us(created_time_from),
            created_to=_us(created_time_to),
            statuses=_statuses(runtime_status),
            instance_id_prefix=instance_id_prefix,
            page_size=page_size,
            continuation_token=continuation_token,
            fetch_payloads=fetch_payloads,
            name=name,
            parent_instance_id=parent_instance_id,
        )
        return QueryResult(
            [self.state(r, fetch_payloads) for r in page.rows],  # type: ignore[misc]
            page.continuation_token,
        )

    def count(
        self,
        created_time_from: Optional[datetime],
        created_time_to: Optional[datetime],
        instance_id_prefix: Optional[str],
        name: Optional[str],
    ) -> dict[OrchestrationStatus, int]:
        counts = self.backend.count_by_status(
            created_from=_us(created_time_from),
            created_to=_us(created_time_to),
            instance_id_prefix=instance_id_prefix,
            name=name,
        )
        return {s: counts.get(s, 0) for s in OrchestrationStatus}

    def history(self, instance_id: str) -> list[HistoryEvent]:
        data = self.backend.get_history(instance_id)
        if data is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        if not data:
            return []
        return list(h.decode(data))

    def check(self, instance_id: str, until_terminal: bool) -> Optional[OrchestrationState]:
        """The state if the wait is over, else None; raises for an unknown id."""
        row = self.backend.get_instance(instance_id)
        if row is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        status = int(row.status)
        done = status in _TERMINAL if until_terminal else status != _PENDING
        return self.state(row) if done else None

    def close(self) -> None:
        if self._own:
            self.backend.close()


def _timeout_error(instance_id: str, timeout: Optional[float], what: str) -> TimeoutError:
    return TimeoutError(f"orchestration {instance_id!r} did not {what} within {timeout} s")


class Client:
    """Blocking client for the store at ``store`` (a URL or an open backend).

    Every method writes at most one transaction; see the module docstring for waiting.
    """

    def __init__(
        self, store: Union[str, Backend] = DEFAULT_URL, *, converter: Optional[DataConverter] = None
    ) -> None:
        self._core = _Core(store, converter)

    @property
    def backend(self) -> Backend:
        return self._core.backend

    def schedule_new_orchestration(
        self,
        orchestrator: Union[str, Callable[..., Any]],
        *,
        input: Any = None,
        instance_id: Optional[str] = None,
        start_at: Optional[datetime] = None,
        tags: Optional[dict[str, str]] = None,
        reuse_policy: Optional[ReuseIdPolicy] = None,
    ) -> str:
        """Start an orchestration (at ``start_at`` if given); returns its instance id.

        Raises OrchestrationAlreadyExistsError if ``instance_id`` names an existing live
        instance (or any existing one, unless ``reuse_policy`` is REPLACE_IF_TERMINAL)."""
        return self._core.schedule(orchestrator, input, instance_id, start_at, tags, reuse_policy)

    def get_orchestration_state(
        self, instance_id: str, *, fetch_payloads: bool = True
    ) -> Optional[OrchestrationState]:
        """The instance's current state, or ``None`` for an unknown id."""
        return self._core.get_state(instance_id, fetch_payloads)

    def _wait(self, instance_id: str, timeout: Optional[float], terminal: bool) -> OrchestrationState:
        core = self._core
        st = core.check(instance_id, terminal)  # the common case: no need to wait
        if st is not None:
            return st
        deadline = None if timeout is None else time.monotonic() + timeout
        ev = threading.Event()
        notifier = core.backend.notifier
        notifier.add_waiter(instance_id, ev.set)
        try:
            poll = _POLL_MIN
            while True:
                ev.clear()
                st = core.check(instance_id, terminal)
                if st is not None:
                    return st
                wait = poll
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _timeout_error(
                            instance_id, timeout, "complete" if terminal else "start"
                        )
                    wait = min(wait, remaining)
                if ev.wait(wait):
                    poll = _POLL_MIN
                else:
                    poll = min(poll * 2, _POLL_MAX)
        finally:
            notifier.remove_waiter(instance_id, ev.set)

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
    ) -> int:
        """Delete finished instances matching the filters; returns how many."""
        return self._core.purge_by(created_time_from, created_time_to, runtime_status)

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
        return self._core.query(
            created_time_from, created_time_to, runtime_status, instance_id_prefix, page_size,
            continuation_token, fetch_payloads, name, parent_instance_id,
        )

    def count_orchestrations(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        instance_id_prefix: Optional[str] = None,
        name: Optional[str] = None,
    ) -> dict[OrchestrationStatus, int]:
        """How many instances match the filters, per status (every status is a key)."""
        return self._core.count(created_time_from, created_time_to, instance_id_prefix, name)

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
        meanwhile). With ``since=None`` it returns the current state at once. Woken by the
        commit itself in this process; see the module docstring for other processes.
        """
        core = self._core
        st = core.get_state(instance_id, True)
        if since is None or st is None or _state_key(st) != _state_key(since) or timeout <= 0:
            return st
        before = _state_key(since)
        deadline = time.monotonic() + timeout
        ev = threading.Event()
        notifier = core.backend.notifier
        notifier.add_waiter(instance_id, ev.set)
        try:
            poll = _POLL_MIN
            while True:
                ev.clear()
                st = core.get_state(instance_id, True)
                if st is None or _state_key(st) != before:
                    return st
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return st
                if ev.wait(min(poll, remaining)):
                    poll = _POLL_MIN
                else:
                    poll = min(poll * 2, _POLL_MAX)
        finally:
            notifier.remove_waiter(instance_id, ev.set)

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

    Store operations are short and run on the calling event loop; waits are woken by in-process
    commits at once and otherwise poll with back-off without blocking the loop. A write that finds
    another writer holding the store (a worker in another process, the checkpointer) is not
    blocked on the lock either: it yields to the loop and tries again, up to the store's busy
    timeout (then :class:`~durable_core.StoreBusyError`), so an HTTP server keeps answering
    meanwhile.
    """

    def __init__(
        self, store: Union[str, Backend] = DEFAULT_URL, *, converter: Optional[DataConverter] = None
    ) -> None:
        self._core = _Core(store, converter)
        self._write_queue: Optional[tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = None

    @property
    def backend(self) -> Backend:
        return self._core.backend

    async def _write(self, op: Callable[[], _T]) -> _T:
        """Run the store write ``op``; while another writer holds the store, wait on the loop.

        Writers of this client that find the store taken queue up (first come, first served)
        behind one that retries, so a burst of requests does not poll the lock all at once.
        """
        backend = self._core.backend
        loop = asyncio.get_running_loop()
        queue = self._write_queue
        if queue is None or queue[0] is not loop:
            queue = self._write_queue = (loop, asyncio.Lock())
        async with queue[1]:  # taken at once, without yielding, unless writers are waiting
            delay = 0.0
            deadline = loop.time() + backend.busy_timeout
            while True:
                with backend.nonblocking():
                    try:
                        return op()
                    except WouldBlock:
                        pass
                if loop.time() >= deadline:
                    raise StoreBusyError(
                        f"another writer held the store for longer than its busy timeout "
                        f"({backend.busy_timeout:g} s); nothing was written"
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
    ) -> str:
        """See :meth:`Client.schedule_new_orchestration`."""
        core = self._core
        return await self._write(
            lambda: core.schedule(orchestrator, input, instance_id, start_at, tags, reuse_policy)
        )

    async def get_orchestration_state(
        self, instance_id: str, *, fetch_payloads: bool = True
    ) -> Optional[OrchestrationState]:
        """See :meth:`Client.get_orchestration_state`."""
        return self._core.get_state(instance_id, fetch_payloads)

    async def _wait(
        self, instance_id: str, timeout: Optional[float], terminal: bool
    ) -> OrchestrationState:
        core = self._core
        st = core.check(instance_id, terminal)  # the common case: no need to wait
        if st is not None:
            return st
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        box: list[Optional[asyncio.Future[None]]] = [None]

        def wake() -> None:
            f = box[0]
            if f is not None:
                try:
                    loop.call_soon_threadsafe(_set_done, f)
                except RuntimeError:  # pragma: no cover - loop closed
                    pass

        notifier = core.backend.notifier
        notifier.add_waiter(instance_id, wake)
        try:
            poll = _POLL_MIN
            while True:
                fut: asyncio.Future[None] = loop.create_future()
                box[0] = fut
                st = core.check(instance_id, terminal)
                if st is not None:
                    return st
                wait = poll
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise _timeout_error(
                            instance_id, timeout, "complete" if terminal else "start"
                        )
                    wait = min(wait, remaining)
                th = loop.call_later(wait, _set_done, fut)
                await fut
                if th.cancelled() or loop.time() < th.when():
                    poll = _POLL_MIN
                else:
                    poll = min(poll * 2, _POLL_MAX)
                th.cancel()
        finally:
            box[0] = None
            notifier.remove_waiter(instance_id, wake)

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
    ) -> int:
        """See :meth:`Client.purge_orchestrations_by`."""
        return await self._write(
            lambda: self._core.purge_by(created_time_from, created_time_to, runtime_status)
        )

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
        return self._core.query(
            created_time_from, created_time_to, runtime_status, instance_id_prefix, page_size,
            continuation_token, fetch_payloads, name, parent_instance_id,
        )

    async def count_orchestrations(
        self,
        *,
        created_time_from: Optional[datetime] = None,
        created_time_to: Optional[datetime] = None,
        instance_id_prefix: Optional[str] = None,
        name: Optional[str] = None,
    ) -> dict[OrchestrationStatus, int]:
        """See :meth:`Client.count_orchestrations`."""
        return self._core.count(created_time_from, created_time_to, instance_id_prefix, name)

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
        core = self._core
        st = core.get_state(instance_id, True)
        if since is None or st is None or _state_key(st) != _state_key(since) or timeout <= 0:
            return st
        before = _state_key(since)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        box: list[Optional[asyncio.Future[None]]] = [None]

        def wake() -> None:  # may run on another thread (the store's committer)
            f = box[0]
            if f is not None:
                try:
                    loop.call_soon_threadsafe(_set_done, f)
                except RuntimeError:  # pragma: no cover - loop closed
                    pass

        notifier = core.backend.notifier
        notifier.add_waiter(instance_id, wake)
        try:
            poll = _POLL_MIN
            while True:
                fut: asyncio.Future[None] = loop.create_future()
                box[0] = fut  # armed before the read: a commit after it wakes us
                st = core.get_state(instance_id, True)
                if st is None or _state_key(st) != before:
                    return st
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return st
                th = loop.call_later(min(poll, remaining), _set_done, fut)
                await fut
                woken = loop.time() < th.when()
                th.cancel()
                poll = _POLL_MIN if woken else min(poll * 2, _POLL_MAX)
        finally:
            box[0] = None
            notifier.remove_waiter(instance_id, wake)

    async def get_orchestration_history(self, instance_id: str) -> list[HistoryEvent]:
        """See :meth:`Client.get_orchestration_history`."""
        return self._core.history(instance_id)

    async def close(self) -> None:
        """Close the store connection (if this client opened it)."""
        self._core.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _state_key(st: OrchestrationState) -> tuple[Any, ...]:
    """What a watcher compares: status, last update and custom status."""
    return (st.runtime_status, st.last_updated_at, st.serialized_custom_status)


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)
