"""durable_core: durable orchestrations for Python with no server to run.

Write orchestrators as generator (or ``async def``) functions that yield activity calls,
timers, external events and sub-orchestrations; the runtime records every step in a history
on an embedded SQLite file (or PostgreSQL), so an orchestration survives crashes and restarts
and resumes exactly where it was. The replay engine, history codec and timer wheel are a C
extension, with a pure-Python twin selected by ``DURABLE_CORE_NO_EXTENSIONS=1``.

Public names are imported lazily so ``import durable_core`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "DurableError": "errors",
    "HistoryCorruptError": "errors",
    "NonDeterminismError": "errors",
    "TaskFailedError": "errors",
    "OrchestrationNotFoundError": "errors",
    "OrchestrationAlreadyExistsError": "errors",
    "OrchestrationFailedError": "errors",
    "PayloadError": "errors",
    "EventTimeoutError": "errors",
    "StoreBusyError": "errors",
    "StoreError": "errors",
    "StoreUnavailableError": "errors",
    "StoreIncompatibleError": "errors",
    "TaskCancelledError": "errors",
    "OrchestratorNotFoundError": "errors",
    "OrchestratorNotRegisteredError": "errors",
    # data
    "FailureDetails": "history",
    "OrchestrationStatus": "status",
    "OrchestrationState": "status",
    "DataConverter": "converter",
    "JsonDataConverter": "converter",
    # authoring API
    "orchestrator": "registry",
    "activity": "registry",
    "Registry": "registry",
    "OrchestrationContext": "context",
    "ActivityContext": "context",
    "Task": "task",
    "when_all": "task",
    "when_any": "task",
    "RetryPolicy": "task",
    # engine
    "OrchestrationExecutor": "engine",
    # versions
    "VersioningOptions": "versioning",
    "VersionMatch": "versioning",
    "VersionFailure": "versioning",
    # runtime
    "Runtime": "runtime",
    "Worker": "worker",
    "Client": "client",
    "AsyncClient": "client",
    "ReuseIdPolicy": "client",
    "QueryResult": "client",
    "BackendNotAvailableError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .client import AsyncClient, Client, QueryResult, ReuseIdPolicy
    from .context import ActivityContext, OrchestrationContext
    from .converter import DataConverter, JsonDataConverter
    from .engine import OrchestrationExecutor
    from .errors import (
        BackendNotAvailableError,
        DurableError,
        EventTimeoutError,
        OrchestratorNotFoundError,
        OrchestratorNotRegisteredError,
        TaskCancelledError,
        HistoryCorruptError,
        NonDeterminismError,
        OrchestrationAlreadyExistsError,
        OrchestrationFailedError,
        OrchestrationNotFoundError,
        PayloadError,
        StoreBusyError,
        StoreError,
        StoreIncompatibleError,
        StoreUnavailableError,
        TaskFailedError,
    )
    from .history import FailureDetails
    from .registry import Registry, activity, orchestrator
    from .runtime import Runtime
    from .status import OrchestrationState, OrchestrationStatus
    from .task import RetryPolicy, Task, when_all, when_any
    from .versioning import VersionFailure, VersioningOptions, VersionMatch
    from .worker import Worker


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'durable_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
