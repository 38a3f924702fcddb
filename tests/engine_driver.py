"""A tiny in-memory "store" that drives the replay engine, for tests and benchmarks.

It plays the runtime's part around :class:`durable_core.engine.OrchestrationExecutor`:
keeps the history, starts episodes with ``OrchestratorStarted``, runs activities at once
(synchronously), fires timers by advancing a virtual clock, runs sub-orchestrations to
completion with a child driver, and feeds the outcomes back as events -- exactly the contract
the real runtime follows (see CONTRACT section 1 / ``durable_core.engine``):

- an episode's ``new_events`` start with ``OrchestratorStarted(-1, now)``;
- ``ScheduleTask(id, name, input)`` -> ``TaskCompleted(task_scheduled_id=id)`` or ``TaskFailed``;
- ``CreateTimer(id, fire_at)`` -> ``TimerFired(timer_id=id, fire_at=...)`` when the clock
  reaches ``fire_at``;
- ``CreateSubOrchestration`` -> a child instance started with ``ExecutionStarted
  (parent_instance_id, parent_task_id=id, version)``, then
  ``SubOrchestrationInstanceCompleted/Failed``;
- ``SendEvent`` -> recorded in ``sent`` (and delivered if the target is a known driver);
- ``CompleteOrchestration`` ends the instance (CONTINUED_AS_NEW restarts it with a fresh
  history and the carryover events).

With ``check_sticky=True`` every episode runs twice: a full replay of the stored history and
the sticky session of the previous episode; the two results must be equal (the driver asserts).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from durable_core import history as h
from durable_core.context import ActivityContext, failure_details_of
from durable_core.engine import (
    CompleteOrchestration,
    CreateSubOrchestration,
    CreateTimer,
    ExecutionResult,
    OrchestrationExecutor,
    ScheduleTask,
    SendEvent,
)
from durable_core.status import OrchestrationStatus

T0 = 1_700_000_000_000_000  # µs: a fixed start time, so runs are reproducible
STEP = 1_000  # µs the clock advances per episode


def result_key(res: ExecutionResult) -> tuple[Any, ...]:
    """The comparable part of an ExecutionResult (everything except the session object)."""
    return (res.actions, res.new_history, res.custom_status, res.completion, res.is_suspended,
            res.session is None, None if res.session is None else res.session.history_length)


class Driver:
    """Runs one orchestration instance to completion against an executor (see module docs)."""

    def __init__(
        self,
        executor: OrchestrationExecutor,
        activities: Optional[dict[str, Callable[..., Any]]] = None,
        *,
        instance_id: str = "inst",
        now: int = T0,
        check_sticky: bool = True,
        batch: bool = True,
        parent: Optional[tuple[str, int]] = None,
    ) -> None:
        self.executor = executor
        self.activities = activities or {}
        self.instance_id = instance_id
        self.now = now
        self.check_sticky = check_sticky
        self.batch = batch  # deliver all ready activity results in one episode
        self.parent = parent
        self.history: list[Any] = []
        self.session: Any = None
        self.inbox: list[Any] = []  # events for the next episode
        self.timers: list[tuple[int, int]] = []  # (fire_at, timer id)
        self.sent: list[SendEvent] = []
        self.results: list[ExecutionResult] = []
        self.completion: Optional[CompleteOrchestration] = None
        self.executions = 0  # continue-as-new count
        self.activity_calls: list[tuple[str, Any]] = []
        self.children: dict[str, "Driver"] = {}

    # -- episodes ----------------------------------------------------------------------------
    def start(self, name: str, input: Any = None, version: Optional[str] = None) -> ExecutionResult:
        """First episode: ``[OrchestratorStarted, ExecutionStarted(name, input, version)]``."""
        payload = self.executor.converter.serialize(input)
        return self._start_raw(name, payload, version=version)

    def _start_raw(self, name: str, payload: Optional[bytes],
                   carry: tuple[Any, ...] = (), version: Optional[str] = None) -> ExecutionResult:
        self.name = name
        self.version = version
        pid, ptask = self.parent if self.parent else (None, -1)
        started = h.ExecutionStarted(-1, self.now, name, self.instance_id, payload, version,
                                     parent_instance_id=pid, parent_task_id=ptask)
        self.history = []
        self.session = None
        return self.episode([started, *carry])

    def episode(self, events: list[Any]) -> ExecutionResult:
        """Run one episode with ``events`` (OrchestratorStarted is prepended)."""
        evs = [h.OrchestratorStarted(-1, self.now), *events]
        full = self.executor.execute(self.instance_id, self.history, evs)
        res = full
        if self.check_sticky and self.session is not None:
            assert self.session.history_length == len(self.history)
            sticky = self.session.execute(evs)
            assert result_key(sticky) == result_key(full), (
                f"sticky != full replay\nsticky: {result_key(sticky)}\nfull:   {result_key(full)}")
            res = sticky
        self.history.extend(full.new_history)
        self.session = res.session
        if res.session is not None:
            assert res.session.history_length == len(self.history)
        self.results.append(res)
        self.now += STEP
        self._apply(res)
        return res

    def _apply(self, res: ExecutionResult) -> None:
        for a in res.actions:
            if type(a) is ScheduleTask:
                self.inbox.append(self._run_activity(a))
            elif type(a) is CreateTimer:
                self.timers.append((a.fire_at, a.id))
            elif type(a) is CreateSubOrchestration:
                self.inbox.append(self._run_child(a))
            elif type(a) is SendEvent:
                self.sent.append(a)
            elif type(a) is CompleteOrchestration:
                self.completion = a
        if self.completion is not None and \
                self.completion.status == OrchestrationStatus.CONTINUED_AS_NEW:
            comp = self.completion
            self.completion = None
            self.executions += 1
            self.inbox.clear()
            self.timers.clear()
            self._start_raw(self.name, comp.result, comp.carryover_events, self.version)

    def _run_activity(self, a: ScheduleTask) -> Any:
        conv = self.executor.converter
        fn = self.activities.get(a.name)
        if fn is None:
            fd = h.FailureDetails("ActivityNotFoundError", f"no activity named {a.name!r}")
            return h.TaskFailed(-1, self.now, a.id, fd)
        value = conv.deserialize(a.input)
        self.activity_calls.append((a.name, value))
        try:
            actx = ActivityContext(self.instance_id, a.id, a.name)
            out = fn(actx, value) if len(inspect.signature(fn).parameters) >= 2 else fn(actx)
            return h.TaskCompleted(-1, self.now, a.id, conv.serialize(out))
        except Exception as exc:  # noqa: BLE001 - the activity's failure is data
            fd = failure_details_of(exc)
            return h.TaskFailed(-1, self.now, a.id, fd._replace(stack_trace=None))

    def _run_child(self, a: CreateSubOrchestration) -> Any:
        child = Driver(self.executor, self.activities, instance_id=a.instance_id, now=self.now,
                       check_sticky=self.check_sticky, batch=self.batch,
                       parent=(self.instance_id, a.id))
        self.children[a.instance_id] = child
        child._start_raw(a.name, a.input, version=a.version)
        child.run()
        c = child.completion
        if c is not None and c.status == OrchestrationStatus.COMPLETED:
            return h.SubOrchestrationInstanceCompleted(-1, self.now, a.id, c.result)
        fd = c.failure_details if c is not None else h.FailureDetails("Stuck", "child did not end")
        return h.SubOrchestrationInstanceFailed(-1, self.now, a.id, fd)

    # -- driving -----------------------------------------------------------------------------
    def run(self, max_episodes: int = 10_000) -> Optional[CompleteOrchestration]:
        """Deliver work until the instance completes or waits for something external."""
        for _ in range(max_episodes):
            if self.completion is not None:
                return self.completion
            if self.inbox:
                if self.batch:
                    events, self.inbox = self.inbox, []
                else:
                    events, self.inbox = [self.inbox[0]], self.inbox[1:]
                self.episode(events)
                continue
            if self.timers:
                self.timers.sort()
                fire_at, tid = self.timers.pop(0)
                self.now = max(self.now, fire_at)
                self.episode([h.TimerFired(-1, self.now, fire_at, tid)])
                continue
            return None
        raise AssertionError("too many episodes")

    def raise_event(self, name: str, data: Any = None, *, run: bool = True) -> None:
        """Deliver an external event (in its own episode, then keep running if ``run``)."""
        ev = h.EventRaised(-1, self.now, name, self.executor.converter.serialize(data))
        self.episode([ev])
        if run:
            self.run()

    def send(self, events: list[Any], *, run: bool = True) -> ExecutionResult:
        """Deliver arbitrary events in one episode."""
        res = self.episode(events)
        if run:
            self.run()
        return res

    @property
    def output(self) -> Any:
        """The decoded result of the completed instance."""
        assert self.completion is not None
        return self.executor.converter.deserialize(self.completion.result)

    @property
    def status(self) -> Optional[OrchestrationStatus]:
        return None if self.completion is None else OrchestrationStatus(self.completion.status)
