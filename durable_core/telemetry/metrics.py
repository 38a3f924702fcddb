"""The runtime's metrics, through OpenTelemetry's metrics API.

=============================================  =========  ===========================================
instrument                                     unit       what
=============================================  =========  ===========================================
``durable_core.orchestrations.started``        {instance} counter: executions whose first step committed
``durable_core.orchestrations.completed``      {instance} counter: executions that completed
``durable_core.orchestrations.failed``         {instance} counter: executions that failed
``durable_core.orchestrations.terminated``     {instance} counter: executions that were terminated
``durable_core.orchestration.step.duration``   s          histogram: replay + new code of one step
``durable_core.orchestration.step.replayed_events`` {event} histogram: events replayed per step
``durable_core.activity.executions``           {execution} counter: activity runs, by outcome
``durable_core.activity.duration``             s          histogram: one activity run
``durable_core.lease.takeovers``               {lease}    counter: work taken over from a worker
``durable_core.backlog.instances``             {instance} gauge: instances with ready messages
``durable_core.backlog.activities``            {activity} gauge: activities waiting for a worker
``durable_core.backlog.oldest_age``            s          gauge: age of the oldest ready message
=============================================  =========  ===========================================

Counters and histograms carry the orchestration or activity name (and the outcome or status);
the backlog gauges read the store (:meth:`Backend.backlog
<durable_core.backends.base.Backend.backlog>`) when the metrics are collected, at most once a
second, from whichever thread collects.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable, Optional, Sequence

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import attributes as A

__all__ = ["Instruments"]

log = logging.getLogger("durable_core.telemetry")

_BACKLOG_CACHE_SECONDS = 1.0
#: bucket boundaries (advice to the SDK; a view overrides them). The API's default buckets
#: are made for milliseconds: a step takes tens of microseconds, an activity anything.
STEP_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ACTIVITY_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
REPLAY_BUCKETS = (0, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000, 100000)


def _histogram(meter: Meter, name: str, unit: str, description: str,
               buckets: Sequence[float]) -> Any:
    try:
        return meter.create_histogram(name, unit=unit, description=description,
                                      explicit_bucket_boundaries_advisory=buckets)
    except TypeError:  # pragma: no cover - an API before 1.23 takes no advice
        return meter.create_histogram(name, unit=unit, description=description)


class Instruments:
    """The instruments of one worker, created on ``meter``; the backlog gauges read ``backend``."""

    def __init__(self, meter: Meter, backend: Any) -> None:
        self.started = meter.create_counter(
            "durable_core.orchestrations.started", unit="{instance}",
            description="Orchestration executions whose first step committed")
        self.completed = meter.create_counter(
            "durable_core.orchestrations.completed", unit="{instance}",
            description="Orchestration executions that completed")
        self.failed = meter.create_counter(
            "durable_core.orchestrations.failed", unit="{instance}",
            description="Orchestration executions that failed")
        self.terminated = meter.create_counter(
            "durable_core.orchestrations.terminated", unit="{instance}",
            description="Orchestration executions that were terminated")
        self.step_duration = _histogram(
            meter, "durable_core.orchestration.step.duration", "s",
            "Time to replay an orchestration and run its new code, per step", STEP_BUCKETS)
        self.replayed = _histogram(
            meter, "durable_core.orchestration.step.replayed_events", "{event}",
            "History events replayed per orchestration step (0 on a sticky session)",
            REPLAY_BUCKETS)
        self.activity_runs = meter.create_counter(
            "durable_core.activity.executions", unit="{execution}",
            description="Activity executions, by outcome")
        self.activity_duration = _histogram(
            meter, "durable_core.activity.duration", "s", "Duration of one activity execution",
            ACTIVITY_BUCKETS)
        self.takeovers = meter.create_counter(
            "durable_core.lease.takeovers", unit="{lease}",
            description="Leases taken over from a worker that let them expire")
        self._backend = backend
        self._closed = False
        self._lock = threading.Lock()
        self._cached: Optional[tuple[float, Any]] = None
        self._backlog_ok = True
        meter.create_observable_gauge(
            "durable_core.backlog.instances", callbacks=[self._observe_instances],
            unit="{instance}", description="Orchestration instances with messages ready to run")
        meter.create_observable_gauge(
            "durable_core.backlog.activities", callbacks=[self._observe_activities],
            unit="{activity}", description="Activities waiting for a worker")
        meter.create_observable_gauge(
            "durable_core.backlog.oldest_age", callbacks=[self._observe_age], unit="s",
            description="Age of the oldest ready orchestration message")

    def close(self) -> None:
        """The worker stopped: the gauges report nothing from now on (OpenTelemetry's API
        has no way to remove a callback)."""
        self._closed = True

    def _backlog(self) -> Optional[tuple[Any, int]]:
        """(the store's backlog, the store clock when read), cached for a second."""
        if self._closed or not self._backlog_ok:
            return None
        with self._lock:
            mono = time.monotonic()
            c = self._cached
            if c is not None and mono - c[0] < _BACKLOG_CACHE_SECONDS:
                return c[1]
            try:
                value = (self._backend.backlog(), self._backend.now())
            except NotImplementedError:
                self._backlog_ok = False  # a backend without it: no gauges, no retries
                return None
            except Exception:  # noqa: BLE001 - a collector thread must not fail on the store
                log.debug("durable_core: reading the backlog failed", exc_info=True)
                return None
            self._cached = (mono, value)
            return value

    def _observe_instances(self, options: CallbackOptions) -> Iterable[Observation]:
        b = self._backlog()
        return [Observation(b[0].instances)] if b is not None else []

    def _observe_activities(self, options: CallbackOptions) -> Iterable[Observation]:
        b = self._backlog()
        return [Observation(b[0].activities)] if b is not None else []

    def _observe_age(self, options: CallbackOptions) -> Iterable[Observation]:
        b = self._backlog()
        if b is None:
            return []
        oldest = b[0].oldest_visible_at
        age = 0.0 if oldest is None else max(0, b[1] - oldest) / 1e6
        return [Observation(age)]

    # -- what the worker records -----------------------------------------------------------
    def lease_taken_over(self, kind: str) -> None:
        self.takeovers.add(1, {A.LEASE_KIND: kind})
