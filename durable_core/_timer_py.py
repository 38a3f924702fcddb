"""Pure-Python twin of the C timer wheel (``durable_core._core.TimerWheel``).

This module is the specification; the C type in ``csrc/timerwheel.c`` must behave the same
for every input. The twin keeps a binary heap with lazy deletion (simple and obviously
correct); the C type is a hierarchical wheel with O(1) add and cancel. Only speed differs.

Semantics
---------
``TimerWheel(resolution_ms=1, start_ms=None)``
    Time is counted in ticks of ``resolution_ms`` (an int >= 1) from ``start_ms`` (an int;
    ``None`` means the wall clock now, in epoch milliseconds). A deadline ``d`` belongs to
    tick ``ceil((d - start_ms) / resolution_ms)``, or tick 0 when ``d <= start_ms``; its
    *firing time* is ``start_ms + tick * resolution_ms``: never before ``d`` and less than one
    resolution step after it. The range is 2**42 ticks (139 years at 1 ms): a deadline of a
    higher tick, or whose firing time does not fit in a signed 64-bit integer, raises
    ``OverflowError``.

``add(deadline_ms, item) -> int``
    Schedule ``item``; returns a handle for ``cancel``. A deadline at or before the time of
    the last advance is due at once: it fires on the next ``advance``. The item is held by a
    strong reference until the timer fires or is cancelled.

``cancel(handle) -> bool``
    ``True`` if the timer was pending (its item is released); ``False`` for a handle that
    fired, was cancelled, or was never issued by this wheel (including negative or huge ints).

``advance(now_ms) -> list``
    Moves time to ``now_ms`` and returns the items of every pending timer whose firing time
    is ``<= now_ms``, ordered by deadline, ties in insertion order. ``now_ms`` before the
    previous ``advance`` (or before ``start_ms``) raises ``ValueError``; a ``now_ms`` past the
    range fires everything pending.

``next_deadline() -> int | None``
    The earliest firing time of a pending timer (so ``advance(next_deadline())`` returns at
    least one item), ``None`` when nothing is pending.

``clear() -> int``
    Drops every pending timer, releasing the items; returns how many there were.

``len(wheel)`` is the number of pending timers; ``resolution_ms``, ``start_ms`` and
``now_ms`` (the last advance's time, ``start_ms`` before the first) are read-only.

Bad input: every time argument must be an ``int`` (or have ``__index__``) and not a
``bool``, else ``TypeError``; outside the signed 64-bit range, ``OverflowError``. Handles are
``int`` (``TypeError`` otherwise). Handle values are opaque and differ between the two
implementations.
"""

from __future__ import annotations

import heapq
import operator
import time
from typing import Any

__all__ = ["TimerWheel"]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_RANGE_BITS = 42
_MAX_TICK = (1 << _RANGE_BITS) - 1


class _Cancelled:
    __slots__ = ()


_CANCELLED: Any = _Cancelled()


def _as_int64(value: Any, what: str) -> int:
    """``value`` as an int in the signed 64-bit range, with the C type's errors."""
    if type(value) is not int:
        if isinstance(value, bool) or not hasattr(type(value), "__index__"):
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
        value = operator.index(value)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise OverflowError(f"{what} is out of the signed 64-bit range")
    return value


class TimerWheel:
    """Timers keyed by a deadline in ms; see the module docstring for the exact semantics."""

    __slots__ = ("_res", "_start", "_now", "_heap", "_entries", "_seq")

    def __init__(self, resolution_ms: int = 1, start_ms: int | None = None) -> None:
        res = _as_int64(resolution_ms, "resolution_ms")
        if res < 1:
            raise ValueError(f"resolution_ms must be >= 1, not {res}")
        if start_ms is None:
            start_ms = time.time_ns() // 1_000_000
        self._res: int = res
        self._start: int = _as_int64(start_ms, "start_ms")
        self._now: int = self._start
        # heap of [deadline, seq, item]; a cancelled entry's item is _CANCELLED
        self._heap: list[list[Any]] = []
        self._entries: dict[int, list[Any]] = {}
        self._seq: int = 0

    def _tick(self, deadline: int) -> int:
        if deadline <= self._start:
            return 0
        return -((self._start - deadline) // self._res)  # ceil division

    @property
    def resolution_ms(self) -> int:
        """Milliseconds per tick."""
        return self._res

    @property
    def start_ms(self) -> int:
        """Time (ms) of tick 0."""
        return self._start

    @property
    def now_ms(self) -> int:
        """``now_ms`` of the last advance (``start_ms`` before the first)."""
        return self._now

    def add(self, deadline_ms: int, item: Any, /) -> int:
        """Schedule ``item`` to fire at ``deadline_ms``; returns a handle for :meth:`cancel`."""
        deadline = _as_int64(deadline_ms, "deadline_ms")
        tick = self._tick(deadline)
        if tick > _MAX_TICK or self._start + tick * self._res > _INT64_MAX:
            raise OverflowError(
                f"deadline_ms={deadline} is beyond the timer wheel's range (start_ms="
                f"{self._start} + 2**{_RANGE_BITS} ticks of {self._res} ms)"
            )
        seq = self._seq
        self._seq = seq + 1
        entry = [deadline, seq, item]
        self._entries[seq] = entry
        heapq.heappush(self._heap, entry)
        return seq

    def cancel(self, handle: int, /) -> bool:
        """Cancel a pending timer; ``False`` if it fired, was cancelled or never existed."""
        if type(handle) is not int:
            if isinstance(handle, bool) or not hasattr(type(handle), "__index__"):
                raise TypeError(f"handle must be an int, not {type(handle).__name__}")
            handle = operator.index(handle)
        entry = self._entries.pop(handle, None)
        if entry is None:
            return False
        item = entry[2]
        entry[2] = _CANCELLED
        heap = self._heap
        if len(heap) > 64 and len(heap) > 2 * len(self._entries):
            self._heap = [e for e in heap if e[2] is not _CANCELLED]
            heapq.heapify(self._heap)
        del item  # released last, with the wheel consistent
        return True

    def advance(self, now_ms: int, /) -> list[Any]:
        """Move time to ``now_ms``; return the due items in deadline (then insertion) order."""
        now = _as_int64(now_ms, "now_ms")
        if now < self._now:
            raise ValueError(
                f"time moved backwards: now_ms={now} is before the previous advance "
                f"({self._now})"
            )
        self._now = now
        now_tick = min((now - self._start) // self._res, _MAX_TICK)
        heap = self._heap
        entries = self._entries
        out: list[Any] = []
        start = self._start
        res = self._res
        # firing tick <= now_tick  <=>  deadline <= start + now_tick * res (ceil division)
        limit = start + now_tick * res
        while heap:
            top = heap[0]
            if top[2] is _CANCELLED:
                heapq.heappop(heap)
                continue
            if top[0] > limit:
                break
            heapq.heappop(heap)
            del entries[top[1]]
            out.append(top[2])
            top[2] = _CANCELLED
        return out

    def next_deadline(self) -> int | None:
        """The earliest firing time (ms) of a pending timer, or ``None``."""
        heap = self._heap
        while heap and heap[0][2] is _CANCELLED:
            heapq.heappop(heap)
        if not heap:
            return None
        return self._start + self._tick(heap[0][0]) * self._res

    def clear(self) -> int:
        """Drop every pending timer (their items are released); return how many there were."""
        n = len(self._entries)
        heap = self._heap
        self._heap = []
        self._entries = {}
        del heap
        return n

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"<TimerWheel pending={len(self._entries)} resolution_ms={self._res} "
            f"start_ms={self._start}>"
        )
