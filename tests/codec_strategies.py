"""Hypothesis strategies and sample histories shared by the codec tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from durable_core import history as h

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# mostly realistic values, sometimes the extremes
INTS = st.one_of(st.integers(min_value=-1, max_value=1000), I64)
TIMES = st.one_of(
    st.integers(min_value=1_600_000_000_000_000, max_value=1_800_000_000_000_000), I64
)
TEXT = st.text(max_size=20)
OPT_TEXT = st.none() | TEXT
PAYLOAD = st.none() | st.binary(max_size=40)
TAGS = st.none() | st.dictionaries(TEXT, TEXT, max_size=4)


def _failure(inner: Any) -> Any:
    return st.builds(
        h.FailureDetails,
        error_type=TEXT,
        message=TEXT,
        stack_trace=OPT_TEXT,
        inner_failure=inner,
        is_non_retriable=st.booleans(),
    )


FAILURE = st.recursive(st.none(), lambda inner: _failure(inner), max_leaves=4)
OPT_FAILURE = st.none() | FAILURE.filter(lambda f: f is not None)

EVENTS = st.one_of(
    st.builds(h.ExecutionStarted, INTS, TIMES, TEXT, TEXT, PAYLOAD, OPT_TEXT, OPT_TEXT, INTS,
              st.none() | I64, TAGS, OPT_TEXT, OPT_TEXT),
    st.builds(h.ExecutionCompleted, INTS, TIMES, INTS, PAYLOAD, OPT_FAILURE),
    st.builds(h.ExecutionTerminated, INTS, TIMES, PAYLOAD, st.booleans()),
    st.builds(h.ExecutionSuspended, INTS, TIMES, PAYLOAD),
    st.builds(h.ExecutionResumed, INTS, TIMES, PAYLOAD),
    st.builds(h.ContinueAsNew, INTS, TIMES, PAYLOAD),
    st.builds(h.OrchestratorStarted, INTS, TIMES),
    st.builds(h.OrchestratorCompleted, INTS, TIMES),
    st.builds(h.TaskScheduled, INTS, TIMES, TEXT, PAYLOAD),
    st.builds(h.TaskCompleted, INTS, TIMES, INTS, PAYLOAD),
    st.builds(h.TaskFailed, INTS, TIMES, INTS, OPT_FAILURE),
    st.builds(h.SubOrchestrationInstanceCreated, INTS, TIMES, TEXT, TEXT, PAYLOAD, OPT_TEXT),
    st.builds(h.SubOrchestrationInstanceCompleted, INTS, TIMES, INTS, PAYLOAD),
    st.builds(h.SubOrchestrationInstanceFailed, INTS, TIMES, INTS, OPT_FAILURE),
    st.builds(h.TimerCreated, INTS, TIMES, TIMES),
    st.builds(h.TimerFired, INTS, TIMES, TIMES, INTS),
    st.builds(h.EventRaised, INTS, TIMES, TEXT, PAYLOAD),
    st.builds(h.EventSent, INTS, TIMES, TEXT, TEXT, PAYLOAD),
    st.builds(h.PatchMarker, INTS, TIMES, TEXT),
)
EVENT_LISTS = st.lists(EVENTS, max_size=12)

T0 = 1_700_000_000_000_000


def sample_history() -> list[Any]:
    """A small history that uses every event class and every field kind."""
    fd = h.FailureDetails("ValueError", "bad input", "Traceback ...",
                          h.FailureDetails("KeyError", "k", None, None, True), False)
    return [
        h.ExecutionStarted(-1, T0, "flow", "inst-1", b'{"a": 1}', "1.0", "parent", 4,
                           T0 + 5, {"env": "prod", "": "ü"}, "exec-1",
                           "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        h.OrchestratorStarted(-1, T0 + 10),
        h.TaskScheduled(0, T0 + 20, "activity", b"[1, 2]"),
        h.TimerCreated(1, T0 + 21, T0 + 60_000_000),
        h.EventSent(2, T0 + 22, "other", "ping", None),
        h.SubOrchestrationInstanceCreated(3, T0 + 23, "child", "inst-2", b"", "2"),
        h.PatchMarker(-1, T0 + 24, "send-receipt"),
        h.OrchestratorCompleted(-1, T0 + 30),
        h.TaskCompleted(-1, T0 + 40, 0, b'"ok"'),
        h.TaskFailed(-1, T0 + 41, 0, fd),
        h.TimerFired(-1, T0 + 42, T0 + 60_000_000, 1),
        h.EventRaised(-1, T0 + 43, "Approve", b"true"),
        h.SubOrchestrationInstanceCompleted(-1, T0 + 44, 3, None),
        h.SubOrchestrationInstanceFailed(-1, T0 + 45, 3, None),
        h.ExecutionSuspended(-1, T0 + 46, None),
        h.ExecutionResumed(-1, T0 + 47, b"r"),
        h.ContinueAsNew(-1, T0 + 48, b"{}"),
        h.ExecutionTerminated(-1, T0 + 49, b'"stop"', True),
        h.ExecutionCompleted(-1, T0 + 50, 3, None, fd),
    ]


def activity_chain(steps: int, payload: bytes = b"x" * 100) -> list[Any]:
    """A realistic history: an orchestration that calls ``steps`` activities one after another."""
    t = T0
    evs: list[Any] = [h.OrchestratorStarted(-1, t),
                      h.ExecutionStarted(-1, t, "chain", "inst-42", payload)]
    for i in range(steps):
        evs.append(h.TaskScheduled(i, t + 100, "process_item", payload))
        evs.append(h.OrchestratorCompleted(-1, t + 150))
        t += 5_000
        evs.append(h.OrchestratorStarted(-1, t))
        evs.append(h.TaskCompleted(-1, t + 10, i, payload))
    evs.append(h.ExecutionCompleted(-1, t + 200, 1, payload, None))
    evs.append(h.OrchestratorCompleted(-1, t + 210))
    return evs
