"""TimerService: the asyncio timer service over the timer wheel (C and twin)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import pytest

from conftest import both
from durable_core import timer as timer_mod
from durable_core.timer import TimerService


@pytest.fixture(params=both("TimerWheel", "durable_core._timer_py"))
def service_cls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type:
    """TimerService over the C wheel or over the twin."""
    monkeypatch.setattr(timer_mod, "TimerWheel", request.param)
    return TimerService


class FakeClock:
    def __init__(self, t: int = 1_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), 30))


async def until(cond: Callable[[], bool]) -> None:
    """Let the loop run until ``cond()`` holds (bounded by the wait_for in ``run``)."""
    while not cond():
        await asyncio.sleep(0.001)


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_callbacks_run_when_due_with_fake_clock(service_cls: type) -> None:
    async def main() -> None:
        clock = FakeClock()
        svc = service_cls(clock=clock)
        calls: list[tuple[str, int]] = []
        svc.call_at(clock.t + 100, lambda x: calls.append(("b", x)), 2)
        svc.call_at(clock.t + 50, lambda x: calls.append(("a", x)), 1)
        svc.call_at(clock.t - 10, lambda: calls.append(("past", 0)))
        assert len(svc) == 3
        svc.start()
        await until(lambda: len(calls) == 1)
        assert calls == [("past", 0)]
        await turns()
        assert calls == [("past", 0)]  # nothing else is due by the fake clock
        clock.t += 50
        svc.wake()
        await until(lambda: len(calls) == 2)
        assert calls[-1] == ("a", 1)
        clock.t += 50
        svc.wake()
        await until(lambda: len(calls) == 3)
        assert calls[-1] == ("b", 2)
        assert len(svc) == 0
        await svc.aclose()

    run(main)


def test_callbacks_run_with_wall_clock(service_cls: type) -> None:
    async def main() -> None:
        svc = service_cls()
        svc.start()
        done = asyncio.Event()
        order: list[int] = []
        now = timer_mod._wall_clock_ms()
        svc.call_at(now + 30, order.append, 2)
        svc.call_at(now + 10, order.append, 1)
        svc.call_at(now + 40, lambda: done.set())
        await done.wait()
        assert order == [1, 2]
        await svc.aclose()

    run(main)


def test_earlier_timer_wakes_the_sleeping_service(service_cls: type) -> None:
    async def main() -> None:
        svc = service_cls()
        svc.start()
        now = timer_mod._wall_clock_ms()
        fired: list[str] = []
        svc.call_at(now + 3_600_000, fired.append, "late")  # an hour away
        await turns()  # the service is asleep until then
        assert svc.next_deadline() == now + 3_600_000
        ev = asyncio.Event()
        svc.call_at(now, lambda: (fired.append("early"), ev.set()))
        await ev.wait()  # would hang for an hour if the service did not wake
        assert fired == ["early"]
        assert len(svc) == 1
        await svc.aclose()
        assert len(svc) == 0

    run(main)


def test_cancel(service_cls: type) -> None:
    async def main() -> None:
        clock = FakeClock()
        svc = service_cls(clock=clock)
        svc.start()
        fired: list[int] = []
        h1 = svc.call_at(clock.t + 10, fired.append, 1)
        h2 = svc.call_at(clock.t + 20, fired.append, 2)
        assert svc.cancel(h1) is True
        assert svc.cancel(h1) is False
        clock.t += 20
        svc.wake()
        await until(lambda: fired == [2])
        assert svc.cancel(h2) is False  # already ran
        assert svc.cancel(987654321) is False
        await svc.aclose()

    run(main)


def test_callback_exceptions_are_logged_not_fatal(
    service_cls: type, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        clock = FakeClock()
        svc = service_cls(clock=clock)
        svc.start()
        ran: list[str] = []

        def boom() -> None:
            raise RuntimeError("sync boom")

        async def aboom() -> None:
            raise ValueError("async boom")

        svc.call_at(clock.t, boom)
        svc.call_at(clock.t, aboom)
        svc.call_at(clock.t, ran.append, "after")
        await until(lambda: ran == ["after"])
        await until(lambda: "async boom" in caplog.text)
        # the service still works
        svc.call_at(clock.t, ran.append, "again")
        await until(lambda: ran == ["after", "again"])
        await svc.aclose()

    with caplog.at_level(logging.ERROR, logger="durable_core.timer"):
        run(main)
    assert "sync boom" in caplog.text
    assert "async boom" in caplog.text


def test_async_callbacks_run_as_tasks(service_cls: type) -> None:
    async def main() -> None:
        clock = FakeClock()
        svc = service_cls(clock=clock)
        svc.start()
        got: list[Any] = []
        release = asyncio.Event()

        async def slow(x: int) -> None:
            got.append(("start", x))
            await release.wait()
            got.append(("end", x))

        svc.call_at(clock.t, slow, 1)
        svc.call_at(clock.t, got.append, "sync")
        await until(lambda: len(got) == 2)
        # the async callback runs as a task: it did not block the sync one
        assert got == ["sync", ("start", 1)]
        release.set()
        await until(lambda: len(got) == 3)
        assert got[-1] == ("end", 1)
        await svc.aclose()

    run(main)


def test_aclose_cancels_running_tasks_and_drops_timers(service_cls: type) -> None:
    async def main() -> None:
        clock = FakeClock()
        svc = service_cls(clock=clock)
        svc.start()
        cancelled = asyncio.Event()

        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        svc.call_at(clock.t, forever)
        svc.call_at(clock.t + 10_000, lambda: None)
        await until(lambda: len(svc) == 1)
        await turns()
        await svc.aclose()
        assert cancelled.is_set()
        assert len(svc) == 0
        with pytest.raises(RuntimeError):
            svc.call_at(clock.t, lambda: None)
        with pytest.raises(RuntimeError):
            svc.start()
        await svc.aclose()  # idempotent

    run(main)


def test_start_errors_and_bad_calls(service_cls: type) -> None:
    svc = service_cls(clock=FakeClock())
    with pytest.raises(RuntimeError):
        svc.start()  # no running loop
    with pytest.raises(TypeError):
        svc.call_at(1.5, lambda: None)
    with pytest.raises(TypeError):
        svc.call_at(10, "not callable")
    with pytest.raises(OverflowError):
        svc.call_at(1 << 70, lambda: None)

    async def main() -> None:
        svc.start()
        with pytest.raises(RuntimeError):
            svc.start()
        await svc.aclose()

    run(main)


def test_clock_going_backwards_is_tolerated(service_cls: type) -> None:
    async def main() -> None:
        clock = FakeClock(10_000)
        svc = service_cls(clock=clock)
        svc.start()
        fired: list[int] = []
        svc.call_at(10_050, fired.append, 1)
        clock.t = 9_000  # wall clock stepped back
        svc.wake()
        await turns()
        assert fired == [] and svc._task is not None and not svc._task.done()
        clock.t = 10_050
        svc.wake()
        await until(lambda: fired == [1])
        await svc.aclose()

    run(main)


def test_many_due_at_once_in_batches(service_cls: type) -> None:
    async def main() -> None:
        clock = FakeClock()
        svc = service_cls(clock=clock)
        n = 5000
        got: list[int] = []
        for i in range(n):
            svc.call_at(clock.t + i % 7, got.append, i)
        clock.t += 10
        svc.start()
        await until(lambda: len(got) == n)
        expect = sorted(range(n), key=lambda i: (i % 7, i))
        assert got == expect
        await svc.aclose()

    run(main)


def test_resolution(service_cls: type) -> None:
    async def main() -> None:
        clock = FakeClock(0)
        svc = service_cls(resolution_ms=100, clock=clock)
        svc.start()
        fired: list[int] = []
        svc.call_at(1, fired.append, 1)
        assert svc.next_deadline() == 100
        clock.t = 99
        svc.wake()
        await turns()
        assert fired == []
        clock.t = 100
        svc.wake()
        await until(lambda: fired == [1])
        await svc.aclose()

    run(main)


def test_broken_clock_is_logged(service_cls: type, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    svc = service_cls(clock=clock)

    async def main() -> None:
        svc.start()
        await turns()
        clock.t = 2e6  # type: ignore[assignment]  # a float
        svc.wake()
        await until(lambda: svc._task is None or svc._task.done())
        await svc.aclose()

    with caplog.at_level(logging.ERROR, logger="durable_core.timer"):
        run(main)
    assert "TimerService stopped" in caplog.text
