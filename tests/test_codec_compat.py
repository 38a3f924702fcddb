"""Histories already stored keep decoding, re-encoding and replaying exactly as before.

``tests/data/v1`` holds histories written by the codec and engine as they were before any
field was added to an event (``make_v1_fixtures.py`` there says how): the encoded bytes
(``.dch``), the events they hold (``.events``, one ``repr`` per line) and, for the histories an
orchestration produced, where its episodes start and end (``.json``). Both codecs must decode
the bytes to those events and encode the events back to the very same bytes; both engines must
replay every episode to the events recorded then (``compat_orchestrations.py`` is the code).
"""

from __future__ import annotations

import json
import os
from typing import Any

import compat_orchestrations as co
import pytest
from conftest import both

from durable_core import _impl
from durable_core import history as h
from durable_core.engine import OrchestrationExecutor

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v1")
NAMES = sorted(f[:-4] for f in os.listdir(DATA) if f.endswith(".dch"))
ENGINE = [n for n in NAMES if n.startswith("engine_")]
PY = "durable_core._codec_py"
_NS: dict[str, Any] = {cls.__name__: cls for cls in h.EVENT_CLASSES}
_NS["FailureDetails"] = h.FailureDetails


def _load(name: str) -> tuple[bytes, list[Any]]:
    with open(os.path.join(DATA, f"{name}.dch"), "rb") as f:
        data = f.read()
    with open(os.path.join(DATA, f"{name}.events"), encoding="utf-8") as f:
        events = [eval(line, {"__builtins__": {}}, _NS) for line in f if line.strip()]  # noqa: S307
    return data, events


def _codecs() -> list[Any]:
    out = []
    for p in both("encode", PY):
        if p.values[0] is None:
            out.append(pytest.param(None, id=p.id, marks=p.marks))
            continue
        fns = {n: _impl.implementations(n, PY)[p.id] for n in ("encode", "decode")}
        out.append(pytest.param(fns, id=p.id))
    return out


def test_fixtures_are_present() -> None:
    assert {"sample", "activity_chain"} <= set(NAMES) and len(ENGINE) >= 5


@pytest.mark.parametrize("codec", _codecs())
@pytest.mark.parametrize("name", NAMES)
def test_stored_bytes_decode_and_reencode_identically(codec: Any, name: str) -> None:
    data, events = _load(name)
    decoded = codec["decode"](data)
    assert decoded == events
    assert [type(e) for e in decoded] == [type(e) for e in events]
    assert codec["encode"](events) == data
    assert codec["encode"](decoded) == data


def _strip(ev: Any) -> Any:
    """Stack traces name files and lines of this checkout: compare everything else."""
    fd = getattr(ev, "failure_details", None)
    if fd is None:
        return ev
    return ev._replace(failure_details=fd._replace(stack_trace=None))


_LEGACY_WHEN_ALL = pytest.mark.xfail(
    strict=True, reason="when_all now waits for every task: a history recorded with the old "
    "fail-fast when_all needs the engine to replay it the old way (not there yet)")


@pytest.mark.parametrize("core", both("ContextCore", "durable_core._engine_py"))
@pytest.mark.parametrize("name", [pytest.param(n, marks=_LEGACY_WHEN_ALL)
                                  if n == "engine_fan_fail" else n for n in ENGINE])
def test_stored_histories_replay_to_the_same_events(core: Any, name: str) -> None:
    _, events = _load(name)
    with open(os.path.join(DATA, f"{name}.json"), encoding="utf-8") as f:
        meta = json.load(f)
    ex = OrchestrationExecutor(co.registry(), implementation=core)
    start = 0
    for n_new, n_total in meta["episodes"]:
        old, new = events[:start], events[start:start + n_new]
        res = ex.execute("inst", old, new)
        want = events[start:start + n_total]
        assert [_strip(e) for e in res.new_history] == [_strip(e) for e in want], (
            f"{name}: episode at event {start}")
        start += n_total
    assert start == len(events)
    assert res.completion is not None and int(res.completion.status) == meta["status"]
