"""Timer wheel: repeated use (including every error path) leaks no references or memory."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import Any, Callable

import pytest

from conftest import both

wheel = pytest.mark.parametrize("TW", both("TimerWheel", "durable_core._timer_py"))


def _growth(fn: Callable[[], None], rounds: int) -> tuple[int, int]:
    """(bytes still allocated, objects still alive) after ``rounds`` more calls of ``fn``."""
    for _ in range(min(rounds, 10)):
        fn()
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    for _ in range(rounds):
        fn()
    gc.collect()
    objs = sum(1 for o in gc.get_objects() if id(o) not in before) - 1
    del before
    tracemalloc.start()
    try:
        snap_before = tracemalloc.take_snapshot()
        for _ in range(rounds):
            fn()
        gc.collect()
        snap_after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    mem = sum(s.size_diff for s in snap_after.compare_to(snap_before, "filename"))
    return mem, objs


class Item:
    pass


@wheel
def test_add_cancel_advance_cycles_do_not_leak(TW: Any) -> None:
    def work() -> None:
        w = TW(1, 0)
        hs = [w.add(i * 37 % 5000, Item()) for i in range(300)]
        for h in hs[::3]:
            w.cancel(h)
        w.advance(2500)
        w.add(10**9, Item())
        w.next_deadline()
        w.advance(5000)
        # w still holds timers: released by dealloc

    mem, objs = _growth(work, 100)
    assert objs < 5, objs  # a leak per call would be hundreds
    assert mem < 20_000, mem


@wheel
def test_error_paths_do_not_leak(TW: Any) -> None:
    w = TW(1, 0)
    item = Item()
    big = 1 << 80

    def work() -> None:
        for bad in (1.5, None, True, "x"):
            with pytest.raises(TypeError):
                w.add(bad, item)
            with pytest.raises(TypeError):
                w.cancel(bad)
            with pytest.raises(TypeError):
                w.advance(bad)
        with pytest.raises(OverflowError):
            w.add(big, item)
        with pytest.raises(OverflowError):
            w.add(1 << 50, item)
        with pytest.raises(ValueError):
            w.advance(-1)
        with pytest.raises(ValueError):
            TW(0, 0)
        assert w.cancel(big) is False
        assert w.cancel(-5) is False

    rc = sys.getrefcount(item)
    mem, objs = _growth(work, 100)
    assert sys.getrefcount(item) == rc
    assert objs < 5, objs  # a leak per call would be hundreds
    assert mem < 20_000, mem
    assert len(w) == 0


@wheel
def test_long_running_wheel_memory_is_bounded(TW: Any) -> None:
    """A steady state of add/fire/cancel reuses its storage."""
    w = TW(1, 0)
    state = {"t": 0}

    def work() -> None:
        t = state["t"]
        hs = [w.add(t + 1 + i % 50, i) for i in range(200)]
        for h in hs[1::2]:
            w.cancel(h)
        t += 60
        w.advance(t)
        state["t"] = t

    mem, objs = _growth(work, 200)
    assert len(w) == 0
    assert objs < 5, objs  # a leak per call would be hundreds
    assert mem < 20_000, mem
