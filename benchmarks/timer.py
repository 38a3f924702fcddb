"""Timer wheel benchmark: operations per second and bytes per pending timer.

Compared side by side in one run:
  c        durable_core._core.TimerWheel (the C hierarchical wheel)
  twin     durable_core._timer_py.TimerWheel (pure Python; a smaller N, see the N row)
  heapq    a minimal heapq scheduler with lazy deletion (the usual pure-Python approach)
  asyncio  loop.call_at / TimerHandle.cancel (the loop's own timer heap)

Workloads (every timer's item is one shared object, so item size is not counted):
  adds            N adds into an empty structure, deadlines spread over a day
  add+cancel      N add/cancel pairs on a structure holding N pending timers
  add+fire        N iterations of: time += 1 ms, add a timer 100 ms ahead, advance (fires the
                  one added 100 iterations earlier), with N far-away timers pending
                  (asyncio: N call_at(now) callbacks run by the loop with N timers pending)
  mixed           N iterations of: time += 1 ms, add a timer 1..64 ms ahead, add a timeout
                  1..2 s ahead, cancel the timeout added 500 iterations earlier, advance;
                  N far-away timers pending; ops = adds + cancels + fired
  year, 1 call    N timers spread over a year, one advance across the year (fired/s)
  year, hourly    the same, advanced in 8760 hourly steps (fired/s)
  bytes/timer     memory per pending timer with N pending (tracemalloc; for C also the
                  type's __sizeof__, which counts the slab)

Timing uses the process CPU clock (the machine may be shared), best of REPEAT runs.
Usage: python benchmarks/timer.py [--n 1000000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import itertools
import random
import sys
import time
import tracemalloc
from typing import Any, Callable

from durable_core import _impl
from durable_core._timer_py import TimerWheel as TwinWheel

DAY = 86_400_000
YEAR = 365 * DAY
ITEM = object()


class HeapqScheduler:
    """A minimal heapq timer scheduler with lazy deletion (compacts when half is dead)."""

    __slots__ = ("heap", "live", "count")

    def __init__(self, resolution_ms: int = 1, start_ms: int = 0) -> None:
        self.heap: list[list[Any]] = []
        self.live: dict[int, list[Any]] = {}
        self.count = itertools.count()

    def add(self, deadline: int, item: Any) -> int:
        seq = next(self.count)
        entry = [deadline, seq, item]
        self.live[seq] = entry
        heapq.heappush(self.heap, entry)
        return seq

    def cancel(self, handle: int) -> bool:
        entry = self.live.pop(handle, None)
        if entry is None:
            return False
        entry[2] = None
        if len(self.heap) > 64 and len(self.heap) > 2 * len(self.live):
            self.heap = [e for e in self.heap if e[2] is not None]
            heapq.heapify(self.heap)
        return True

    def advance(self, now: int) -> list[Any]:
        heap, live, out = self.heap, self.live, []
        while heap and heap[0][0] <= now:
            e = heapq.heappop(heap)
            if e[2] is not None:
                del live[e[1]]
                out.append(e[2])
        return out

    def __len__(self) -> int:
        return len(self.live)


def cpu_best(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> float:
    """Best CPU seconds of ``repeat`` runs of ``fn(state)`` (``state = setup()``, untimed)."""
    best = float("inf")
    for _ in range(repeat):
        state = setup() if setup is not None else None
        gc.collect()
        gc.disable()
        try:
            t0 = time.process_time()
            fn(state)
            dt = time.process_time() - t0
        finally:
            gc.enable()
        best = min(best, dt)
        del state
    return best


# ------------------------------------------------------------------------------------------
# workloads over a wheel-like class (add / cancel / advance)


def far_deadlines(n: int, rng: random.Random) -> list[int]:
    return [DAY + rng.randrange(YEAR) for _ in range(n)]


def filled(cls: Any, far: list[int]) -> Any:
    w = cls(1, 0)
    add = w.add
    for d in far:
        add(d, ITEM)
    return w


def bench_adds(cls: Any, n: int, repeat: int, rng: random.Random) -> float:
    ds = [rng.randrange(DAY) for _ in range(n)]

    def run(w: Any) -> None:
        add = w.add
        for d in ds:
            add(d, ITEM)

    return n / cpu_best(run, repeat, lambda: cls(1, 0))


def bench_add_cancel(cls: Any, n: int, repeat: int, far: list[int]) -> float:
    ds = [DAY + (i * 7919) % YEAR for i in range(n)]

    def run(w: Any) -> None:
        add, cancel = w.add, w.cancel
        for d in ds:
            cancel(add(d, ITEM))

    return n / cpu_best(run, repeat, lambda: filled(cls, far))


def bench_add_fire(cls: Any, n: int, repeat: int, far: list[int]) -> float:
    fired = [0]

    def run(w: Any) -> None:
        add, advance = w.add, w.advance
        total = 0
        for t in range(1, n + 1):
            add(t + 100, ITEM)
            total += len(advance(t))
        fired[0] = total

    dt = cpu_best(run, repeat, lambda: filled(cls, far))
    assert fired[0] == n - 100, fired[0]
    return n / dt


def bench_mixed(cls: Any, n: int, repeat: int, far: list[int]) -> float:
    ops = [0]

    def run(w: Any) -> None:
        add, cancel, advance = w.add, w.cancel, w.advance
        ring: list[int] = [-1] * 500
        count = 0
        for t in range(1, n + 1):
            add(t + 1 + (t & 63), ITEM)
            j = t % 500
            old = ring[j]
            if old >= 0:
                count += cancel(old)
            ring[j] = add(t + 1000 + (t * 37) % 1000, ITEM)
            count += 2 + len(advance(t))
        ops[0] = count

    dt = cpu_best(run, repeat, lambda: filled(cls, far))
    return ops[0] / dt


def bench_year(cls: Any, n: int, repeat: int, rng: random.Random, hourly: bool) -> float:
    spread = [rng.randrange(YEAR) for _ in range(n)]
    fired = [0]

    def run(w: Any) -> None:
        if hourly:
            total = 0
            advance = w.advance
            for h in range(1, 8761):
                total += len(advance(h * 3_600_000))
        else:
            total = len(w.advance(YEAR))
        fired[0] = total

    dt = cpu_best(run, repeat, lambda: filled(cls, spread))
    assert fired[0] == n, fired[0]
    return n / dt


def bytes_per_timer(cls: Any, n: int, far: list[int]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        w = filled(cls, far[:n])
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(w) == n
    del w
    return (after - before) / n


# ------------------------------------------------------------------------------------------
# asyncio's loop.call_at


def asyncio_benches(n: int, repeat: int, far: list[int]) -> dict[str, float | None]:
    loop = asyncio.new_event_loop()
    noop = lambda: None  # noqa: E731
    base = loop.time()
    out: dict[str, float | None] = {}

    def new_handles(_: Any = None) -> list[Any]:
        return []

    def run_adds(hs: list[Any]) -> None:
        call_at = loop.call_at
        for i in range(n):
            hs.append(call_at(base + 1_000 + (i % 86_400), noop))

    def cleanup() -> None:
        for h in loop._scheduled:  # type: ignore[attr-defined]
            h.cancel()
        loop._scheduled.clear()  # type: ignore[attr-defined]
        loop._timer_cancelled_count = 0  # type: ignore[attr-defined]

    def setup_empty() -> list[Any]:
        cleanup()
        return []

    out["adds"] = n / cpu_best(run_adds, repeat, setup_empty)

    def setup_far() -> None:
        cleanup()
        call_at = loop.call_at
        for d in far[:n]:
            call_at(base + d / 1000.0, noop)

    def run_add_cancel(_: Any) -> None:
        call_at = loop.call_at
        for i in range(n):
            call_at(base + 86_400 + (i * 7919) % 31_536_000, noop).cancel()

    out["add+cancel"] = n / cpu_best(run_add_cancel, repeat, setup_far)

    def run_add_fire(_: Any) -> None:
        done = loop.create_future()
        remaining = [n]

        def cb() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set_result(None)

        call_at = loop.call_at
        now = loop.time()
        for _ in range(n):
            call_at(now, cb)
        loop.run_until_complete(done)

    out["add+fire"] = n / cpu_best(run_add_fire, repeat, setup_far)
    out["mixed"] = None
    out["year, 1 call"] = None
    out["year, hourly"] = None

    cleanup()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        call_at = loop.call_at
        for d in far[:n]:
            call_at(base + d / 1000.0, noop)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    out["bytes/timer"] = (after - before) / n
    cleanup()
    loop.close()
    return out


# ------------------------------------------------------------------------------------------


def measure(cls: Any, n: int, repeat: int, seed: int) -> dict[str, float | None]:
    rng = random.Random(seed)
    far = far_deadlines(n, rng)
    return {
        "adds": bench_adds(cls, n, repeat, rng),
        "add+cancel": bench_add_cancel(cls, n, repeat, far),
        "add+fire": bench_add_fire(cls, n, repeat, far),
        "mixed": bench_mixed(cls, n, repeat, far),
        "year, 1 call": bench_year(cls, n, repeat, rng, hourly=False),
        "year, hourly": bench_year(cls, n, repeat, rng, hourly=True),
        "bytes/timer": bytes_per_timer(cls, n, far),
    }


def fmt(v: float | None, bytes_row: bool) -> str:
    if v is None:
        return "n/a"
    if bytes_row:
        return f"{v:.1f}"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.0f}k"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="timers for c and heapq")
    ap.add_argument("--n-slow", type=int, default=200_000, help="timers for twin and asyncio")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="n=100k, n-slow=20k, repeat=1")
    args = ap.parse_args()
    if args.quick:
        args.n, args.n_slow, args.repeat = 100_000, 20_000, 1

    impls = _impl.implementations("TimerWheel", "durable_core._timer_py")
    if "c" not in impls:
        sys.exit("the C extension is not built: pip install -e .")
    cols: dict[str, tuple[int, dict[str, float | None]]] = {}
    cols["c"] = (args.n, measure(impls["c"], args.n, args.repeat, 1))
    cols["twin"] = (args.n_slow, measure(TwinWheel, args.n_slow, args.repeat, 1))
    cols["heapq"] = (args.n, measure(HeapqScheduler, args.n, args.repeat, 1))
    far = far_deadlines(args.n_slow, random.Random(1))
    cols["asyncio"] = (args.n_slow, asyncio_benches(args.n_slow, args.repeat, far))

    c_w = impls["c"](1, 0)
    for d in far_deadlines(args.n, random.Random(2)):
        c_w.add(d, ITEM)
    c_sizeof = (c_w.__sizeof__() - impls["c"](1, 0).__sizeof__()) / args.n
    del c_w

    rows = ["adds", "add+cancel", "add+fire", "mixed", "year, 1 call", "year, hourly",
            "bytes/timer"]
    names = list(cols)
    print(f"timer wheel benchmark (ops/s by process CPU time, best of {args.repeat}; "
          f"python {sys.version.split()[0]})")
    head = f"{'workload':<14}" + "".join(f"{n:>10}" for n in names) + f"{'c/heapq':>10}"
    print(head)
    print("-" * len(head))
    print(f"{'N':<14}" + "".join(f"{cols[n][0]:>10,}" for n in names))
    for row in rows:
        line = f"{row:<14}"
        for n in names:
            line += f"{fmt(cols[n][1][row], row == 'bytes/timer'):>10}"
        c_v, h_v = cols["c"][1][row], cols["heapq"][1][row]
        if c_v and h_v:
            ratio = (h_v / c_v) if row == "bytes/timer" else (c_v / h_v)
            line += f"{ratio:>9.1f}x"
        print(line)
    print(f"{'c __sizeof__':<14}{c_sizeof:>10.1f}  bytes per pending timer (slab + levels)")
    print("ops/s: adds, add+cancel pairs, add+fire iterations, mixed = adds+cancels+fired;")
    print("year rows: timers fired per second; bytes/timer: c/heapq column = heapq/c.")


if __name__ == "__main__":
    main()
