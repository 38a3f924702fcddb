"""History codec: repeated encode/decode (including every error path) does not leak
references or memory."""

from __future__ import annotations

import gc
import sys
import tracemalloc
import types
from typing import Any, Callable

import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from codec_strategies import T0, activity_chain, sample_history  # noqa: E402
from test_codec import ENCODE_ERRORS, codec  # noqa: E402
from test_codec_corrupt import FIELD_CASES  # noqa: E402

from durable_core import history as h  # noqa: E402
from durable_core.errors import HistoryCorruptError  # noqa: E402


def _is_c(c: Any) -> bool:
    return isinstance(c.encode, types.BuiltinFunctionType)


def _growth(fn: Callable[[], None], rounds: int) -> tuple[int, int]:
    """(bytes still allocated, objects still alive) after ``rounds`` more calls of ``fn``."""
    for _ in range(min(rounds, 10)):  # warm caches, interned strings, free lists
        fn()
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    for _ in range(rounds):
        fn()
    gc.collect()
    objs = sum(1 for o in gc.get_objects() if id(o) not in before) - 1  # ``before`` itself
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


@codec
def test_round_trips_do_not_leak(c: Any) -> None:
    events = sample_history() + activity_chain(20)
    data = c.encode(events)

    def work() -> None:
        out = c.decode(data)
        assert len(out) == len(events)
        c.encode(out)
        c.decode(bytearray(data), lenient=True)
        c.decode_records(memoryview(data)[4:])

    mem, objs = _growth(work, 100 if _is_c(c) else 3)
    # one leaked event per call would be tens of kilobytes and thousands of objects
    assert mem < 16_384, mem
    assert objs < 5, objs


@codec
def test_error_paths_do_not_leak(c: Any) -> None:
    base = c.encode(sample_history())
    damaged = [base[:n] for n in range(0, len(base), 7)]
    damaged += [bytes(b ^ 0x10 if i == 40 else b for i, b in enumerate(base))]
    damaged += [b"DCH\x01" + records for records, msg in FIELD_CASES if msg]

    def work() -> None:
        for data in damaged:
            try:
                c.decode(data)
            except HistoryCorruptError:
                pass
            try:
                c.decode(data, lenient=True)
            except HistoryCorruptError:
                pass
        for events, exc, _ in ENCODE_ERRORS:
            try:
                c.encode(events)
            except exc:
                pass

    mem, objs = _growth(work, 20 if _is_c(c) else 2)
    assert mem < 16_384, mem
    assert objs < 5, objs


@codec
def test_refcounts_of_reused_objects_are_stable(c: Any) -> None:
    name = "process-" + "item"  # not interned: its refcount is ours to watch
    payload = bytes(range(50))
    tags = {"k" * 3: "v" * 3}
    fd = h.FailureDetails("E", "m", None, None, False)
    events = [
        h.ExecutionStarted(-1, T0, name, "i", payload, tags=tags),
        h.TaskScheduled(0, T0 + 1, name, payload),
        h.TaskFailed(-1, T0 + 2, 0, fd),
    ]
    data = c.encode(events)
    watched = [name, payload, tags, fd, data, *events, *(type(e) for e in events),
               h.FailureDetails]
    before = [sys.getrefcount(o) for o in watched]
    for _ in range(200 if _is_c(c) else 20):
        c.encode(events)
        c.encode_records(events)
        out = c.decode(data)
        del out
        try:
            c.encode([h.TaskScheduled(0, T0, name, "not bytes")])
        except TypeError:
            pass
        try:
            c.decode(data[:-1])
        except HistoryCorruptError:
            pass
    gc.collect()
    after = [sys.getrefcount(o) for o in watched]
    assert after == before


@codec
def test_decoded_events_are_freed(c: Any) -> None:
    """Every decoded event holds a reference to its class: they all go away with the list."""
    data = c.encode(activity_chain(10))
    gc.collect()
    classes = [h.TaskScheduled, h.TaskCompleted, h.OrchestratorStarted]
    before = [sys.getrefcount(k) for k in classes]
    out = c.decode(data)
    during = [sys.getrefcount(k) for k in classes]
    assert [d - b for d, b in zip(during, before)] == [10, 10, 11]
    del out
    gc.collect()
    assert [sys.getrefcount(k) for k in classes] == before


@codec
def test_cycles_through_decoded_tags_are_collected(c: Any) -> None:
    """An event with a (mutable) tags dict stays visible to the cycle collector."""
    data = c.encode([h.ExecutionStarted(-1, T0, "n", "i", tags={"a": "b"})])

    def cycles(n: int) -> int:
        for _ in range(n):
            (ev,) = c.decode(data)
            ev.tags["self"] = ev  # a cycle: event -> dict -> event
            del ev
        gc.collect()
        return sys.getrefcount(h.ExecutionStarted)

    before = cycles(1)
    assert cycles(50) == before
