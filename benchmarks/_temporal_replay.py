"""Temporal's side of the stored-history replay row in ``benchmarks/replay.py`` (needs
``temporalio``; imported only when it is installed).

The histories are built without a server, as ``temporalio.api.history.v1`` protobufs in the
shape a Temporal server writes for a workflow that calls N activities in sequence:

    1  WorkflowExecutionStarted
    2  WorkflowTaskScheduled   3  WorkflowTaskStarted   4  WorkflowTaskCompleted
    5  ActivityTaskScheduled   6  ActivityTaskStarted   7  ActivityTaskCompleted
    8  WorkflowTaskScheduled   9  WorkflowTaskStarted  10  WorkflowTaskCompleted
   11  ActivityTaskScheduled  ... (6 events per step)
       WorkflowTaskScheduled/Started/Completed, WorkflowExecutionCompleted

(event ids from 1, each event pointing at the ones it follows: a workflow task's Started at its
Scheduled, Completed at both; an activity's Scheduled at the workflow task that decided it,
Started at its Scheduled, Completed at both; activity ids "1", "2", ... as the Python SDK
numbers them; JSON payloads as its default converter writes them). :func:`check` replays one
with the right workflow and one with a workflow that calls another activity, which must fail
with a non-determinism error: the Replayer really checks these histories.

The workflows live in this module (not in ``__main__``) so the Replayer's sandbox can import
them by name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import timedelta
from typing import Any, Optional, Sequence

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio import workflow
from temporalio.api.common.v1 import (ActivityType, Payload, Payloads, RetryPolicy,
                                      WorkflowType)
from temporalio.api.enums.v1 import EventType, TaskQueueKind
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    History,
    HistoryEvent,
    WorkflowExecutionCompletedEventAttributes,
    WorkflowExecutionStartedEventAttributes,
    WorkflowTaskCompletedEventAttributes,
    WorkflowTaskScheduledEventAttributes,
    WorkflowTaskStartedEventAttributes,
)
from temporalio.api.sdk.v1 import WorkflowTaskCompletedMetadata
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.client import WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

TASK_QUEUE = "bench"
IDENTITY = "1234@bench-host"


@workflow.defn(name="chain")
class Chain:
    @workflow.run
    async def run(self, n: int) -> Any:
        x = None
        for i in range(n):
            x = await workflow.execute_activity("step", i, start_to_close_timeout=timedelta(seconds=10))
        return x


@workflow.defn(name="chain")
class ChainChanged:
    """The same workflow type, changed: it calls another activity (a non-deterministic change)."""

    @workflow.run
    async def run(self, n: int) -> Any:
        x = None
        for i in range(n):
            x = await workflow.execute_activity("other", i, start_to_close_timeout=timedelta(seconds=10))
        return x


def _payload(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"},
                   data=json.dumps(value, separators=(",", ":")).encode())


def _ts(us: int) -> Timestamp:
    t = Timestamp()
    t.FromMicroseconds(us)
    return t


def _dur(seconds: int) -> Duration:
    return Duration(seconds=seconds)


def chain_history(n: int, workflow_id: str, run_id: str, t0_us: int = 1_700_000_000_000_000) -> History:
    """The history a server writes for ``Chain.run(n)`` with step i returning ``2 * i``."""
    events: list[HistoryEvent] = []
    clock = [t0_us]

    def add(kind: int, **attrs: Any) -> int:
        clock[0] += 1000
        eid = len(events) + 1
        events.append(HistoryEvent(event_id=eid, event_time=_ts(clock[0]), event_type=kind,
                                   task_id=1048576 + eid, **attrs))
        return eid

    tq = TaskQueue(name=TASK_QUEUE, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL)
    add(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes(
            workflow_type=WorkflowType(name="chain"), task_queue=tq,
            input=Payloads(payloads=[_payload(n)]),
            workflow_execution_timeout=_dur(0), workflow_run_timeout=_dur(0),
            workflow_task_timeout=_dur(10), original_execution_run_id=run_id,
            identity=IDENTITY, first_execution_run_id=run_id, attempt=1,
            workflow_id=workflow_id))

    def workflow_task(first: bool = False) -> int:
        sched = add(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                    workflow_task_scheduled_event_attributes=WorkflowTaskScheduledEventAttributes(
                        task_queue=tq, start_to_close_timeout=_dur(10), attempt=1))
        started = add(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                      workflow_task_started_event_attributes=WorkflowTaskStartedEventAttributes(
                          scheduled_event_id=sched, identity=IDENTITY,
                          request_id=f"{run_id}-{sched}", history_size_bytes=0))
        # the first task of a run records the SDK's internal flags, as current SDKs do: core
        # flag 1 turns on the activity id and type checks during replay (without it a replay
        # does not notice a changed activity type), 2 the patch/search-attribute checks
        meta = (WorkflowTaskCompletedMetadata(core_used_flags=[1, 2], sdk_name="temporal-python",
                                              sdk_version="1.0.0")
                if first else None)
        return add(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                   workflow_task_completed_event_attributes=WorkflowTaskCompletedEventAttributes(
                       scheduled_event_id=sched, started_event_id=started, identity=IDENTITY,
                       sdk_metadata=meta))

    completed = workflow_task(first=True)
    for i in range(n):
        sched = add(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                    activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
                        activity_id=str(i + 1), activity_type=ActivityType(name="step"),
                        task_queue=TaskQueue(name=TASK_QUEUE), input=Payloads(payloads=[_payload(i)]),
                        schedule_to_close_timeout=_dur(0), schedule_to_start_timeout=_dur(0),
                        start_to_close_timeout=_dur(10), heartbeat_timeout=_dur(0),
                        workflow_task_completed_event_id=completed,
                        retry_policy=RetryPolicy(initial_interval=_dur(1), backoff_coefficient=2.0,
                                                 maximum_interval=_dur(100))))
        started = add(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
                      activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(
                          scheduled_event_id=sched, identity=IDENTITY,
                          request_id=f"{run_id}-a{sched}", attempt=1))
        add(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
            activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
                result=Payloads(payloads=[_payload(2 * i)]), scheduled_event_id=sched,
                started_event_id=started, identity=IDENTITY))
        completed = workflow_task()
    add(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        workflow_execution_completed_event_attributes=WorkflowExecutionCompletedEventAttributes(
            result=Payloads(payloads=[_payload(2 * (n - 1) if n else None)]),
            workflow_task_completed_event_id=completed))
    return History(events=events)


def histories(n_steps: int, count: int) -> list[WorkflowHistory]:
    """``count`` histories of ``n_steps`` steps, each its own workflow id and run id."""
    out = []
    for k in range(count):
        wid = f"chain-{k}"
        run_id = f"00000000-0000-4000-8000-{k:012d}"
        out.append(WorkflowHistory(wid, chain_history(n_steps, wid, run_id).events))
    return out


_runtime: Optional[Runtime] = None


def _quiet_runtime() -> Runtime:
    """A core runtime that logs only errors (the sanity check's expected failure would log a
    warning from the Rust core and from the SDK otherwise)."""
    global _runtime
    if _runtime is None:
        flt = TelemetryFilter(core_level="ERROR", other_level="ERROR")
        _runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=flt)))
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    return _runtime


def replayer(sandboxed: bool = True, changed: bool = False) -> Replayer:
    """A replayer with the default (sandboxed) workflow runner, or the unsandboxed one."""
    wf = [ChainChanged if changed else Chain]
    kw: dict[str, Any] = {"runtime": _quiet_runtime()}
    if not sandboxed:
        kw["workflow_runner"] = UnsandboxedWorkflowRunner()
    return Replayer(workflows=wf, **kw)


async def _replay_all(rp: Replayer, hs: Sequence[WorkflowHistory]) -> dict[str, Exception]:
    async def it() -> Any:
        for x in hs:
            yield x

    res = await rp.replay_workflows(it(), raise_on_replay_failure=False)
    return dict(res.replay_failures)


def replay_all(rp: Replayer, hs: Sequence[WorkflowHistory]) -> dict[str, Exception]:
    """Replay ``hs`` through one replayer (one replay worker); the failures by run id."""
    return asyncio.run(_replay_all(rp, hs))


def check(n_steps: int, sandboxed: bool = True) -> tuple[bool, str]:
    """(ok, what happened): the right workflow replays a history cleanly (as built, and read
    back from its JSON export), and a changed one fails it with a non-determinism error."""
    hs = histories(n_steps, 1)
    # also through the JSON form the Temporal CLI and UI export (WorkflowHistory.from_json)
    hs.append(WorkflowHistory.from_json(hs[0].workflow_id, hs[0].to_json()))
    good = replay_all(replayer(sandboxed), hs)
    if good:
        return False, f"the unchanged workflow failed to replay: {next(iter(good.values()))!r}"
    hs = hs[:1]
    bad = replay_all(replayer(sandboxed, changed=True), hs)
    err: Optional[Exception] = next(iter(bad.values()), None)
    if err is None:
        return False, "a workflow calling another activity replayed cleanly: the histories are not checked"
    from temporalio.workflow import NondeterminismError

    if not isinstance(err, NondeterminismError):
        return False, f"the changed workflow failed, but not nondeterministically: {err!r}"
    m = re.search(r"\[TMPRL1100\][^\"]*", str(err))
    msg = m.group(0) if m else str(err)[:160]
    return True, f"the workflow replays cleanly; a changed one (another activity) fails: {msg}"
