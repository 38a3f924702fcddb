"""A runtime for unit tests: a temporary store, a clock the test controls, fake activities.

::

    from datetime import timedelta
    from durable_core.testing import TestEnvironment

    def test_reminder_after_thirty_days():
        with TestEnvironment(activities={"send_mail": lambda ctx, to: f"sent to {to}"}) as env:
            iid = env.client.schedule_new_orchestration(reminder, input="a@example.com")
            env.skip(timedelta(days=30))               # the 30-day timer fires now
            state = env.wait_for_completion(iid)
            assert state.output == "sent to a@example.com"

The store is an SQLite file in a temporary directory (deleted afterwards), so the test runs
exactly the code paths production runs -- the store layer, the worker, the engine -- with no
server. The clock the store and the worker read (:class:`TestClock`) starts at the real time
and only moves forward when the test says so: :meth:`TestEnvironment.skip` moves it by a
duration and wakes the worker, so timers, retry back-offs and delayed starts that come due
fire at once; with ``auto_skip=True`` the environment moves the clock to the next due timer
whenever the orchestrations have nothing else to do, so a month-long orchestration finishes in
milliseconds. Activities can be replaced by fakes by name; the test reads the history with
``env.client.get_orchestration_history``.

:class:`AsyncTestEnvironment` is the same for ``async`` tests (``async with``, ``await
env.skip(...)``, ``env.client`` is an :class:`~durable_core.AsyncClient`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Mapping, Optional, Union

from ..history import utc_now_us
from ..registry import Registry, default_registry
from ..status import OrchestrationState

__all__ = ["TestClock", "TestEnvironment", "AsyncTestEnvironment", "with_fakes"]


class TestClock:
    """Microseconds since the epoch, moved only by :meth:`advance` (thread-safe)."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_us: Optional[int] = None) -> None:
        self._lock = threading.Lock()
        self._now = utc_now_us() if start_us is None else int(start_us)
        self._real0 = utc_now_us()

    def __call__(self) -> int:
        # time still passes at the real rate between jumps, so code measuring short waits
        # (leases, heartbeats) behaves; jumps add on top
        with self._lock:
            return self._now + (utc_now_us() - self._real0)

    def advance(self, delta: Union[timedelta, int]) -> int:
        """Move the clock forward by ``delta`` (a timedelta, or microseconds); the new time."""
        us = int(delta.total_seconds() * 1_000_000) if isinstance(delta, timedelta) else int(delta)
        if us < 0:
            raise ValueError("the test clock only moves forward")
        with self._lock:
            self._now += us
        return self()


def with_fakes(registry: Registry, activities: Mapping[str, Callable[..., Any]]) -> Registry:
    """A copy of ``registry`` whose activities named in ``activities`` are replaced by the
    given functions (which take ``(ctx, input)`` like any activity). Unknown names are an
    error, so a typo does not silently run the real activity."""
    unknown = sorted(set(activities) - set(registry.activity_names()))
    if unknown:
        raise KeyError(f"no activity named {', '.join(unknown)} in the registry "
                       f"(known: {', '.join(registry.activity_names())})")
    out = Registry()
    for name in registry.orchestrator_names():
        out.add_orchestrator(registry.get_orchestrator(name), name,  # type: ignore[arg-type]
                             version=registry.orchestrator_version(name))
    for name in registry.activity_names():
        out.add_activity(activities.get(name) or registry.get_activity(name), name)  # type: ignore[arg-type]
    return out


class _Base:
    """What both environments share: the store, the clock, the worker and auto-skip."""

    __test__ = False

    def __init__(
        self,
        *,
        registry: Optional[Registry] = None,
        activities: Optional[Mapping[str, Callable[..., Any]]] = None,
        auto_skip: bool = False,
        start_us: Optional[int] = None,
        converter: Any = None,
        **worker_options: Any,
    ) -> None:
        from ..backends.sqlite import SqliteBackend

        reg = registry if registry is not None else default_registry
        if activities:
            reg = with_fakes(reg, activities)
        self.registry = reg
        self.clock = TestClock(start_us)
        self._dir = tempfile.mkdtemp(prefix="durable-core-test-")
        #: the store (an SQLite file in a temporary directory, on the test clock)
        self.backend = SqliteBackend(os.path.join(self._dir, "test.db"), clock=self.clock,
                                     lease_seconds=worker_options.pop("lease_seconds", 30.0))
        from ..runtime import Runtime

        self._runtime = Runtime(self.backend, registry=reg, converter=converter,
                                **worker_options)
        self.auto_skip = auto_skip
        self._skipper: Optional[threading.Thread] = None
        self._stop = threading.Event()

    @property
    def worker(self) -> Any:
        return self._runtime.worker

    def _advance(self, delta: Union[timedelta, int]) -> None:
        self.clock.advance(delta)
        self.worker.poke()

    def _next_due(self) -> Optional[int]:
        due = self.backend.next_visible(self.clock() + 100 * 365 * 86_400 * 1_000_000)
        return due[0] if due else None

    def _auto_skip_loop(self) -> None:
        """Jump the clock to the next due timer whenever the worker has been idle a moment."""
        steps = self.worker.stats
        last = None
        idle_since = time.monotonic()
        while not self._stop.wait(0.005):
            snap = (steps["steps"], steps["activities"], steps["commits"])
            busy = self.worker.busy
            if snap != last or busy:
                last = snap
                idle_since = time.monotonic()
                continue
            if time.monotonic() - idle_since < 0.02:
                continue
            nxt = self._next_due()
            if nxt is None:
                continue
            gap = nxt - self.clock()
            if gap > 0:
                self._advance(gap + 1)
            idle_since = time.monotonic()

    def _start_skipper(self) -> None:
        if self.auto_skip:
            self._skipper = threading.Thread(target=self._auto_skip_loop, daemon=True,
                                             name="durable_core test auto-skip")
            self._skipper.start()

    def _cleanup(self) -> None:
        self._stop.set()
        if self._skipper is not None:
            self._skipper.join()
        shutil.rmtree(self._dir, ignore_errors=True)


class TestEnvironment(_Base):
    """The synchronous test environment (``with TestEnvironment(...) as env:``).

    ``registry``: the orchestrators and activities (default: the decorators' registry);
    ``activities``: fakes by activity name; ``auto_skip``: move the clock to the next timer
    whenever nothing else is left to do; other keyword arguments go to the worker.
    """

    def __enter__(self) -> "TestEnvironment":
        self._runtime.start()
        #: a blocking client on the test store
        self.client = self._runtime.client
        self._start_skipper()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._runtime.stop(grace=5.0)
        finally:
            self._cleanup()

    def skip(self, delta: Union[timedelta, int]) -> None:
        """Move the clock forward by ``delta``; what comes due runs now (this returns at once;
        wait for the outcome with :meth:`wait_for_completion` or the client's waits)."""
        self._advance(delta)

    def now(self) -> int:
        """The test clock (µs since the epoch)."""
        return self.clock()

    def wait_for_completion(self, instance_id: str, timeout: float = 10.0) -> OrchestrationState:
        """Wait (in real seconds) for the instance to finish; TimeoutError after ``timeout``."""
        return self.client.wait_for_orchestration_completion(instance_id, timeout=timeout)

    def history(self, instance_id: str) -> list[Any]:
        """The instance's decoded history."""
        return self.client.get_orchestration_history(instance_id)


class AsyncTestEnvironment(_Base):
    """The asyncio test environment (``async with AsyncTestEnvironment(...) as env:``); the
    worker runs on the test's event loop."""

    async def __aenter__(self) -> "AsyncTestEnvironment":
        await self._runtime.astart()
        #: an asyncio client on the test store
        self.client = self._runtime.async_client
        self._start_skipper()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._runtime.astop(grace=5.0)
        finally:
            self._cleanup()

    async def skip(self, delta: Union[timedelta, int]) -> None:
        """Move the clock forward by ``delta`` and let the worker run what came due."""
        self._advance(delta)
        await asyncio.sleep(0)

    def now(self) -> int:
        return self.clock()

    async def wait_for_completion(self, instance_id: str, timeout: float = 10.0) -> OrchestrationState:
        return await self.client.wait_for_orchestration_completion(instance_id, timeout=timeout)

    async def history(self, instance_id: str) -> list[Any]:
        return await self.client.get_orchestration_history(instance_id)
