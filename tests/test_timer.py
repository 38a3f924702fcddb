"""Timer wheel: behaviour of the C type and its pure-Python twin, including every bad input."""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any

import pytest

from conftest import both

wheel = pytest.mark.parametrize("TW", both("TimerWheel", "durable_core._timer_py"))

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
RANGE = 1 << 42  # ticks


class Obj:
    """A weak-referenceable item."""

    def __init__(self, name: str = "") -> None:
        self.name = name


class Idx:
    """An int-like object (has __index__), as numpy integers are."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __index__(self) -> int:
        return self.v


# ------------------------------------------------------------------------------------------
# basic semantics


@wheel
def test_fires_in_deadline_order_ties_in_insertion_order(TW: Any) -> None:
    w = TW(1, 0)
    for d, name in [(30, "c1"), (10, "a"), (30, "c2"), (20, "b"), (30, "c3"), (10, "a2")]:
        w.add(d, name)
    assert len(w) == 6
    assert w.next_deadline() == 10
    assert w.advance(9) == []
    assert w.advance(10) == ["a", "a2"]
    assert w.next_deadline() == 20
    assert w.advance(100) == ["b", "c1", "c2", "c3"]
    assert len(w) == 0
    assert w.next_deadline() is None
    assert w.advance(100) == []


@wheel
def test_defaults(TW: Any) -> None:
    import time

    before = time.time_ns() // 1_000_000
    w = TW()
    after = time.time_ns() // 1_000_000
    assert w.resolution_ms == 1
    assert before <= w.start_ms <= after
    assert w.now_ms == w.start_ms
    w2 = TW(resolution_ms=5, start_ms=100)
    assert (w2.resolution_ms, w2.start_ms, w2.now_ms) == (5, 100, 100)
    assert "pending=0" in repr(w2)


@wheel
def test_past_deadlines_fire_on_next_advance(TW: Any) -> None:
    w = TW(1, 1000)
    w.add(5, "before-start")
    w.add(INT64_MIN, "min")
    assert w.next_deadline() == 1000
    assert w.advance(1000) == ["min", "before-start"]
    w.advance(5000)
    w.add(4000, "past")
    w.add(5000, "now")
    assert w.next_deadline() == 4000  # already due
    # fires on the next advance even at the same time
    assert w.advance(5000) == ["past", "now"]


@wheel
def test_resolution_rounds_up_never_early(TW: Any) -> None:
    w = TW(10, 0)
    w.add(11, "a")
    w.add(20, "b")
    w.add(21, "c")
    assert w.next_deadline() == 20
    assert w.advance(19) == []
    assert w.advance(20) == ["a", "b"]
    assert w.next_deadline() == 30
    assert w.advance(29) == []
    w.add(25, "d")  # past 'now' (29) but its firing time is 30
    assert w.advance(30) == ["c", "d"]
    # negative start
    w = TW(7, -100)
    w.add(-99, "x")
    assert w.next_deadline() == -93
    assert w.advance(-94) == []
    assert w.advance(-93) == ["x"]


@wheel
def test_cancel(TW: Any) -> None:
    w = TW(1, 0)
    h1 = w.add(10, "a")
    h2 = w.add(10, "b")
    h3 = w.add(5, "c")
    assert w.cancel(h3) is True
    assert w.cancel(h3) is False
    assert w.next_deadline() == 10
    assert len(w) == 2
    assert w.cancel(h1) is True
    assert w.advance(10) == ["b"]
    assert w.cancel(h2) is False  # already fired
    assert w.cancel(-1) is False
    assert w.cancel(1 << 70) is False
    assert w.cancel(123456789) is False
    assert w.cancel(Idx(h2)) is False
    h4 = w.add(20, "d")
    assert w.cancel(Idx(h4)) is True
    assert len(w) == 0


@wheel
def test_stale_handle_does_not_cancel_a_reused_slot(TW: Any) -> None:
    w = TW(1, 0)
    handles = [w.add(10, i) for i in range(5)]
    assert all(w.cancel(h) for h in handles)
    new = [w.add(20, i) for i in range(5)]  # reuse the freed nodes
    assert not any(w.cancel(h) for h in handles)
    assert len(w) == 5
    assert set(new).isdisjoint(handles)
    assert w.advance(20) == [0, 1, 2, 3, 4]


@wheel
def test_far_future_and_range(TW: Any) -> None:
    w = TW(1, 0)
    w.add(RANGE - 1, "last")
    w.add(3 * 365 * 86_400_000, "3y")
    w.add(1, "soon")
    with pytest.raises(OverflowError):
        w.add(RANGE, "x")
    with pytest.raises(OverflowError):
        w.add(INT64_MAX, "x")
    assert w.advance(1) == ["soon"]
    assert w.next_deadline() == 3 * 365 * 86_400_000
    assert w.advance(3 * 365 * 86_400_000) == ["3y"]
    assert w.next_deadline() == RANGE - 1
    assert w.advance(RANGE - 2) == []
    assert w.advance(RANGE - 1) == ["last"]
    # a now past the range is allowed and fires everything
    w.add(RANGE - 1, "again")
    assert w.advance(INT64_MAX) == ["again"]
    assert len(w) == 0


@wheel
def test_range_with_resolution_and_start(TW: Any) -> None:
    w = TW(1000, 5)
    last = 5 + (RANGE - 1) * 1000
    w.add(last, "ok")
    w.add(last - 999, "ok2")  # same tick
    with pytest.raises(OverflowError):
        w.add(last + 1, "x")
    assert w.next_deadline() == last
    assert w.advance(last) == ["ok2", "ok"]
    # firing time must fit in 64 bits: start near the top
    w = TW(1, INT64_MAX - 10)
    w.add(INT64_MAX, "top")
    assert w.advance(INT64_MAX) == ["top"]
    w = TW(1 << 40, INT64_MAX - 10)
    with pytest.raises(OverflowError):
        w.add(INT64_MAX, "firing time beyond int64")
    w.add(INT64_MAX - 10, "at start")
    assert w.advance(INT64_MAX) == ["at start"]


@wheel
def test_bursts_with_one_deadline(TW: Any) -> None:
    w = TW(1, 0)
    n = 5000
    for i in range(n):
        w.add(777_777, i)
    for i in range(n):
        w.add(777_778, n + i)
    assert w.next_deadline() == 777_777
    assert w.advance(777_777) == list(range(n))
    assert w.advance(10**9) == list(range(n, 2 * n))


@wheel
def test_advance_across_levels_in_small_steps(TW: Any) -> None:
    w = TW(1, 0)
    deadlines = [1, 63, 64, 65, 4095, 4096, 4097, 262_143, 262_144, 300_000]
    for d in deadlines:
        w.add(d, d)
    got = []
    t = 0
    while len(w):
        t = w.next_deadline()
        got.extend(w.advance(t))
        # nothing fires before its deadline
        assert all(d <= t for d in got)
    assert got == deadlines


@wheel
def test_clear(TW: Any) -> None:
    w = TW(1, 0)
    items = [Obj() for _ in range(10)]
    refs = [weakref.ref(o) for o in items]
    hs = [w.add(i * 100, o) for i, o in enumerate(items)]
    del items
    assert w.clear() == 10
    assert len(w) == 0 and w.next_deadline() is None
    gc.collect()
    assert all(r() is None for r in refs)
    assert not any(w.cancel(h) for h in hs)
    fresh = [w.add(5, i) for i in range(10)]  # storage is reused: old handles stay stale
    assert not any(w.cancel(h) for h in hs)
    assert len(w) == 10 and set(fresh).isdisjoint(hs)
    assert w.clear() == 10
    assert w.advance(10_000) == []
    w.add(20_000, "x")
    assert w.advance(20_000) == ["x"]


# ------------------------------------------------------------------------------------------
# bad input


BAD_INTS = [1.0, 1.5, "1", b"1", None, True, False, [1], object()]


@wheel
@pytest.mark.parametrize("bad", BAD_INTS, ids=repr)
def test_non_int_times_raise_type_error(TW: Any, bad: Any) -> None:
    w = TW(1, 0)
    with pytest.raises(TypeError):
        w.add(bad, "x")
    with pytest.raises(TypeError):
        w.advance(bad)
    with pytest.raises(TypeError):
        w.cancel(bad)
    if bad is not None:
        with pytest.raises(TypeError):
            TW(1, bad)
        with pytest.raises(TypeError):
            TW(bad, 0)
    assert len(w) == 0 and w.now_ms == 0


@wheel
def test_int_like_objects_are_accepted(TW: Any) -> None:
    class MyInt(int):
        pass

    w = TW(Idx(2), MyInt(10))
    assert w.resolution_ms == 2 and w.start_ms == 10
    w.add(Idx(14), "a")
    w.add(MyInt(12), "b")
    assert w.advance(Idx(14)) == ["b", "a"]


@wheel
def test_out_of_int64_range(TW: Any) -> None:
    w = TW(1, 0)
    for v in (INT64_MAX + 1, INT64_MIN - 1, 1 << 100):
        with pytest.raises(OverflowError):
            w.add(v, "x")
        with pytest.raises(OverflowError):
            w.advance(v)
        with pytest.raises(OverflowError):
            TW(1, v)
    with pytest.raises(OverflowError):
        TW(1 << 64, 0)
    assert len(w) == 0 and w.now_ms == 0


@wheel
def test_bad_resolution(TW: Any) -> None:
    for r in (0, -1, INT64_MIN):
        with pytest.raises(ValueError):
            TW(r, 0)


@wheel
def test_time_moving_backwards(TW: Any) -> None:
    w = TW(1, 100)
    with pytest.raises(ValueError):
        w.advance(99)
    w.add(150, "a")
    assert w.advance(120) == []
    with pytest.raises(ValueError, match="backwards"):
        w.advance(119)
    assert w.now_ms == 120
    assert w.advance(120) == []
    assert w.advance(150) == ["a"]


@wheel
def test_wrong_arity(TW: Any) -> None:
    w = TW(1, 0)
    with pytest.raises(TypeError):
        w.add(1)
    with pytest.raises(TypeError):
        w.add(1, 2, 3)
    with pytest.raises(TypeError):
        w.advance()
    with pytest.raises(TypeError):
        TW(1, 0, 5)


@wheel
def test_index_raising_propagates(TW: Any) -> None:
    class Bad:
        def __index__(self) -> int:
            raise ZeroDivisionError("boom")

    w = TW(1, 0)
    with pytest.raises(ZeroDivisionError):
        w.add(Bad(), "x")
    with pytest.raises(ZeroDivisionError):
        w.cancel(Bad())
    assert len(w) == 0


# ------------------------------------------------------------------------------------------
# item references


@wheel
def test_items_released_on_fire_cancel_and_dealloc(TW: Any) -> None:
    w = TW(1, 0)
    fired, cancelled, kept = Obj("f"), Obj("c"), Obj("k")
    base = [sys.getrefcount(o) for o in (fired, cancelled, kept)]
    w.add(10, fired)
    h = w.add(20, cancelled)
    w.add(30, kept)
    assert [sys.getrefcount(o) for o in (fired, cancelled, kept)] == [b + 1 for b in base]
    out = w.advance(10)
    assert out == [fired]
    del out
    assert [sys.getrefcount(o) for o in (fired, cancelled, kept)] == [
        base[0], base[1] + 1, base[2] + 1
    ]
    assert w.cancel(h)
    assert [sys.getrefcount(o) for o in (fired, cancelled, kept)] == [
        base[0], base[1], base[2] + 1
    ]
    ref = weakref.ref(kept)
    del kept
    assert ref() is not None
    del w
    gc.collect()
    assert ref() is None


@wheel
def test_cycle_through_item_is_collected(TW: Any) -> None:
    class Holder:
        pass

    w = TW(1, 0)
    holder = Holder()
    holder.wheel = w  # type: ignore[attr-defined]
    w.add(1_000, holder)
    ref_h = weakref.ref(holder)
    del w, holder
    gc.collect()
    assert ref_h() is None  # the holder -> wheel -> holder cycle was collected


@wheel
def test_gc_sees_items(TW: Any) -> None:
    w = TW(1, 0)
    item = Obj()
    w.add(5, item)
    if TW.__module__ == "durable_core._core":
        assert item in gc.get_referents(w)
    else:
        assert any(item in e for e in gc.get_referents(*gc.get_referents(w)) if isinstance(e, list))


@wheel
def test_finalizer_using_the_wheel_during_cancel(TW: Any) -> None:
    w = TW(1, 0)
    log = []

    class Reenter:
        def __del__(self) -> None:
            # runs while cancel releases the item: the wheel must be usable
            log.append(w.add(50, "from-del"))
            log.append(len(w))

    h = w.add(10, Reenter())
    w.add(20, "other")
    assert w.cancel(h) is True
    gc.collect()
    assert log and log[-1] == 2
    assert w.advance(100) == ["other", "from-del"]


@wheel
def test_finalizer_using_the_wheel_during_clear(TW: Any) -> None:
    w = TW(1, 0)
    seen = []

    class Reenter:
        def __del__(self) -> None:
            seen.append(len(w))
            w.add(5, "late")

    w.add(10, Reenter())
    w.add(10, Reenter())
    assert w.clear() == 2
    gc.collect()
    assert len(seen) == 2
    assert len(w) == 2
    assert w.advance(10) == ["late", "late"]


@wheel
def test_sizeof_counts_the_slab(TW: Any) -> None:
    if TW.__module__ != "durable_core._core":
        pytest.skip("the twin has no slab")
    w = TW(1, 0)
    empty = w.__sizeof__()
    n = 1 << 14  # the slab doubles: a power of two fills it
    for i in range(n):
        w.add(i, None)
    grown = w.__sizeof__()
    assert grown > empty
    assert (grown - empty) / n <= 64  # bytes per pending timer (goal)


@wheel
def test_finalizer_during_advance_sees_a_consistent_wheel(TW: Any) -> None:
    """The cycle collector may run finalizers while advance builds its result list."""
    w = TW(1, 0)
    outcomes: list[str] = []

    class Cyclic:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            try:
                w.add(1_000_000, "from-finalizer")
                outcomes.append("added")
            except RuntimeError:
                outcomes.append("refused")  # the C wheel refuses changes in that window

    for i in range(50):
        w.add(i, i)
    old = gc.get_threshold()
    gc.disable()
    try:
        for _ in range(20):
            Cyclic()  # garbage cycles waiting for the collector
        # empty the list free list, so that the result list is a fresh GC allocation (which
        # runs the collector on 3.11; later versions collect between bytecodes instead)
        keep = [[] for _ in range(200)]
        gc.set_threshold(1)
        gc.enable()
        got = w.advance(100)
    finally:
        gc.set_threshold(*old)
        gc.enable()
    del keep
    gc.collect()
    assert got == list(range(50))
    assert len(outcomes) == 20
    assert len(w) == outcomes.count("added")
    assert w.advance(1_000_000) == ["from-finalizer"] * outcomes.count("added")
