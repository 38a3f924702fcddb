"""Differential tests: hypothesis-generated orchestrations and histories.

- the C core and the Python twin produce the same histories, actions and outcomes;
- at every episode the sticky session gives exactly what a full replay gives (the driver
  asserts it);
- replaying a history with *changed* code gives the same result (often a non-determinism
  failure) on both cores.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pytest
from conftest import both
from engine_driver import Driver
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import durable_core as dc
from durable_core import history as h
from durable_core.engine import OrchestrationExecutor

# more examples for a deep run: DURABLE_CORE_ENGINE_EXAMPLES=5000 pytest tests/test_engine_diff.py
EXAMPLES = int(os.environ.get("DURABLE_CORE_ENGINE_EXAMPLES", "120"))
CORES = {p.id: p.values[0] for p in both("ContextCore", "durable_core._engine_py")}
pytestmark = pytest.mark.skipif(CORES.get("c") is None, reason="C extension not built")

LOG = logging.getLogger("durable_core.tests.diff")
POLICY = dc.RetryPolicy(timedelta(seconds=1), 3, backoff_coefficient=2.0)
NAMES = ["a", "B", "c"]

op = st.one_of(
    st.tuples(st.just("act"), st.integers(-5, 5), st.booleans()),
    st.tuples(st.just("retry"), st.integers(0, 9), st.integers(0, 4)),
    st.tuples(st.just("timer"), st.integers(0, 100)),
    st.tuples(st.just("all"), st.lists(st.integers(-3, 3), max_size=4), st.booleans()),
    st.tuples(st.just("any"), st.integers(0, 5), st.integers(0, 50)),
    st.tuples(st.just("event"), st.sampled_from(NAMES), st.one_of(st.none(), st.integers(1, 90))),
    st.tuples(st.just("sub"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("status"), st.integers()),
    st.tuples(st.just("send"), st.integers(0, 3), st.sampled_from(["ping", "PING", "pong"])),
    st.tuples(st.just("timer_at"), st.integers(0, 100), st.booleans()),
    st.tuples(st.just("log"), st.integers(0, 9)),
    st.tuples(st.just("allfast"), st.lists(st.integers(-3, 3), max_size=4), st.booleans()),
    st.tuples(st.just("uuid"),),
    st.tuples(st.just("cancel"), st.integers(1, 60)),
    st.tuples(st.just("can"), st.booleans()),
    st.tuples(st.just("raise"), st.integers(0, 9)),
    st.tuples(st.just("exit"), st.integers(0, 9)),
    st.tuples(st.just("patch"), st.sampled_from(["p1", "p2"])),
    st.tuples(st.just("deprecate"), st.sampled_from(["p1", "p2"])),
    st.tuples(st.just("subv"), st.integers(0, 5), st.sampled_from([None, "v2"])),
)
program = st.lists(op, max_size=10)
# external events; "!suspend", "!resume" and "!terminate" stand for those control events
events = st.lists(st.tuples(st.sampled_from(NAMES + ["b", "A", "!suspend", "!resume", "!terminate"]),
                            st.integers(0, 9)), max_size=6)


def interpret(ctx: Any, arg: Any) -> Any:
    prog, gen = arg["prog"], arg["gen"]
    out: list[Any] = []
    for i, o in enumerate(prog):
        kind = o[0]
        try:
            if kind == "act":
                out.append((yield ctx.call_activity("act", input=[o[1], o[2]])))
            elif kind == "retry":
                out.append((yield ctx.call_activity("flaky", input=[i, o[2]],
                                                    retry_policy=POLICY)))
            elif kind == "timer":
                out.append((yield ctx.create_timer(timedelta(seconds=o[1]))))
            elif kind == "all":
                out.append((yield dc.when_all(
                    [ctx.call_activity("act", input=[v, o[2] and v == 0]) for v in o[1]])))
            elif kind == "any":
                t = ctx.create_timer(timedelta(seconds=o[2]))
                a = ctx.call_activity("act", input=[o[1], False])
                w = yield dc.when_any([t, a])
                out.append("timer" if w is t else w.get_result())
                if w is a:
                    t.cancel()
            elif kind == "event":
                timeout = None if o[2] is None else timedelta(seconds=o[2])
                out.append((yield ctx.wait_for_external_event(o[1], timeout=timeout)))
            elif kind == "sub":
                out.append((yield ctx.call_sub_orchestrator("child", input=[o[1], o[2]])))
            elif kind == "patch":  # the patched path calls an activity more
                if ctx.is_patched(o[1]):
                    out.append((yield ctx.call_activity("act", input=[len(out), False])))
                else:
                    out.append("unpatched")
            elif kind == "deprecate":
                ctx.deprecate_patch(o[1])
                out.append((yield ctx.call_activity("act", input=[len(out), False])))
            elif kind == "subv":
                out.append((yield ctx.call_sub_orchestrator("vchild", input=o[1], version=o[2])))
            elif kind == "status":
                ctx.set_custom_status(o[1])
            elif kind == "send":
                ctx.send_event(f"other{o[1]}", o[2], data=i)
            elif kind == "timer_at":  # a naive UTC datetime means the same instant
                when = ctx.current_utc_datetime + timedelta(seconds=o[1])
                out.append((yield ctx.create_timer(when.replace(tzinfo=None) if o[2] else when)))
            elif kind == "log":
                ctx.create_replay_safe_logger(LOG).info("step %d: %d", i, o[1])
            elif kind == "allfast":
                slow = ctx.wait_for_external_event("a")
                out.append((yield dc.when_all(
                    [slow, *(ctx.call_activity("act", input=[v, o[2] and v == 0])
                             for v in o[1])], fail_fast=True)))
            elif kind == "uuid":
                out.append(ctx.new_uuid())
            elif kind == "can":
                if gen == 0:  # once: the next execution runs the same program
                    ctx.continue_as_new({"prog": prog, "gen": 1}, save_events=o[1])
                    return None
            elif kind == "raise":
                raise LookupError(f"step {i}: {o[1]}")
            elif kind == "exit":  # a BaseException fails the instance like any other
                raise SystemExit(f"step {i}: {o[1]}")
            elif kind == "cancel":
                t = ctx.create_timer(timedelta(seconds=o[1]))
                t.cancel()
                try:
                    yield t
                except dc.TaskCancelledError:
                    out.append("cancelled")
        except (dc.TaskFailedError, dc.EventTimeoutError) as e:
            out.append(["E", type(e).__name__, str(e)])
    return out


async def ainterpret(ctx: Any, arg: Any) -> Any:
    """The same programs as an ``async def`` orchestrator (await instead of yield)."""
    gen = interpret(ctx, arg)
    value: Any = None
    exc: Any = None
    while True:
        try:
            t = gen.send(value) if exc is None else gen.throw(exc)
        except StopIteration as stop:
            return stop.value
        try:
            value, exc = await t, None
        except Exception as e:  # noqa: BLE001 - handed back to the program
            value, exc = None, e


def child(ctx: Any, arg: Any) -> Any:
    v = yield ctx.call_activity("act", input=[arg[0], arg[1]])
    return v


def vchild(ctx: Any, arg: Any) -> Any:
    return [arg, ctx.version]


def make_registry() -> dc.Registry:
    reg = dc.Registry()
    reg.add_orchestrator(vchild)
    reg.add_orchestrator(interpret, name="prog")
    reg.add_orchestrator(ainterpret, name="aprog")
    reg.add_orchestrator(child)
    return reg


def activities() -> dict[str, Any]:
    attempts: dict[int, int] = {}

    def act(ctx: Any, arg: Any) -> Any:
        v, bad = arg
        if bad:
            raise ValueError(f"bad {v}")
        return v * 3

    def flaky(ctx: Any, arg: Any) -> Any:
        key, fails = arg
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] <= fails:
            raise RuntimeError(f"attempt {attempts[key]}")
        return key

    return {"act": act, "flaky": flaky}


def run(core: Any, prog: list[Any], evs: list[Any], batch: bool, early: int,
        name: str = "prog", version: Any = None) -> Driver:
    d = Driver(OrchestrationExecutor(make_registry(), implementation=core), activities(),
               batch=batch)
    d.start(name, {"prog": prog, "gen": 0}, version=version)
    pending = list(evs)

    def deliver(name: str, v: int) -> None:
        if name == "!suspend":
            d.send([h.ExecutionSuspended(-1, d.now)], run=False)
        elif name == "!resume":
            d.send([h.ExecutionResumed(-1, d.now)], run=False)
        elif name == "!terminate":
            d.send([h.ExecutionTerminated(-1, d.now, str(v).encode())], run=False)
        else:
            d.raise_event(name, v, run=False)

    for name, v in pending[:early]:  # events that arrive before anyone waits
        if d.completion is None:
            deliver(name, v)
    pending = pending[early:]
    while d.completion is None:
        d.run()
        if d.completion is not None or not pending:
            break
        deliver(*pending.pop(0))
    return d


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=program, evs=events, batch=st.booleans(), early=st.integers(0, 3),
       name=st.sampled_from(["prog", "aprog"]), version=st.sampled_from([None, "1"]))
def test_c_and_twin_agree(prog: list[Any], evs: list[Any], batch: bool, early: int,
                          name: str, version: Any) -> None:
    dc_ = run(CORES["c"], prog, evs, batch, early, name, version)
    dp = run(CORES["py"], prog, evs, batch, early, name, version)
    event(f"status {dp.status!s}, executions {dp.executions + 1}")
    assert dc_.history == dp.history  # stack traces included: both start in user code
    assert dc_.completion == dp.completion
    assert dc_.activity_calls == dp.activity_calls
    assert [r.actions for r in dc_.results] == [r.actions for r in dp.results]
    assert [r.custom_status for r in dc_.results] == [r.custom_status for r in dp.results]


def mutate(prog: list[Any], data: st.DataObject) -> list[Any]:
    p = list(prog)
    choice = data.draw(st.sampled_from(["drop", "insert", "swap", "replace"]))
    if choice == "drop" and p:
        del p[data.draw(st.integers(0, len(p) - 1))]
    elif choice == "insert":
        p.insert(data.draw(st.integers(0, len(p))), data.draw(op))
    elif choice == "swap" and len(p) > 1:
        i = data.draw(st.integers(0, len(p) - 2))
        p[i], p[i + 1] = p[i + 1], p[i]
    elif p:
        p[data.draw(st.integers(0, len(p) - 1))] = data.draw(op)
    return p


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=program, evs=events, data=st.data())
def test_changed_code_replays_alike(prog: list[Any], evs: list[Any], data: st.DataObject) -> None:
    d = run(CORES["py"], prog, evs, True, 0)
    hist = d.history
    starts = [i for i, e in enumerate(hist) if type(e) is h.OrchestratorStarted]
    cut = data.draw(st.sampled_from(starts))
    old, new = hist[:cut], hist[cut:]
    new = new[: next((i for i, e in enumerate(new) if type(e) is h.OrchestratorCompleted),
                     len(new))]
    new = [e for e in new if type(e) not in (h.TaskScheduled, h.TimerCreated, h.EventSent,
                                              h.SubOrchestrationInstanceCreated,
                                              h.ExecutionCompleted, h.PatchMarker)]
    changed = mutate(prog, data)
    # swap the program: the ExecutionStarted input now holds the changed code
    conv = dc.JsonDataConverter()

    def swap(e: Any) -> Any:
        if type(e) is not h.ExecutionStarted:
            return e
        return e._replace(input=conv.serialize({"prog": changed,
                                                "gen": conv.deserialize(e.input)["gen"]}))

    old, new = [swap(e) for e in old], [swap(e) for e in new]
    results = {}
    for impl, core in CORES.items():
        ex = OrchestrationExecutor(make_registry(), implementation=core)
        r = ex.execute("inst", old, new)
        results[impl] = (r.actions, r.completion, r.new_history,
                         r.custom_status, r.is_suspended, r.session is None)
    assert results["c"] == results["py"]


def echo(ctx: Any) -> Any:
    v = yield ctx.call_activity("x")
    return [type(v).__name__, repr(v)]


payloads = st.one_of(
    st.builds(lambda v: __import__("json").dumps(v).encode(),
              st.one_of(st.integers(), st.text(), st.booleans(), st.none(),
                        st.floats(allow_nan=False), st.lists(st.integers(), max_size=3))),
    st.binary(max_size=24),
    st.sampled_from([b"-0", b"00", b"01", b"-", b"1e5", b" 1", b"1 ", b'"a\\n"', b'"\x01"',
                     b"123456789012345678", b"1234567890123456789", b"-999999999999999999",
                     b'"\xff"', b'"\xc3\xa9"', b"tru", b"nul", b'"', b"", b"[1,2]", b"-01"]),
)


@settings(max_examples=300, deadline=None)
@given(raw=payloads)
def test_payload_decoding_agrees(raw: bytes) -> None:
    """The C engine's JSON fast path decodes exactly like the converter (or fails alike)."""
    reg = dc.Registry()
    reg.add_orchestrator(echo)
    old = [h.OrchestratorStarted(-1, 0), h.ExecutionStarted(-1, 0, "echo", "i"),
           h.TaskScheduled(0, 0, "x"), h.OrchestratorCompleted(-1, 0)]
    new = [h.OrchestratorStarted(-1, 1), h.TaskCompleted(-1, 1, 0, raw)]
    conv = dc.JsonDataConverter()
    try:
        v = conv.deserialize(raw)
        expected: Any = ("ok", type(v).__name__, repr(v))
    except dc.PayloadError as e:
        expected = ("PayloadError", str(e))
    for core in CORES.values():
        c = OrchestrationExecutor(reg, implementation=core).execute("i", old, new).completion
        fd = c.failure_details
        if expected[0] == "ok":
            assert fd is None and conv.deserialize(c.result) == list(expected[1:])
        else:
            assert fd is not None and (fd.error_type, fd.message) == expected


def _containers(inner: Any) -> Any:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats(allow_nan=False),
              st.sampled_from([2**63, -2**63, 2**63 - 1, -2**63 + 1, "\ud800", "a\"b", "\\", "\x7f",
                               "é", "\u2028", "\x1f"])),
    _containers,
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_payload_encoding_agrees(value: Any) -> None:
    """call_activity's input bytes (C fast path included) are exactly the converter's."""
    conv = dc.JsonDataConverter()
    try:
        expected: Any = conv.serialize(value)
    except dc.PayloadError as e:
        expected = ("PayloadError", str(e))

    def orch(ctx: Any) -> Any:
        try:
            yield ctx.call_activity("x", input=value)
        except dc.PayloadError as e:
            return ["PayloadError", str(e)]

    reg = dc.Registry()
    reg.add_orchestrator(orch)
    for core in CORES.values():
        r = OrchestrationExecutor(reg, implementation=core).execute(
            "i", [], [h.OrchestratorStarted(-1, 0), h.ExecutionStarted(-1, 0, "orch", "i")])
        if isinstance(expected, tuple):
            assert r.completion is not None
            assert conv.deserialize(r.completion.result) == list(expected)
        else:
            assert r.actions[0].input == expected
