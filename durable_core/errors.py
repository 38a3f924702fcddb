"""Exceptions raised by durable_core."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .history import FailureDetails

__all__ = [
    "DurableError",
    "HistoryCorruptError",
    "NonDeterminismError",
    "TaskFailedError",
    "OrchestrationNotFoundError",
    "OrchestrationAlreadyExistsError",
    "OrchestrationFailedError",
    "PayloadError",
    "EventTimeoutError",
    "TaskCancelledError",
    "StoreBusyError",
    "StoreError",
    "StoreUnavailableError",
    "StoreIncompatibleError",
    "BackendNotAvailableError",
    "OrchestratorNotFoundError",
    "OrchestratorNotRegisteredError",
]


class DurableError(Exception):
    """Base class of every durable_core error."""


class HistoryCorruptError(DurableError, ValueError):
    """An encoded history is truncated, bit-flipped, oversized or not a history at all.

    ``offset`` is the byte offset of the record (or header) that failed to decode.
    ``torn_tail`` is True when the buffer ends inside its last record (an interrupted append),
    as opposed to damage in the middle of the history.
    """

    def __init__(self, message: str, offset: int = 0, torn_tail: bool = False) -> None:
        super().__init__(message)
        self.offset = offset
        self.torn_tail = torn_tail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0] if self.args else "", self.offset, self.torn_tail))


class NonDeterminismError(DurableError):
    """Orchestrator code did something other than what its recorded history says it did."""

    def __init__(
        self,
        message: str,
        *,
        instance_id: str | None = None,
        sequence_number: int | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.sequence_number = sequence_number
        self.expected = expected
        self.actual = actual


class TaskFailedError(DurableError):
    """An activity or sub-orchestration failed; ``details`` says how (type, message, stack)."""

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message)
        self.details = details


class OrchestrationNotFoundError(DurableError, LookupError):
    """No orchestration instance with the given id exists in the store."""


class OrchestrationAlreadyExistsError(DurableError):
    """An instance with this id is already running (an orchestration is started once)."""


class OrchestrationFailedError(DurableError):
    """Raised by ``OrchestrationState.raise_if_failed()`` for a failed instance."""

    def __init__(self, message: str, details: FailureDetails | None) -> None:
        super().__init__(message)
        self.details = details


class PayloadError(DurableError, TypeError):
    """A value could not be serialized (or deserialized) by the data converter."""


class EventTimeoutError(DurableError, TimeoutError):
    """``wait_for_external_event(name, timeout=...)``: the timeout passed before the event came.

    ``name`` is the event name that was awaited.
    """

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class StoreError(DurableError):
    """The store cannot be opened or used; the message names it (a path, or a URL without its
    password) and says what to do. Subclasses tell the cases apart."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store cannot be reached now: a missing directory, a file that cannot be opened, a
    server that does not answer, a connection cut mid-call. Nothing was written by the call
    that raised it (or it is unknown whether the write committed: the message says which);
    retrying later may succeed."""


class StoreIncompatibleError(StoreError):
    """The store is not one this version can use: not a durable_core store at all (another
    application's database, a file that is not a database), or a schema newer than this
    durable_core. Nothing was changed."""


class BackendNotAvailableError(StoreError, ValueError):
    """The store URL cannot be used as given: an unknown scheme, a malformed URL, an unknown
    option, or a backend whose driver is not installed; the message says how to fix it."""


class StoreBusyError(StoreError, TimeoutError):
    """A write waited longer than the store's busy timeout for another writer to finish.

    SQLite admits one writer at a time per file; a worker or client in another process holding
    the lock for that long is stuck or the file is on a filesystem with broken locking. Nothing
    was written: the call can be retried.
    """


class TaskCancelledError(DurableError):
    """The awaited task (a timer or an event wait) was cancelled with ``task.cancel()``."""


class OrchestratorNotFoundError(DurableError, LookupError):
    """No orchestrator is registered under the name an instance was started with.

    The instance fails with error type ``"OrchestratorNotFoundError"``; the worker keeps running.
    """


#: The Durable Task SDK's name for :class:`OrchestratorNotFoundError` (the same class), so
#: ported ``except`` clauses keep working. (The SDK's class derives from ``ValueError``; this
#: one is a ``LookupError``.)
OrchestratorNotRegisteredError = OrchestratorNotFoundError
