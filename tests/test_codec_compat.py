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


#: Episodes that the current engine, running them as *new* steps, does differently on purpose:
#: (fixture, episode index) -> why. Replaying them as old history must still give what they
#: recorded (later episodes check it), and running them anew must not be a non-determinism.
CHANGED = {
    ("engine_fan_fail", 1): "when_all waits for every task now (it failed at the first); the "
                            "history's old-style step replays as it ran",
}


@pytest.mark.parametrize("core", both("ContextCore", "durable_core._engine_py"))
@pytest.mark.parametrize("name", ENGINE)
def test_stored_histories_replay_to_the_same_events(core: Any, name: str) -> None:
    _, events = _load(name)
    with open(os.path.join(DATA, f"{name}.json"), encoding="utf-8") as f:
        meta = json.load(f)
    ex = OrchestrationExecutor(co.registry(), implementation=core)
    start = 0
    for i, (n_new, n_total) in enumerate(meta["episodes"]):
        old, new = events[:start], events[start:start + n_new]
        res = ex.execute("inst", old, new)
        want = events[start:start + n_total]
        if (name, i) in CHANGED:
            c = res.completion
            assert c is None or c.failure_details is None or \
                c.failure_details.error_type != "NonDeterminismError"
        else:
            assert [_strip(e) for e in res.new_history] == [_strip(e) for e in want], (
                f"{name}: episode {i} at event {start}")
        start += n_total
    assert start == len(events)
    assert res.completion is not None and int(res.completion.status) == meta["status"]


def test_changed_episode_runs_the_new_way() -> None:
    """The fan_fail step that failed fast, run anew: it now waits and records the marker."""
    _, events = _load("engine_fan_fail")
    with open(os.path.join(DATA, "engine_fan_fail.json"), encoding="utf-8") as f:
        (n0, t0), (n1, _t1) = json.load(f)["episodes"][:2]
    res = OrchestrationExecutor(co.registry()).execute("inst", events[:t0], events[t0:t0 + n1])
    assert res.actions == [] and res.completion is None
    assert [type(e) for e in res.new_history][-2:] == [h.PatchMarker, h.OrchestratorCompleted]
    assert res.new_history[-2].patch_id == "durable_core/when_all-waits-for-all"
