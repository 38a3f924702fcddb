"""Timers: the hierarchical timer wheel and the asyncio timer service built on it.

:class:`TimerWheel` is the C type ``durable_core._core.TimerWheel`` (or its pure-Python twin
``durable_core._timer_py.TimerWheel`` when the extension is off); its exact semantics are in
the twin's module docstring. :class:`TimerService` runs callbacks when their deadline comes,
on the event loop: the runtime keeps durable timers, retry back-offs, lease deadlines and
long-poll time-outs in one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Callable

from . import _impl

__all__ = ["TimerWheel", "TimerService"]

#: The timer wheel (C when the extension is in use, else the pure-Python twin).
TimerWheel: Any = _impl.pick("TimerWheel", "durable_core._timer_py")

logger = logging.getLogger("durable_core.timer")

# Callbacks run per batch before the service yields to the loop (keeps the loop responsive
# when a large batch of timers comes due at once).
_BATCH = 1024


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class TimerService:
    """Runs ``callback(*args)`` on the event loop when its deadline (epoch ms) comes.

    The service sleeps until the wheel's next deadline and wakes early when an earlier timer
    is added. A callback that returns an awaitable has it scheduled as a task; exceptions from
    callbacks and from those tasks are logged (logger ``durable_core.timer``) and never stop
    the service. All methods are called on the event loop's thread.

    ``clock`` returns the current time in epoch milliseconds (default: the wall clock). If it
    goes backwards the service waits for it to catch up rather than failing. After changing a
    fake clock in a test, call :meth:`wake` so the sleeping service looks at it again.
    """

    def __init__(
        self, *, resolution_ms: int = 1, clock: Callable[[], int] | None = None
    ) -> None:
        self._clock: Callable[[], int] = clock if clock is not None else _wall_clock_ms
        self._wheel: Any = TimerWheel(resolution_ms, self._clock())
        self._last: int = self._wheel.now_ms
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._sleep_until: int | None = None  # deadline the sleeping service will wake at
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- public API --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the service's task on the running loop (call from inside the loop)."""
        if self._closed:
            raise RuntimeError("TimerService is closed")
        if self._task is not None:
            raise RuntimeError("TimerService already started")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="durable_core.TimerService")
        self._task.add_done_callback(self._service_done)

    async def aclose(self) -> None:
        """Stop the service: pending timers are dropped, running callback tasks cancelled."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            if not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            # a failure of the service task was logged by _service_done
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._wheel.clear()

    def call_at(self, deadline_ms: int, callback: Callable[..., Any], *args: Any) -> int:
        """Run ``callback(*args)`` at ``deadline_ms`` (epoch ms); returns a handle.

        A deadline in the past runs at the service's next turn. Raises what
        :meth:`TimerWheel.add` raises for a bad deadline.
        """
        if self._closed:
            raise RuntimeError("TimerService is closed")
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        handle: int = self._wheel.add(deadline_ms, (callback, args))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._sleep_until is None or deadline_ms < self._sleep_until:
                waiter.set_result(None)
        return handle

    def cancel(self, handle: int) -> bool:
        """Cancel a pending callback; ``False`` if it already ran (or is running) or is unknown."""
        return bool(self._wheel.cancel(handle))

    def wake(self) -> None:
        """Make the sleeping service read the clock now (after a clock change)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def next_deadline(self) -> int | None:
        """The earliest pending deadline (epoch ms, rounded up to the resolution), or None."""
        result: int | None = self._wheel.next_deadline()
        return result

    def __len__(self) -> int:
        return len(self._wheel)

    # -- the service task --------------------------------------------------------------------

    def _now(self) -> int:
        now = self._clock()
        if now > self._last:
            self._last = now
        return self._last

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wheel = self._wheel
        while True:
            due = wheel.advance(self._now())
            for i, (callback, args) in enumerate(due):
                if i and i % _BATCH == 0:
                    await asyncio.sleep(0)
                self._invoke(loop, callback, args)
            del due
            nd = wheel.next_deadline()
            if nd is not None and nd <= self._now():
                await asyncio.sleep(0)  # more is due already: let the loop breathe, go on
                continue
            waiter = loop.create_future()
            self._waiter = waiter
            self._sleep_until = nd
            timer = None
            if nd is not None:
                timer = loop.call_later((nd - self._last) / 1000.0, _wake, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                self._sleep_until = None
                if timer is not None:
                    timer.cancel()

    def _invoke(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result, loop=loop)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            logger.exception("timer callback %r failed", callback)

    def _service_done(self, task: asyncio.Task[None]) -> None:
        # The loop only ends by cancellation; anything else (a clock returning a non-int, say)
        # stopped the timers and must not pass silently.
        if not task.cancelled() and task.exception() is not None:
            logger.error("TimerService stopped", exc_info=task.exception())

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)  # type: ignore[arg-type]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("timer callback task %r failed", task, exc_info=exc)
