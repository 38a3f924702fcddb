"""Names of the span and metric attributes the runtime sets.

In the style of OpenTelemetry's semantic conventions: lower case, dot-separated namespaces,
snake_case words, the project's own namespace (``durable_core.``) for what the conventions do
not define, and the conventions' general attributes where one fits (``error.type``).
"""

from __future__ import annotations

__all__ = [
    "INSTANCE_ID",
    "EXECUTION_ID",
    "ORCHESTRATION_NAME",
    "ORCHESTRATION_VERSION",
    "ORCHESTRATION_STATUS",
    "ACTIVITY_NAME",
    "TASK_ID",
    "ATTEMPT",
    "ACTIVITY_OUTCOME",
    "REPLAYED_EVENTS",
    "NEW_EVENTS",
    "HISTORY_LENGTH",
    "ACTIONS",
    "STICKY",
    "ERROR_TYPE",
    "LEASE_KIND",
    "WORKER_ID",
    "EVENT_NAME",
    "TIMER_ID",
    "FIRE_AT",
]

#: the orchestration instance's id
INSTANCE_ID = "durable_core.orchestration.instance_id"
#: the execution's id (a new one after continue-as-new)
EXECUTION_ID = "durable_core.orchestration.execution_id"
#: the orchestrator's registered name
ORCHESTRATION_NAME = "durable_core.orchestration.name"
#: the orchestration version recorded at its start (absent when it has none)
ORCHESTRATION_VERSION = "durable_core.orchestration.version"
#: the runtime status after the step / at the end (``RUNNING``, ``COMPLETED``, ``FAILED``, ...)
ORCHESTRATION_STATUS = "durable_core.orchestration.status"
#: the activity's registered name
ACTIVITY_NAME = "durable_core.activity.name"
#: the task id the orchestration gave the activity (its sequence number in the history)
TASK_ID = "durable_core.task.id"
#: which claim of this activity row ran it (1 the first; more after a worker died or stopped)
ATTEMPT = "durable_core.activity.attempt"
#: ``completed``, ``failed`` or ``abandoned`` (its instance finished while it ran)
ACTIVITY_OUTCOME = "durable_core.activity.outcome"
#: history events the step replayed before running new code (0 on a sticky session)
REPLAYED_EVENTS = "durable_core.step.replayed_events"
#: new events the step delivered to the orchestrator
NEW_EVENTS = "durable_core.step.new_events"
#: the history's length after the step
HISTORY_LENGTH = "durable_core.step.history_length"
#: actions the step produced (activities, timers, sub-orchestrations, events sent)
ACTIONS = "durable_core.step.actions"
#: the step continued an in-memory session instead of replaying the stored history
STICKY = "durable_core.step.sticky"
#: the failure's exception type, OpenTelemetry's general attribute
ERROR_TYPE = "error.type"
#: what the taken-over lease was on: ``orchestration`` or ``activity``
LEASE_KIND = "durable_core.lease.kind"
#: the worker that ran the step or activity (``<pid>-<random>``)
WORKER_ID = "durable_core.worker.id"
#: on span events: the external event's name
EVENT_NAME = "durable_core.event.name"
#: on span events: the durable timer's id
TIMER_ID = "durable_core.timer.id"
#: on span events: when the timer fires (ISO 8601, UTC)
FIRE_AT = "durable_core.timer.fire_at"
