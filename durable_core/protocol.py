"""The constants the replay engine cores share with the policy: task kinds, action kinds, timer
roles.

Both engine cores (``csrc/replay.c`` and the twin ``_engine_py``) and the policy in
:mod:`durable_core.context` use these numbers and values. They live in this module of their own,
which imports nothing, so that the engines do not import the context module (which imports the
task module, which finds an engine module to build composites: a cycle).

The C core has its own copies, compiled in; :data:`CONSTANTS` is handed to it at registration
(``_replay_register``), which compares every value with the compiled one and refuses to load on
any difference (an extension built from other sources). Never renumber: the values are part of
the interface between the two implementations and the policy.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

__all__ = [
    "K_ACTIVITY", "K_TIMER", "K_SUBORCH", "K_EVENT", "K_ALL", "K_ANY", "K_DONE",
    "A_TASK", "A_TIMER", "A_SUBORCH", "A_SEND",
    "T_USER", "T_RETRY", "T_TIMEOUT",
    "CONSTANTS",
]

# Task kinds (a task's ``_kind``): what a task stands for.
K_ACTIVITY = 0  #: an activity call
K_TIMER = 1  #: a durable timer (user timer, retry back-off or event timeout: see T_*)
K_SUBORCH = 2  #: a sub-orchestration
K_EVENT = 3  #: a wait for an external event
K_ALL = 4  #: when_all
K_ANY = 5  #: when_any
K_DONE = 6  #: a task made finished (a foreign task adopted by the policy)

# Action kinds (``_add_action``): what a pending action asks the runtime to do.
A_TASK = 0  #: ScheduleTask
A_TIMER = 1  #: CreateTimer
A_SUBORCH = 2  #: CreateSubOrchestration
A_SEND = 3  #: SendEvent

# Timer roles (a timer task's ``_extra``): why the timer exists.
T_USER: Optional[str] = None  #: created by ctx.create_timer
T_RETRY = "retry"  #: the back-off before a retry
T_TIMEOUT = "timeout"  #: the timeout of wait_for_external_event

#: Every constant by name, as the C core checks them at registration.
CONSTANTS: Mapping[str, Union[int, str, None]] = {
    "K_ACTIVITY": K_ACTIVITY,
    "K_TIMER": K_TIMER,
    "K_SUBORCH": K_SUBORCH,
    "K_EVENT": K_EVENT,
    "K_ALL": K_ALL,
    "K_ANY": K_ANY,
    "K_DONE": K_DONE,
    "A_TASK": A_TASK,
    "A_TIMER": A_TIMER,
    "A_SUBORCH": A_SUBORCH,
    "A_SEND": A_SEND,
    "T_USER": T_USER,
    "T_RETRY": T_RETRY,
    "T_TIMEOUT": T_TIMEOUT,
}
