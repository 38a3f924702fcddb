"""Tasks: what orchestrator code yields (or awaits), and the retry policy of activity calls.

A task stands for one durable operation -- an activity call, a timer, a sub-orchestration, an
external event -- or a combination of tasks (:func:`when_all`, :func:`when_any`). Orchestrator
code yields it (``r = yield task``) or awaits it (``r = await task``); the replay engine resumes
the code when history says the operation finished. Tasks are created by the context
(``ctx.call_activity(...)`` and friends), never directly.

The concrete task classes belong to the replay engine in use (C or the pure-Python twin); both
are registered as virtual subclasses of :class:`Task`, so ``isinstance(t, Task)`` holds for
either.

``from durable_core import task`` stands in for the Durable Task SDK's ``durabletask.task``:
besides its own names it gives ``task.OrchestrationContext``, ``task.ActivityContext`` and the
errors ``task.TaskFailedError``, ``task.NonDeterminismError``, ``task.TaskCancelledError``.
"""

from __future__ import annotations

import abc
import importlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generator, NamedTuple, Optional, Sequence

__all__ = [
    "Task",
    "RetryPolicy",
    "when_all",
    "when_any",
    "ScheduleTask",
    "CreateTimer",
    "CreateSubOrchestration",
    "SendEvent",
    "CompleteOrchestration",
]


# --- actions: what one episode asks the runtime to do (``id`` = sequence number) -------------
# (defined here, next to the tasks that produce them; ``durable_core.engine`` re-exports them)


class ScheduleTask(NamedTuple):
    """Run activity ``name`` with ``input``; answer with TaskCompleted/TaskFailed(``id``)."""

    id: int
    name: str
    input: Optional[bytes] = None


class CreateTimer(NamedTuple):
    """Deliver ``TimerFired(timer_id=id, fire_at=fire_at)`` at ``fire_at`` (µs since the epoch)."""

    id: int
    fire_at: int


class CreateSubOrchestration(NamedTuple):
    """Start child orchestration ``name`` as ``instance_id``; answer with its completion.

    ``version`` is the child's orchestration version (its ``ExecutionStarted.version``).
    """

    id: int
    name: str
    instance_id: str
    input: Optional[bytes] = None
    version: Optional[str] = None


class SendEvent(NamedTuple):
    """Deliver ``EventRaised(name, input)`` to instance ``instance_id``."""

    id: int
    instance_id: str
    name: str
    input: Optional[bytes] = None


class CompleteOrchestration(NamedTuple):
    """The instance ends: COMPLETED, FAILED, TERMINATED or CONTINUED_AS_NEW.

    For CONTINUED_AS_NEW ``result`` is the new input, and ``carryover_events`` are the external
    events to re-deliver to the new execution.
    """

    id: int
    status: Any  # OrchestrationStatus
    result: Optional[bytes] = None
    failure_details: Any = None  # FailureDetails | None
    carryover_events: tuple = ()


class Task(abc.ABC):
    """A durable operation the orchestrator can wait for.

    Interface (every engine's task class provides it):

    - ``is_complete`` -- True once the operation finished (successfully or not);
    - ``is_failed`` -- True if it finished with an error;
    - ``get_result()`` -- the result (raises the error for a failed task);
    - ``get_exception()`` -- the error of a failed task, else None;
    - ``cancel()`` -- for timers and event waits: stop waiting; code that awaits the task gets
      :class:`~durable_core.errors.TaskCancelledError`. Returns False if the task had already
      finished. Other tasks raise ``TypeError`` (a started activity cannot be recalled).
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def is_complete(self) -> bool:
        """True once the operation finished."""

    @property
    @abc.abstractmethod
    def is_failed(self) -> bool:
        """True if the operation finished with an error."""

    @abc.abstractmethod
    def get_result(self) -> Any:
        """The result of a completed task; raises its error if it failed."""

    @abc.abstractmethod
    def get_exception(self) -> Optional[BaseException]:
        """The error of a failed task, else None."""

    def __await__(self) -> Generator[Any, Any, Any]:  # pragma: no cover - engines override
        return (yield self)


@dataclass(frozen=True)
class RetryPolicy:
    """How an activity or sub-orchestration is retried when it fails.

    Each retry waits on a durable timer (a ``CreateTimer`` action), so back-offs survive
    restarts. The delay before retry ``n`` (n = 1 for the first retry) is
    ``first_retry_interval * backoff_coefficient ** (n - 1)``, capped by ``max_retry_interval``.
    No retry is started after ``max_number_of_attempts`` attempts in all, or once
    ``retry_timeout`` has passed since the first attempt was scheduled. Failures marked
    non-retriable are never retried.

    Each attempt takes a new sequence number (after its back-off timer's); the Durable Task SDK
    reuses the first attempt's. Histories are not exchanged between the two, so nothing depends
    on it, but replaying a retried call needs code that retries the same way.
    """

    first_retry_interval: timedelta
    max_number_of_attempts: int
    backoff_coefficient: float = 1.0
    max_retry_interval: Optional[timedelta] = None
    retry_timeout: Optional[timedelta] = None

    def __post_init__(self) -> None:
        if not isinstance(self.first_retry_interval, timedelta):
            raise TypeError("first_retry_interval must be a timedelta")
        if self.first_retry_interval < timedelta(0):
            raise ValueError("first_retry_interval must not be negative")
        if int(self.max_number_of_attempts) < 1:
            raise ValueError("max_number_of_attempts must be at least 1")
        if not (self.backoff_coefficient >= 1.0) or math.isinf(self.backoff_coefficient):
            raise ValueError("backoff_coefficient must be a finite number >= 1")
        if self.max_retry_interval is not None and self.max_retry_interval < timedelta(0):
            raise ValueError("max_retry_interval must not be negative")
        if self.retry_timeout is not None and self.retry_timeout < timedelta(0):
            raise ValueError("retry_timeout must not be negative")

    def next_delay_us(self, attempts: int, first_attempt_us: int, now_us: int) -> Optional[int]:
        """Delay in microseconds before the next attempt, or None when no retry is left.

        ``attempts`` is how many attempts have run (and failed) so far; ``first_attempt_us`` is
        when the first was scheduled and ``now_us`` is the orchestration's current time.
        """
        if attempts >= self.max_number_of_attempts:
            return None
        if self.retry_timeout is not None:
            if now_us - first_attempt_us >= _us(self.retry_timeout):
                return None
        delay = _us(self.first_retry_interval) * self.backoff_coefficient ** (attempts - 1)
        if self.max_retry_interval is not None:
            delay = min(delay, _us(self.max_retry_interval))
        return int(delay)


def _us(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


_ENGINES: dict[type, Any] = {}  # task class -> module with its when_all/when_any


def _engine_module_of(tasks: Sequence[Any]) -> Any:
    """The engine implementation (C core or twin module) whose task class the tasks use."""
    if not _ENGINES:
        from . import _impl

        for cls in _impl.implementations("Task", "durable_core._engine_py").values():
            _ENGINES[cls] = importlib.import_module(cls.__module__)
    if not tasks:
        return importlib.import_module("durable_core._engine_py")
    kind = type(tasks[0])  # the engine's when_all/when_any checks every task's type
    mod = _ENGINES.get(kind)
    if mod is None:
        raise TypeError(f"when_all/when_any expect tasks, got {kind.__name__}")
    return mod


def when_all(tasks: Sequence[Task], *, fail_fast: bool = False) -> Task:
    """A task that completes when every task in ``tasks`` has finished.

    Its result is the list of their results, in order. If some of them failed, it fails once
    all have finished, with the error of the first one to fail (in the order the failures
    arrived) -- the Durable Task SDK's and .NET ``Task.WhenAll``'s semantics: code that catches
    the error knows nothing is still running.

    ``fail_fast=True`` fails as soon as one task fails instead (the others keep running and
    their outcomes are ignored): for code that wants to react to the first failure at once,
    for example to compensate without waiting for slow siblings.
    """
    if not isinstance(tasks, (list, tuple)):
        tasks = list(tasks)
    mod = _engine_module_of(tasks)
    if fail_fast:
        return mod.when_all(tasks, fail_fast=True)  # type: ignore[no-any-return]
    return mod.when_all(tasks)  # type: ignore[no-any-return]


def when_any(tasks: Sequence[Task]) -> Task:
    """A task that completes as soon as one task in ``tasks`` finishes (or fails).

    Its result is that task (the first one in list order if several finished already); get its
    value with ``winner.get_result()``.
    """
    if not isinstance(tasks, (list, tuple)):
        tasks = list(tasks)
    if not tasks:
        raise ValueError("when_any needs at least one task")
    return _engine_module_of(tasks).when_any(tasks)  # type: ignore[no-any-return]


# Names ported code finds in the Durable Task SDK's ``task`` module, defined elsewhere here
# (imported on first use: ``context`` imports this module).
_SDK_NAMES = {
    "OrchestrationContext": "context",
    "ActivityContext": "context",
    "TaskFailedError": "errors",
    "NonDeterminismError": "errors",
    "TaskCancelledError": "errors",
}


def __getattr__(name: str) -> Any:
    mod = _SDK_NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"durable_core.{mod}"), name)
    globals()[name] = value
    return value
