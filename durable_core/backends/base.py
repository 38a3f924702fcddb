"""The backend contract: persistence only.

A backend stores orchestration instances, their history chunks, their inboxes and the activity
queue, and hands out leases on them. It knows nothing of what the rows *mean*: which events go
to which instance, continue-as-new, sub-orchestrations, events to unknown or finished
instances, terminate-before-start -- all of that is decided once, above this contract, by the
store layer (:mod:`durable_core.store`), which gives a backend finished rows to write. A new
backend implements :class:`Backend` and passes the conformance suite in ``tests/conformance``.

What the contract asks of a store (a networked database as much as a file):

- **Lifecycle.** ``Backend.from_url(url)`` opens (a backend is found by the URL's scheme, see
  :mod:`durable_core.backends`); :meth:`Backend.migrate` brings the schema up to date and can
  be run on its own (``durable-core migrate``); :meth:`Backend.close` releases connections.
- **Leases with fencing, on the store's clock.** Work is claimed for ``lease_seconds``
  (instances with ``fence`` incremented on every claim; activities with ``attempt``); expiry
  is measured by the store's own clock (:meth:`Backend.now`), never a worker's, because
  machines' clocks differ. A commit whose fence no longer matches is refused. A worker that
  stopped heartbeating loses its leases when they expire; a backend may release them sooner
  when it can prove the owner dead (SQLite: the owner's pid is gone on this host).
- **Batched commits.** :meth:`Backend.run_turn` writes many steps and activity outcomes and
  claims the next work in one transaction (group commit).
- **Push change notification.** Work listeners and instance watchers are called (from any
  thread) after commits -- this process's at once, other processes' as soon as the backend
  sees them (``PRAGMA data_version`` polling for SQLite, LISTEN/NOTIFY for PostgreSQL). A
  notification may be spurious; a missed one is made up by a slow safety poll of the waiter.
- **Observability.** :meth:`Backend.backlog` counts the work ready for a worker (read every
  few seconds by a metrics collector: cheap, no write lock); a claim says when it took over a
  lease a worker lost (:attr:`ClaimedInstance.taken_over`). A backend without ``backlog``
  still works; the metrics then leave the backlog gauges out.
- **Non-blocking use from asyncio.** :attr:`Backend.concurrency` says how an event loop may call
  the backend: ``"inline"`` (short local calls; a write that would wait for another writer
  raises :class:`TryLater` inside :meth:`Backend.attempt` instead of waiting) or
  ``"thread"`` (calls wait on a network: hand them to a thread).

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
from typing import (Any, Callable, ClassVar, Iterable, Iterator, Mapping, NamedTuple, Optional,
                    Sequence)

from ..history import FailureDetails
from ..status import OrchestrationStatus

_log = logging.getLogger("durable_core.backends")

__all__ = [
    "Backend",
    "ChangeHub",
    "ReuseIdPolicy",
    "InstanceRow",
    "InstanceFilter",
    "Message",
    "InboxMessage",
    "NewInstance",
    "ActivityWork",
    "ActivityOutcome",
    "StepWrite",
    "ClaimedInstance",
    "ClaimedActivity",
    "Turn",
    "StoredHistory",
    "QueryPage",
    "Backlog",
    "TryLater",
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
    """The inverse of :func:`failure_to_json` (a damaged value becomes a failure saying so)."""
    if text is None:
        return None

    def dec(d: dict[str, Any]) -> FailureDetails:
        inner = d.get("inner")
        return FailureDetails(
            str(d["type"]),
            str(d["message"]),
            d.get("stack"),
            dec(inner) if inner is not None else None,
            bool(d.get("non_retriable", False)),
        )

    try:
        return dec(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return FailureDetails("StoreDataError", "the stored failure details are unreadable")


# -- rows written -----------------------------------------------------------------------------
@dataclass
class Message:
    """One inbox row to write: an event (one codec record) for an instance.

    ``kind`` is the event's ``EVENT_TYPE``; ``execution_id`` limits delivery to one execution
    of the instance (``None``: whichever execution runs when it is delivered).
    """

    instance_id: str
    kind: int
    visible_at: int
    event: bytes
    execution_id: Optional[str] = None


@dataclass
class NewInstance:
    """An instance row to create, with its first inbox message (``start``).

    If ``instance_id`` exists already: when its status is in ``replace_statuses`` it is
    replaced (its history, inbox, payloads and idle activities dropped); otherwise nothing is
    written and, if ``on_conflict`` is set, that message is delivered instead.
    """

    instance_id: str
    execution_id: str
    name: str
    created_at: int
    start: Message
    input: Optional[bytes] = None
    version: Optional[str] = None
    tags: Optional[dict[str, str]] = None
    parent_instance_id: Optional[str] = None
    parent_task_id: int = -1
    parent_execution_id: Optional[str] = None
    scheduled_start_at: Optional[int] = None
    replace_statuses: frozenset[OrchestrationStatus] = frozenset()
    on_conflict: Optional[Message] = None


@dataclass
class ActivityWork:
    """A queued activity invocation (claimed later by some worker)."""

    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: Optional[bytes] = None
    trace_context: Optional[str] = None


@dataclass
class ActivityOutcome:
    """An activity finished: delete its row (if ``owner`` still holds it) and deliver ``message``."""

    activity_id: int
    message: Message


@dataclass
class StepWrite:
    """Everything one orchestration step (or one settlement of undeliverable messages) writes.

    Built by the store layer; a backend writes it as given, after checking that ``fence``
    still matches the instance's lease (else the whole write is refused). After the write the
    instance's lease is released.
    """

    instance_id: str
    fence: int
    status: OrchestrationStatus
    #: update the instance row (status, history length, last update time); False for a write
    #: that only consumes or defers messages (a settlement)
    touch: bool = True
    #: inbox rows this step consumed (deleted)
    consumed: Sequence[int] = ()
    #: delete every inbox row of the instance (a terminated-before-start instance)
    clear_inbox: bool = False
    #: drop the stored history first (continue-as-new), then append ``history``
    reset_history: bool = False
    #: codec records to append, holding ``history_added`` events, at event index ``history_base``
    history: Optional[bytes] = None
    history_base: int = 0
    history_added: int = 0
    #: write ``custom_status`` (``None`` deletes it); False leaves the stored one
    set_custom_status: bool = False
    custom_status: Optional[bytes] = None
    #: write ``output`` and ``failure`` (``None`` clears); False leaves them
    set_result: bool = False
    output: Optional[bytes] = None
    failure: Optional[FailureDetails] = None
    #: continue-as-new: the instance's new execution id and input (history must be reset)
    new_execution_id: Optional[str] = None
    new_input: Optional[bytes] = None
    #: delete the instance's queued and running activity rows (it finished or moved on)
    cancel_activities: bool = False
    #: inbox rows to insert (for this or other instances)
    messages: list[Message] = field(default_factory=list)
    #: inbox rows inserted only if their target instance exists (events sent to others)
    targeted: list[Message] = field(default_factory=list)
    #: activity invocations to queue
    activities: list[ActivityWork] = field(default_factory=list)
    #: instances to create (sub-orchestrations)
    instances: list[NewInstance] = field(default_factory=list)
    #: (inbox id, visible_at): consumed rows that are not deleted but wait until then
    deferrals: list[tuple[int, int]] = field(default_factory=list)
    #: store-layer bookkeeping, never persisted
    context: Any = None


# -- rows read --------------------------------------------------------------------------------
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
    version: Optional[str] = None
    scheduled_start_at: Optional[int] = None


@dataclass
class InboxMessage:
    """An inbox row as claimed: ``id`` identifies it for consumption or deferral."""

    id: int
    kind: int
    visible_at: int
    event: bytes
    execution_id: Optional[str] = None


@dataclass
class ClaimedInstance:
    """An instance leased to a worker with its visible inbox rows (in arrival order).

    ``fence`` is the lease's fencing token, checked at commit. ``taken_over`` is True when
    this claim took the instance from a lease that had expired while still held by some owner
    (the row's ``lock_owner`` was set at claim time: a worker died or stalled mid-step); a
    lease released normally -- a committed step, a settlement, ``unregister_worker``, and a
    backend's early release of a worker it proved dead -- leaves no owner behind, and the next
    claim is no take-over.
    """

    instance_id: str
    execution_id: str
    name: str
    status: OrchestrationStatus
    history_length: int
    fence: int
    messages: list[InboxMessage]
    parent_instance_id: Optional[str] = None
    parent_task_id: int = -1
    parent_execution_id: Optional[str] = None
    version: Optional[str] = None
    scheduled_start_at: Optional[int] = None
    has_custom_status: bool = False
    taken_over: bool = False


@dataclass
class ClaimedActivity:
    """One activity invocation leased to a worker. At-least-once: it may run again if the
    worker dies before its outcome is committed."""

    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: Optional[bytes]
    attempt: int
    trace_context: Optional[str] = None


@dataclass
class Turn:
    """What :meth:`Backend.run_turn` returns: refused steps, then the newly claimed work."""

    refused: list[StepWrite]
    instances: list[ClaimedInstance]
    activities: list[ClaimedActivity]


@dataclass
class StoredHistory:
    """An instance's history as stored: ``chunks`` of codec records, in order, and how many
    events the store says they hold (``length``) and where each chunk starts (``starts``)."""

    length: int
    starts: list[int]
    chunks: list[bytes]


@dataclass(frozen=True)
class InstanceFilter:
    """Which instances a query, count or purge is about (every given field must match)."""

    created_from: Optional[int] = None
    created_to: Optional[int] = None
    statuses: Optional[frozenset[OrchestrationStatus]] = None
    instance_id_prefix: Optional[str] = None
    name: Optional[str] = None
    parent_instance_id: Optional[str] = None


@dataclass
class QueryPage:
    """One page of a query: rows and the token for the next page (``None`` at the end)."""

    rows: list[InstanceRow]
    continuation_token: Optional[str]


class Backlog(NamedTuple):
    """The work ready for a worker now, as :meth:`Backend.backlog` reads it.

    ``instances``: instances with at least one visible, due inbox row whose lease nobody holds
    (expired or never taken) -- each counted once, however many rows it has. ``activities``:
    queued activity rows nobody holds a live lease on. ``oldest_visible_at``: the
    ``visible_at`` (store-clock microseconds) of the oldest visible inbox row of those
    instances, ``None`` when there is none; activity rows carry no due time and take no part.
    """

    instances: int
    activities: int
    oldest_visible_at: Optional[int]


class TryLater(Exception):
    """Inside :meth:`Backend.attempt`: the call would have to wait (another writer holds the
    store). Raised before anything is written, so the call can simply be made again later."""


# -- change notification ----------------------------------------------------------------------
WorkListener = Callable[[Optional[int]], None]
InstanceWatcher = Callable[[], None]


class ChangeHub:
    """Callbacks for change notification, for backends to build on.

    Work listeners get ``cb(visible_at_us_or_None)`` when work was added (``visible_at`` when
    it becomes due later); instance watchers get ``cb()`` when their instance changed.
    Callbacks run on whichever thread noticed the change; they must be cheap and thread-safe
    (``loop.call_soon_threadsafe``, ``threading.Event.set``) and a failing one is logged, never
    raised into the commit that triggered it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: tuple[WorkListener, ...] = ()
        self._watchers: dict[str, list[InstanceWatcher]] = {}

    # registration
    def add_work_listener(self, cb: WorkListener) -> None:
        with self._lock:
            self._work = self._work + (cb,)

    def remove_work_listener(self, cb: WorkListener) -> None:
        with self._lock:
            lst = list(self._work)
            try:
                lst.remove(cb)
            except ValueError:
                return
            self._work = tuple(lst)

    def add_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        with self._lock:
            self._watchers.setdefault(instance_id, []).append(cb)

    def remove_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        with self._lock:
            lst = self._watchers.get(instance_id)
            if lst is None:
                return
            try:
                lst.remove(cb)
            except ValueError:
                pass
            if not lst:
                del self._watchers[instance_id]

    # state
    @property
    def has_work_listeners(self) -> bool:
        return bool(self._work)

    def watched_ids(self) -> list[str]:
        """Instance ids with at least one watcher (a snapshot)."""
        with self._lock:
            return list(self._watchers)

    def watcher_count(self, instance_id: Optional[str] = None) -> int:
        """Watchers registered (for one instance, or in all)."""
        with self._lock:
            if instance_id is not None:
                return len(self._watchers.get(instance_id, ()))
            return sum(len(v) for v in self._watchers.values())

    @property
    def idle(self) -> bool:
        return not self._work and not self._watchers

    # delivery
    def work_added(self, visible_at: Optional[int] = None) -> None:
        for cb in self._work:
            try:
                cb(visible_at)
            except Exception:  # a listener's failure must not fail the committed call
                _log.exception("durable_core: work listener failed")

    def instances_changed(self, instance_ids: Iterable[str]) -> None:
        watchers = self._watchers
        if not watchers:
            return
        for iid in instance_ids:
            lst = watchers.get(iid)
            if lst:
                for cb in tuple(lst):
                    try:
                        cb()
                    except Exception:  # e.g. the waiter's event loop is closed
                        _log.exception("durable_core: instance watcher failed")


# -- the contract -----------------------------------------------------------------------------
class Backend(ABC):
    """A durable store of orchestration instances, histories, inboxes and activity queues.

    Methods are synchronous and thread-safe. See the module docstring for the contract as a
    whole; the conformance suite (``tests/conformance``) is its executable form.
    """

    #: URL schemes this backend opens (``sqlite``; ``postgresql``, ``postgres``)
    schemes: ClassVar[tuple[str, ...]] = ()
    #: documented URL query options: name -> one line of help (the backend parses them)
    options: ClassVar[Mapping[str, str]] = {}
    #: how an event loop calls this backend: ``"inline"`` or ``"thread"`` (module docstring)
    concurrency: ClassVar[str] = "thread"

    #: the store's URL (without a password)
    url: str
    #: seconds a claim lasts without a heartbeat
    lease_seconds: float
    #: seconds a call may wait for another writer before it fails with StoreBusyError
    write_timeout: float = 30.0

    # -- lifecycle ---------------------------------------------------------------------------
    #: the schema version the store had when this object opened it (before any migration it
    #: ran; 0 for a store created now)
    opened_schema_version: int = 0

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, options: Mapping[str, str], *, migrate: bool = True,
                 create: bool = True) -> "Backend":
        """Open the store named by ``url`` with the URL's (and the caller's) ``options``.

        ``migrate``: bring the schema up to date (creating it in an empty store); without it
        an out-of-date schema raises :class:`~durable_core.errors.StoreIncompatibleError`.
        ``create=False``: a store that does not exist yet (no file, no schema) raises
        :class:`~durable_core.errors.StoreUnavailableError` instead of being created -- so a
        mistyped URL in an operator's command is an error, not a new empty store.
        Unknown options, unreachable or foreign stores raise a ``StoreError`` naming the store.
        """

    @abstractmethod
    def migrate(self) -> tuple[int, int]:
        """Bring the store's schema up to date (idempotent); returns (version before, now)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and background threads; the backend is unusable afterwards."""

    def now(self) -> int:
        """The store's clock, in microseconds (lease expiry and due times are judged by it)."""
        from ..history import utc_now_us

        return utc_now_us()

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """Within the block, a write on this thread that would wait for another writer raises
        :class:`TryLater` at once, having written nothing. A backend that cannot tell keeps
        waiting as usual (the default)."""
        yield

    # -- change notification ------------------------------------------------------------------
    @abstractmethod
    def add_work_listener(self, cb: WorkListener) -> None:
        """``cb(visible_at_or_None)`` whenever work may be ready (see :class:`ChangeHub`)."""

    @abstractmethod
    def remove_work_listener(self, cb: WorkListener) -> None:
        """Stop calling ``cb``."""

    @abstractmethod
    def add_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        """``cb()`` whenever the stored state of ``instance_id`` may have changed."""

    @abstractmethod
    def remove_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        """Stop calling ``cb`` for ``instance_id``."""

    @abstractmethod
    def watcher_count(self, instance_id: Optional[str] = None) -> int:
        """Instance watchers registered (for one instance, or in all): for diagnostics and for
        tests that check a cancelled wait left nothing behind."""

    # -- client side -------------------------------------------------------------------------
    @abstractmethod
    def create_instance(self, new: NewInstance) -> Optional[OrchestrationStatus]:
        """Create (or replace, see :class:`NewInstance`) an instance with its start message.

        Returns ``None`` when written, else the status of the existing instance that stood
        in the way (nothing written)."""

    @abstractmethod
    def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        """Insert inbox rows for existing instances in one transaction; per message, whether
        its instance exists (rows for unknown instances are not written)."""

    @abstractmethod
    def get_instance(self, instance_id: str, *, payloads: bool = True) -> Optional[InstanceRow]:
        """The stored instance (without input/output/custom status/tags unless ``payloads``),
        or ``None``."""

    @abstractmethod
    def get_instances(self, instance_ids: Sequence[str]) -> dict[str, InstanceRow]:
        """Several instances with payloads (missing ids are absent from the result)."""

    @abstractmethod
    def query(
        self,
        flt: InstanceFilter,
        *,
        page_size: int,
        continuation_token: Optional[str],
        payloads: bool = True,
    ) -> QueryPage:
        """Instances matching ``flt`` ordered by (creation time, id), one page at a time.

        A malformed token raises ``ValueError``."""

    @abstractmethod
    def count(self, flt: InstanceFilter) -> dict[OrchestrationStatus, int]:
        """How many instances match, per status (statuses with none may be absent)."""

    @abstractmethod
    def load_history(self, instance_id: str) -> Optional[StoredHistory]:
        """The instance's stored history chunks (``None`` for an unknown id)."""

    @abstractmethod
    def delete_instances(
        self, instance_ids: Sequence[str], *, statuses: frozenset[OrchestrationStatus]
    ) -> list[str]:
        """Delete those of ``instance_ids`` whose status is in ``statuses``, with everything
        they own (history, inbox, payloads, activities); returns the ids deleted."""

    # -- worker side -------------------------------------------------------------------------
    @abstractmethod
    def register_worker(self, owner: str) -> None:
        """Record a live worker; a backend may release the leases of workers it can prove dead."""

    @abstractmethod
    def unregister_worker(self, owner: str) -> None:
        """Release every lease ``owner`` holds and forget the worker."""

    @abstractmethod
    def heartbeat(self, owner: str, activity_ids: Sequence[int]) -> set[int]:
        """Extend ``owner``'s leases on the activities it runs; returns the ids it still holds
        (an activity whose row is gone -- its instance finished or was terminated -- or whose
        lease another worker took is not in the result)."""

    @abstractmethod
    def release_activities(self, owner: str, activity_ids: Sequence[int]) -> None:
        """Give up leases on activities that will not finish here (graceful shutdown)."""

    @abstractmethod
    def run_turn(
        self,
        owner: str,
        *,
        steps: Sequence[StepWrite],
        outcomes: Sequence[ActivityOutcome],
        instance_limit: int,
        activity_limit: int,
    ) -> Turn:
        """One dispatcher turn in one transaction: write ``steps`` (refusing those whose fence
        no longer matches) and ``outcomes`` (dropping those of activities ``owner`` no longer
        holds), then claim up to ``instance_limit`` instances with visible inbox rows (each
        with all of its visible rows, in arrival order) and up to ``activity_limit`` queued
        activities."""

    @abstractmethod
    def next_visible(self, horizon: int) -> list[int]:
        """Distinct ``visible_at`` times of inbox rows not yet due, up to ``horizon``."""

    # -- observability -----------------------------------------------------------------------
    def backlog(self) -> Backlog:
        """The work ready now (see :class:`Backlog`), judged by the store's clock.

        A metrics collector reads it every few seconds: one consistent read through the
        backend's normal read path, never the write lock, and its cost must follow the ready
        work, not the instances and history the store holds. Optional: the default raises
        :class:`NotImplementedError`, and the metrics then report no backlog gauges.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not report its backlog (Backend.backlog); the "
            "backlog gauges are left out")
