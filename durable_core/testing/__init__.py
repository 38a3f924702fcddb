"""Testing and safe deploys: a test runtime with a controllable clock, and replaying stored
histories against new code.

- :class:`TestEnvironment` / :class:`AsyncTestEnvironment` (:mod:`.harness`): run
  orchestrations in a unit test on a temporary store, skip time (``env.skip(timedelta(days=3))``
  or ``auto_skip=True``), replace activities by fakes, read the history.
- :func:`replay` (:mod:`.replay`): replay histories from a store or from exported files
  through the current registry and report where the code departs from them -- the check to
  run before deploying changed orchestrator code (``durable-core replay`` runs it from CI).
- ``pytest_plugins = ["durable_core.testing.fixtures"]`` gives tests a ``durable_env``
  fixture.
"""

from __future__ import annotations

from .harness import AsyncTestEnvironment, TestClock, TestEnvironment, with_fakes
from .replay import ReplayReport, ReplayResult, read_history_file, replay, write_history_file

__all__ = [
    "TestEnvironment",
    "AsyncTestEnvironment",
    "TestClock",
    "with_fakes",
    "replay",
    "ReplayReport",
    "ReplayResult",
    "read_history_file",
    "write_history_file",
]
