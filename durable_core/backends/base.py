"""The storage backend interface: what the worker and the clients need from a store.

Everything above this module (worker, clients, runtime) talks to a :class:`Backend` only, so
the SQLite backend (:mod:`durable_core.backends.sqlite`) and a PostgreSQL backend can be swapped
without the rest knowing. The interface is shaped by what a server database needs too:

- **Leases with fencing.** A worker takes orchestration instances and activity rows with a lease
  (owner id + expiry + fencing token). A worker that crashed loses its leases when they expire
  (or at once, when a worker on the same host sees its process is gone); a stale owner that
  wakes up later cannot commit, because its fencing token no longer matches.
- **Batched commits.** :meth:`Backend.commit_steps` and :meth:`Backend.complete_activities` take
  many results and write them in one transaction (group commit).
- **A wake-up signal.** :class:`Notifier` wakes workers and waiting clients in the same process
  at once when something is committed; across processes a backend offers
  :meth:`Backend.changed_elsewhere` (SQLite: ``PRAGMA data_version``; PostgreSQL: LISTEN/NOTIFY)
  and the worker polls with back-off.

Timestamps are integer microseconds since the Unix epoch (UTC), as in the history.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from ..history import FailureDetails
from ..status import OrchestrationStatus

_log = logging.getLogger("durable_core.backends")

__all__ = [
    "Backend",
    "Notifier",
    "ReuseIdPolicy",
    "InstanceRow",
    "OrchestrationWorkItem",
    "ActivityWorkItem",
    "ActivityResult",
    "StepCommit",
    "QueryPage",
    "WouldBlock",
    "failure_to_json",
    "failure_from_json",
]


class ReuseIdPolicy(enum.Enum):
    """What scheduling an orchestration with the id of an existing instance does.

    ``ERROR`` (the default) raises :class:`~durable_core.errors.OrchestrationAlreadyExistsError`
    whenever the id exists. ``REPLACE_IF_TERMINAL`` replaces a completed, failed or terminated
    instance with a fresh one (its history is discarded) and still raises for a live one: an
    orchestration instance is started once.
    """

    ERROR = "error"
    REPLACE_IF_TERMINAL = "replace_if_terminal"


def failure_to_json(fd: Optional[FailureDetails]) -> Optional[str]:
    """Failure details -> JSON text for an instance row (``None`` stays ``None``)."""
    if fd is None:
        return None

    def enc(f: FailureDetails) -> dict[str, Any]:
        d: dict[str, Any] = {"type": f.error_type, "message": f.message}
        if f.stack_trace is not None:
            d["stack"] = f.stack_trace
        if f.is_non_retriable:
            d["non_retriable"] = True
        if f.inner_failure is not None:
            d["inner"] = enc(f.inner_failure)
        return d

    return json.dumps(enc(fd), separators=(",", ":"))


def failure_from_json(text: Optional[str]) -> Optional[FailureDetails]:
    """The inverse of :func:`failure_to_json`."""
    if text is None:
        return None

    def dec(d: dict[str, Any]) -> FailureDetails:
        inner = d.get("inner")
        return FailureDetails(
            d["type"],
            d["message"],
            d.get("stack"),
            dec(inner) if inner is not None else None,
            bool(d.get("non_retriable", False)),
        )

    return dec(json.loads(text))


@dataclass
class InstanceRow:
    """One orchestration instance as stored (payloads are serialized bytes)."""

    instance_id: str
    execution_id: str
    name: str
    status: OrchestrationStatus
    created_at: int
    last_updated_at: int
    input: Optional[bytes] = None
    output: Optional[bytes] = None
    custom_status: Optional[bytes] = None
    failure: Optional[FailureDetails] = None
    parent_instance_id: Optional[str] = None
    parent_task_id: int = -1
    tags: Optional[dict[str, str]] = None
    history_length: int = 0


@dataclass
class OrchestrationWorkItem:
    """An instance leased to a worker with the new events it must process.

    ``new_events`` is the concatenated codec records of the inbox rows (``decode_records``
    turns it into events); ``inbox_ids`` are those rows, deleted when the step commits.
    ``fence`` is the lease's fencing token, checked at commit.
    """

    instance_id: str
    execution_id: str
    name: str
    status: OrchestrationStatus
    history_length: int
    fence: int
    inbox_ids: list[int]
    new_events: bytes
    parent_instance_id: Optional[str] = None
    parent_task_id: int = -1
    parent_execution_id: Optional[str] = None


@dataclass
class ActivityWorkItem:
    """One activity invocation leased to a worker. At-least-once: it may run again if the
    worker dies before its result is committed."""

    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: Optional[bytes]
    attempt: int


@dataclass
class ActivityResult:
    """The outcome of one activity: ``result`` bytes, or ``failure`` details."""

    item: ActivityWorkItem
    result: Optional[bytes] = None
    failure: Optional[FailureDetails] = None


@dataclass
class StepCommit:
    """Everything one orchestration step writes, in store-neutral form.

    Built by the worker from the engine's ``ExecutionResult``; a backend writes a list of them
    in one transaction, refusing (and reporting) those whose lease was lost.
    """

    item: OrchestrationWorkItem
    #: codec bytes to append (``encode`` for a first chunk, ``encode_records`` after)
    history_chunk: Optional[bytes]
    #: number of events in ``history_chunk``
    history_added: int
    status: OrchestrationStatus
    custom_status: Optional[bytes] = None
    output: Optional[bytes] = None
    failure: Optional[FailureDetails] = None
    #: (task_id, name, input)
    activities: list[tuple[int, str, Optional[bytes]]] = field(default_factory=list)
    #: (timer_id, fire_at_us)
    timers: list[tuple[int, int]] = field(default_factory=list)
    #: (task_id, name, child_instance_id, input)
    sub_orchestrations: list[tuple[int, str, str, Optional[bytes]]] = field(default_factory=list)
    #: (target_instance_id, event_name, input)
    events: list[tuple[str, str, Optional[bytes]]] = field(default_factory=list)
    #: continue-as-new: (new_input, carryover event records bytes)
    continue_as_new: Optional[tuple[Optional[bytes], bytes]] = None
    #: replace the whole history (used when a corrupt history fails the instance): drop chunks
    drop_history: bool = False


@dataclass
class QueryPage:
    """One page of a query: rows and the token for the next page (``None`` at the end)."""

    rows: list[InstanceRow]
    continuation_token: Optional[str]


class Notifier:
    """In-process wake-up signal shared by every backend object opened on the same store.

    Workers register a callback run (from any thread) when new work may be ready; clients
    waiting for an instance register a callback for that instance id. Callbacks must be cheap
    and thread-safe (typically ``loop.call_soon_threadsafe`` or ``threading.Event.set``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: list[Callable[[Optional[int]], None]] = []
        self._waiters: dict[str, list[Callable[[], None]]] = {}

    def add_work_listener(self, cb: Callable[[Optional[int]], None]) -> None:
        """``cb(visible_at_us_or_None)`` runs when work was added (``visible_at`` if delayed)."""
        with self._lock:
            self._work.append(cb)

    def remove_work_listener(self, cb: Callable[[Optional[int]], None]) -> None:
        with self._lock:
            try:
                self._work.remove(cb)
            except ValueError:
                pass

    def work_added(self, visible_at: Optional[int] = None) -> None:
        """Tell the workers of this process that work was committed."""
        for cb in tuple(self._work):
            try:
                cb(visible_at)
            except Exception:  # a listener's failure must not fail the committed call
                _log.exception("durable_core: work listener failed")

    def add_waiter(self, instance_id: str, cb: Callable[[], None]) -> None:
        """``cb()`` runs whenever the instance's stored state changes."""
        with self._lock:
            self._waiters.setdefault(instance_id, []).append(cb)

    def remove_waiter(self, instance_id: str, cb: Callable[[], None]) -> None:
        with self._lock:
            lst = self._waiters.get(instance_id)
            if lst is not None:
                try:
                    lst.remove(cb)
                except ValueError:
                    pass
                if not lst:
                    del self._waiters[instance_id]

    def instances_changed(self, instance_ids: Iterable[str]) -> None:
        """Wake clients waiting on any of ``instance_ids``."""
        waiters = self._waiters
        if not waiters:
            return
        for iid in instance_ids:
            lst = waiters.get(iid)
            if lst:
                for cb in tuple(lst):
                    try:
                        cb()
                    except Exception:  # e.g. the waiter's event loop is closed
                        _log.exception("durable_core: instance waiter failed")


class WouldBlock(Exception):
    """A write inside :meth:`Backend.nonblocking` found another writer holding the store's lock.

    Raised before anything is written, so the call can simply be made again; the asyncio client
    waits for that on its event loop instead of blocking the loop on the lock.
    """


class Backend(ABC):
    """A durable store of orchestration instances, histories, inboxes and activity queues.

    Methods are synchronous and thread-safe (each thread gets its own connection where the
    driver needs it); the worker calls them on its event loop thread because they are short.
    """

    #: the store's URL
    url: str
    #: in-process wake-ups for this store
    notifier: Notifier

    @property
    def busy_timeout(self) -> float:
        """Seconds a write waits for another writer before it fails with StoreBusyError."""
        return 30.0

    @contextmanager
    def nonblocking(self) -> Iterator[None]:
        """Within the block, a write on this thread that would wait for another writer raises
        :class:`WouldBlock` at once, having written nothing. A store that cannot tell keeps
        waiting as usual (the default)."""
        yield

    @abstractmethod
    def migrate(self) -> tuple[int, int]:
        """Bring the store's schema up to date (idempotent); returns (version before, now)."""

    # -- client side -------------------------------------------------------------------------
    @abstractmethod
    def create_instance(
        self,
        instance_id: str,
        name: str,
        input: Optional[bytes],
        *,
        start_at: Optional[int],
        tags: Optional[dict[str, str]],
        reuse_policy: ReuseIdPolicy,
        now: int,
    ) -> None:
        """Create an instance (PENDING) and queue its ExecutionStarted (visible at ``start_at``).

        Raises OrchestrationAlreadyExistsError per ``reuse_policy``."""

    @abstractmethod
    def get_instance(self, instance_id: str) -> Optional[InstanceRow]:
        """The stored instance, or ``None``."""

    @abstractmethod
    def get_status(self, instance_id: str) -> Optional[int]:
        """Only the status value (cheap, for waiting clients), or ``None`` for an unknown id."""

    @abstractmethod
    def get_instances(self, instance_ids: Sequence[str]) -> dict[str, InstanceRow]:
        """Several instances at once (missing ids are absent from the result)."""

    @abstractmethod
    def enqueue_event(self, instance_id: str, event: Any, *, now: int) -> None:
        """Queue ``event`` (EventRaised, ExecutionSuspended, ExecutionResumed...) for an instance.

        Raises OrchestrationNotFoundError for an unknown id."""

    @abstractmethod
    def terminate(
        self, instance_id: str, reason: Optional[bytes], *, recursive: bool, now: int
    ) -> None:
        """Queue ExecutionTerminated for the instance (and its live children if ``recursive``)."""

    @abstractmethod
    def restart(self, instance_id: str, new_instance_id: Optional[str], *, now: int) -> str:
        """Start the instance again with its original input; returns the id used."""

    @abstractmethod
    def purge(self, instance_id: str, *, recursive: bool) -> int:
        """Delete a terminal instance (and its children): returns the number deleted."""

    @abstractmethod
    def purge_by(
        self,
        *,
        created_from: Optional[int],
        created_to: Optional[int],
        statuses: Optional[Sequence[OrchestrationStatus]],
    ) -> int:
        """Delete terminal instances matching the filters; returns the number deleted."""

    @abstractmethod
    def query(
        self,
        *,
        created_from: Optional[int],
        created_to: Optional[int],
        statuses: Optional[Sequence[OrchestrationStatus]],
        instance_id_prefix: Optional[str],
        page_size: int,
        continuation_token: Optional[str],
        fetch_payloads: bool = True,
        name: Optional[str] = None,
        parent_instance_id: Optional[str] = None,
    ) -> QueryPage:
        """Instances ordered by creation time, one page at a time."""

    @abstractmethod
    def count_by_status(
        self,
        *,
        created_from: Optional[int],
        created_to: Optional[int],
        instance_id_prefix: Optional[str],
        name: Optional[str],
    ) -> dict[OrchestrationStatus, int]:
        """How many instances match, per status (statuses with none may be absent)."""

    @abstractmethod
    def get_history(self, instance_id: str) -> Optional[bytes]:
        """The instance's encoded history (``None`` for an unknown id)."""

    # -- worker side -------------------------------------------------------------------------
    @abstractmethod
    def register_worker(self, owner: str, *, now: int) -> None:
        """Record a worker (for lease recovery) and release leases of dead workers on this host."""

    @abstractmethod
    def unregister_worker(self, owner: str) -> None:
        """Release every lease ``owner`` holds and forget the worker."""

    @abstractmethod
    def renew_leases(self, owner: str, *, now: int, activity_ids: Sequence[int] = ()) -> None:
        """Heartbeat: extend ``owner``'s leases on the activities it is running."""

    @abstractmethod
    def fetch_orchestrations(
        self, owner: str, *, now: int, limit: int
    ) -> list[OrchestrationWorkItem]:
        """Lease up to ``limit`` instances that have visible inbox events."""

    @abstractmethod
    def load_history(self, instance_id: str) -> bytes:
        """The instance's encoded history (``b""`` when it has none yet)."""

    @abstractmethod
    def commit_steps(self, owner: str, steps: Sequence[StepCommit], *, now: int) -> list[StepCommit]:
        """Write ``steps`` in one transaction; return the steps refused (lease lost)."""

    @abstractmethod
    def fetch_activities(self, owner: str, *, now: int, limit: int) -> list[ActivityWorkItem]:
        """Lease up to ``limit`` queued activity invocations."""

    @abstractmethod
    def complete_activities(
        self, owner: str, results: Sequence[ActivityResult], *, now: int
    ) -> int:
        """Commit activity outcomes in one transaction (results of lost leases are dropped);
        returns the number accepted."""

    def run_turn(
        self,
        owner: str,
        *,
        steps: Sequence[StepCommit],
        completions: Sequence[ActivityResult],
        now: int,
        orchestration_limit: int,
        activity_limit: int,
    ) -> tuple[list[StepCommit], list[OrchestrationWorkItem], list[ActivityWorkItem]]:
        """One dispatcher turn: commit ``steps`` and ``completions``, then lease the next
        instances and activities. Returns (refused steps, instances, activities).

        Backends should do it in one transaction (group commit); this default composes the
        single-purpose methods."""
        refused = self.commit_steps(owner, steps, now=now) if steps else []
        if completions:
            self.complete_activities(owner, completions, now=now)
        items = (
            self.fetch_orchestrations(owner, now=now, limit=orchestration_limit)
            if orchestration_limit > 0
            else []
        )
        acts = (
            self.fetch_activities(owner, now=now, limit=activity_limit)
            if activity_limit > 0
            else []
        )
        return refused, items, acts

    @abstractmethod
    def next_visible(self, *, now: int, horizon: int) -> list[int]:
        """Distinct ``visible_at`` times of delayed inbox rows due in ``(now, horizon]``."""

    @abstractmethod
    def changed_elsewhere(self) -> bool:
        """True if another process (connection) committed since the last call."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
