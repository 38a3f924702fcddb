"""The embedded store: one SQLite file (WAL) through the standard library's ``sqlite3``.

Persistence only (the contract is :mod:`durable_core.backends.base`; the schema is in
:mod:`.schema`, the SQL of a dispatcher turn in :mod:`.turn`, the row layout in :mod:`.rows`). SQLite admits one writer at a time per file, and that is handled here, below
the contract: every write is one ``BEGIN IMMEDIATE`` transaction; in one process, writers on
the same file take a process-wide lock first so they never spin in SQLite's busy handler;
waiting for another process's writer happens in short steps (:meth:`SqliteBackend._begin`);
inside :meth:`SqliteBackend.attempt` a write refuses with :class:`~.base.TryLater` instead.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from ...errors import (
    BackendNotAvailableError,
    StoreBusyError,
    StoreIncompatibleError,
    StoreUnavailableError,
)
from ...history import utc_now_us
from ...status import OrchestrationStatus
from ..base import (
    ActivityOutcome,
    Backend,
    Backlog,
    ChangeHub,
    InstanceFilter,
    InstanceRow,
    InstanceWatcher,
    Message,
    NewInstance,
    QueryPage,
    StepWrite,
    StoredHistory,
    TryLater,
    Turn,
    WorkListener,
)
from . import turn
from .background import Background
from .rows import BACKLOG, SELECT_FULL, SELECT_LEAN, instance_row, json_ids
from .schema import (
    APPLICATION_ID,
    MIGRATIONS,
    OUR_TABLES,
    SCHEMA_VERSION,
    connect,
    path_from_url,
    store_error,
)

__all__ = ["SqliteBackend"]

# one lock per database file per process: in-process writers queue here, not in SQLite
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


def _write_lock_for(path: str) -> threading.Lock:
    with _REGISTRY_LOCK:
        lock = _WRITE_LOCKS.get(path)
        if lock is None:
            lock = _WRITE_LOCKS[path] = threading.Lock()
        return lock


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) == 5
    return "locked" in str(exc)  # pragma: no cover - Python 3.10


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # pragma: no cover - platform dependent
        return True
    return True


def _float_option(name: str, value: str, *, minimum: float) -> float:
    try:
        v = float(value)
    except ValueError:
        raise BackendNotAvailableError(f"store option {name}={value!r}: expected a number of seconds") from None
    if not v >= minimum or v != v or v == float("inf"):
        raise BackendNotAvailableError(f"store option {name}={value!r}: must be a finite number >= {minimum:g}")
    return v


class SqliteBackend(Backend):
    """The SQLite store (see the module docstring). Thread-safe: one connection per thread.

    ``clock`` (µs since the epoch) replaces the wall clock for leases and due times: the test
    harness uses it to skip time.
    """

    schemes = ("sqlite",)
    concurrency = "inline"
    options = {
        "lease_seconds": "how long a claim on work lasts without a heartbeat (default 30)",
        "busy_timeout": "seconds a write waits for another process's writer before "
                        "StoreBusyError (default 30)",
        "mode": "rw (default) or ro: open read-only, for inspecting a store you cannot write",
        "synchronous": "normal (default; a power cut may lose the last commits, never corrupt "
                       "the file) or full (fsync every commit)",
    }

    def __init__(
        self,
        path: str,
        *,
        lease_seconds: float = 30.0,
        busy_timeout: float = 30.0,
        read_only: bool = False,
        synchronous: str = "normal",
        migrate: bool = True,
        clock: Optional[Callable[[], int]] = None,
        catch_up_pages: int = 1000,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if synchronous not in ("normal", "full"):
            raise BackendNotAvailableError(f"store option synchronous={synchronous!r}: expected normal or full")
        self.path = os.path.abspath(path)
        self.url = "sqlite:///" + self.path
        self.lease_seconds = float(lease_seconds)
        self._lease_us = int(lease_seconds * 1_000_000)
        self.write_timeout = float(busy_timeout)
        self._synchronous = synchronous.upper()
        self._clock = clock or utc_now_us
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = _write_lock_for(self.path)
        self._hub = ChangeHub()
        # payload_flags of the instances this object has leased, read by the claim: a step
        # written under that lease deletes only payloads that exist (a finishing instance has
        # no failure to clear, most have no custom status) -- nobody else writes them meanwhile
        self._claimed_flags: dict[str, int] = {}
        self._last_commit = 0.0  # monotonic time of this object's last commit
        self._closed = False
        self.read_only = read_only
        self._bg = Background(self, catch_up_pages=catch_up_pages)
        try:
            self._open(migrate)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, str], *, migrate: bool = True,
                 create: bool = True) -> "SqliteBackend":
        path = path_from_url(url)
        if not create and not os.path.exists(path):
            raise StoreUnavailableError(
                f"{os.path.abspath(path)}: no such store (a worker, or 'durable-core migrate', "
                "creates it)")
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise BackendNotAvailableError(
                f"unknown SQLite store option(s) {', '.join(unknown)} in {url!r}; known: "
                + ", ".join(sorted(cls.options))
            )
        kw: dict[str, Any] = {}
        if "lease_seconds" in options:
            kw["lease_seconds"] = _float_option("lease_seconds", options["lease_seconds"],
                                                minimum=0.001)
        if "busy_timeout" in options:
            kw["busy_timeout"] = _float_option("busy_timeout", options["busy_timeout"], minimum=0)
        if "mode" in options:
            mode = options["mode"].strip().lower()
            if mode not in ("ro", "rw", "rwc"):
                raise BackendNotAvailableError(f"store option mode={options['mode']!r}: expected ro or rw")
            kw["read_only"] = mode == "ro"
        if "synchronous" in options:
            kw["synchronous"] = options["synchronous"].strip().lower()
        return cls(path, migrate=migrate, **kw)

    def __repr__(self) -> str:
        return f"SqliteBackend({self.path!r}{', read-only' if self.read_only else ''})"

    # -- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise StoreUnavailableError(f"{self.path}: the store is closed")
            c, ro = connect(self.path, read_only=self.read_only, busy_timeout=self.write_timeout)
            self.read_only = self.read_only or ro
            try:
                # never sleep in SQLite's busy handler: writes wait in _begin, reads in _read
                c.execute("PRAGMA busy_timeout=0")
                if not self.read_only:
                    c.execute("PRAGMA journal_mode=WAL")
                    c.execute(f"PRAGMA synchronous={self._synchronous}")
                    c.execute("PRAGMA journal_size_limit=67108864")
                    c.execute("PRAGMA wal_autocheckpoint=0")  # the background thread does it
                c.execute("PRAGMA temp_store=MEMORY")
                c.execute("PRAGMA cache_size=-16000")
            except sqlite3.Error as exc:
                c.close()
                raise store_error(self.path, exc) from None
            self._local.conn = c
            with self._conns_lock:
                self._conns.append(c)
        return c

    def _open(self, migrate: bool) -> None:
        # look before touching anything: another application's file is left exactly as it is
        c, ro = connect(self.path, read_only=self.read_only, busy_timeout=self.write_timeout)
        try:
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                r[0] for r in c.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
            }
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None
        finally:
            c.close()
        self.read_only = self.read_only or ro
        self.opened_schema_version = version
        foreign = tables - OUR_TABLES - {"instances_v2", "history_v2"}
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and foreign):
            raise StoreIncompatibleError(
                f"{self.path}: this SQLite file belongs to another application "
                f"(application_id {app_id:#x}, tables {', '.join(sorted(tables)) or 'none'}); "
                "durable_core does not write into it -- give the store its own file"
            )
        if version > SCHEMA_VERSION:
            raise StoreIncompatibleError(
                f"{self.path}: store schema version {version} is newer than this durable_core "
                f"({SCHEMA_VERSION}); upgrade durable_core"
            )
        if version < SCHEMA_VERSION or app_id == 0:
            if self.read_only:
                if version < SCHEMA_VERSION:
                    raise StoreIncompatibleError(
                        f"{self.path}: store schema version {version} needs migrating to "
                        f"{SCHEMA_VERSION}, and the store is read-only here"
                    )
            elif not migrate:
                raise StoreIncompatibleError(
                    f"{self.path}: store schema version {version} is older than this "
                    f"durable_core ({SCHEMA_VERSION}); run: durable-core migrate --store "
                    f"{self.url}"
                )
            else:
                self.migrate()

    def migrate(self) -> tuple[int, int]:
        """Bring the schema up to date; returns (version before, version now)."""
        if self.read_only:
            raise StoreUnavailableError(f"{self.path}: cannot migrate a read-only store")
        c = self._conn()
        with self._write_lock:
            self._begin(c, False)
            try:
                version = c.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreIncompatibleError(
                        f"{self.path}: store schema version {version} is newer than this "
                        f"durable_core ({SCHEMA_VERSION}); upgrade durable_core"
                    )
                for v in range(version, SCHEMA_VERSION):
                    for stmt in MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            c.execute(stmt)
                    c.execute(f"PRAGMA user_version={v + 1}")
                c.execute(f"PRAGMA application_id={APPLICATION_ID}")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
        return version, SCHEMA_VERSION

    def now(self) -> int:
        return self._clock()

    @contextmanager
    def attempt(self) -> Iterator[None]:
        loc = self._local
        prev = getattr(loc, "nowait", False)
        loc.nowait = True
        try:
            yield
        finally:
            loc.nowait = prev

    def _begin(self, c: sqlite3.Connection, nowait: bool) -> None:
        """``BEGIN IMMEDIATE``, waiting for another process's writer in steps of 50 to 300 us.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... 100 ms between tries, so a
        writer that finds the lock taken by a worker in another process loses several ms even
        when the lock is free again within a fraction of one; an API process stalled like that
        spent 40% of its time asleep. ``nowait``: raise :class:`TryLater` at the first refusal
        instead of waiting. Past the busy timeout: :class:`StoreBusyError`.
        """
        deadline: Optional[float] = None
        delay = 0.00005
        while True:
            try:
                c.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise store_error(self.path, exc, writing=True) from None
                if nowait:
                    raise TryLater("another connection is writing") from None
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.write_timeout
                elif now >= deadline:
                    raise StoreBusyError(
                        f"{self.path}: another writer held the lock for longer than the busy "
                        f"timeout ({self.write_timeout:g} s); nothing was written"
                    ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.0003)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise StoreUnavailableError(
                f"{self.path}: the store is open read-only (mode=ro, or the file or its "
                "directory is not writable here); nothing was written"
            )
        c = self._conn()
        nowait = getattr(self._local, "nowait", False)
        if not self._write_lock.acquire(blocking=not nowait):
            raise TryLater("another thread of this process is writing")
        try:
            self._begin(c, nowait)
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            try:
                c.execute("COMMIT")
            except sqlite3.Error as exc:  # pragma: no cover - disk full, I/O error
                c.execute("ROLLBACK")
                raise store_error(self.path, exc, writing=True) from None
            self._last_commit = time.monotonic()
        finally:
            self._write_lock.release()
        self._bg.ensure_started()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One statement (one consistent snapshot), retried in short steps while SQLite says
        busy (a WAL reset or recovery by another connection: rare and brief)."""
        c = self._conn()
        deadline: Optional[float] = None
        delay = 0.00005
        while True:
            try:
                return c.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise store_error(self.path, exc) from None
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.write_timeout
                elif now >= deadline:
                    raise StoreBusyError(
                        f"{self.path}: the store stayed busy for longer than the busy timeout "
                        f"({self.write_timeout:g} s)") from None
            except sqlite3.DatabaseError as exc:
                raise store_error(self.path, exc) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.001)

    def close(self) -> None:
        self._closed = True
        self._bg.stop()
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:  # pragma: no cover - closing from another thread
                pass
        self._local = threading.local()

    # -- change notification -----------------------------------------------------------------
    def add_work_listener(self, cb: WorkListener) -> None:
        self._hub.add_work_listener(cb)
        self._bg.ensure_started()

    def remove_work_listener(self, cb: WorkListener) -> None:
        self._hub.remove_work_listener(cb)

    def add_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        self._hub.add_instance_watcher(instance_id, cb)
        self._bg.ensure_started()

    def remove_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        self._hub.remove_instance_watcher(instance_id, cb)

    def watcher_count(self, instance_id: Optional[str] = None) -> int:
        return self._hub.watcher_count(instance_id)

    # -- client side ---------------------------------------------------------------------------
    def create_instance(self, new: NewInstance) -> Optional[OrchestrationStatus]:
        with self._tx() as c:
            blocked = turn.create_in_tx(c, new)
        if blocked is None:
            self._hub.instances_changed((new.instance_id,))
            now = self._clock()
            self._hub.work_added(new.start.visible_at if new.start.visible_at > now else None)
        return blocked


    def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        out: list[bool] = []
        with self._tx() as c:
            for m in messages:
                cur = c.execute(
                    "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
                    "SELECT ?,?,?,?,? WHERE EXISTS (SELECT 1 FROM instances WHERE instance_id=?)",
                    (m.instance_id, m.execution_id, m.kind, m.visible_at, m.event, m.instance_id),
                )
                out.append(cur.rowcount == 1)
        if any(out):
            now = self._clock()
            due = [m.visible_at for m, ok in zip(messages, out) if ok]
            self._hub.work_added(None if min(due) <= now else min(due))
        return out

    def get_instance(self, instance_id: str, *, payloads: bool = True) -> Optional[InstanceRow]:
        rows = self._read((SELECT_FULL if payloads else SELECT_LEAN)
                          + " WHERE i.instance_id=?", (instance_id,))
        return instance_row(rows[0]) if rows else None

    def get_instances(self, instance_ids: Sequence[str]) -> dict[str, InstanceRow]:
        rows = self._read(SELECT_FULL + " WHERE i.instance_id IN "
                          "(SELECT value FROM json_each(?))", (json_ids(instance_ids),))
        return {r[0]: instance_row(r) for r in rows}

    @staticmethod
    def _where(flt: InstanceFilter) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if flt.created_from is not None:
            where.append("i.created_at >= ?")
            args.append(flt.created_from)
        if flt.created_to is not None:
            where.append("i.created_at <= ?")
            args.append(flt.created_to)
        if flt.statuses is not None:
            where.append("i.status IN (SELECT value FROM json_each(?))")
            args.append(json_ids([int(s) for s in flt.statuses]))
        if flt.instance_id_prefix:
            where.append("substr(i.instance_id, 1, ?) = ?")
            args.extend([len(flt.instance_id_prefix), flt.instance_id_prefix])
        if flt.name is not None:
            where.append("i.name = ?")
            args.append(flt.name)
        if flt.parent_instance_id is not None:
            where.append("i.parent_instance_id = ?")
            args.append(flt.parent_instance_id)
        return where, args

    def query(
        self,
        flt: InstanceFilter,
        *,
        page_size: int,
        continuation_token: Optional[str],
        payloads: bool = True,
    ) -> QueryPage:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        where, args = self._where(flt)
        if continuation_token:
            try:
                t_created, t_id = json.loads(continuation_token)
                t_created = int(t_created)
                t_id = str(t_id)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"malformed continuation token {continuation_token!r}") from exc
            where.append("(i.created_at > ? OR (i.created_at = ? AND i.instance_id > ?))")
            args.extend([t_created, t_created, t_id])
        sql = ((SELECT_FULL if payloads else SELECT_LEAN)
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY i.created_at, i.instance_id LIMIT ?")
        args.append(page_size + 1)
        rows = self._read(sql, args)
        token = None
        if len(rows) > page_size:
            rows = rows[:page_size]
            last = rows[-1]
            token = json.dumps([last[4], last[0]])
        return QueryPage([instance_row(r) for r in rows], token)

    def count(self, flt: InstanceFilter) -> dict[OrchestrationStatus, int]:
        where, args = self._where(flt)
        sql = ("SELECT i.status, count(*) FROM instances i"
               + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY i.status")
        return {OrchestrationStatus(st): n for st, n in self._read(sql, args)}

    def load_history(self, instance_id: str) -> Optional[StoredHistory]:
        # one statement, so the count and the chunks come from the same snapshot
        rows = self._read(
            "SELECT -1, NULL, history_length FROM instances WHERE instance_id=? "
            "UNION ALL SELECT seq, data, NULL FROM history WHERE instance_id=? ORDER BY 1",
            (instance_id, instance_id))
        if not rows or rows[0][0] != -1:
            return None
        return StoredHistory(rows[0][2], [r[0] for r in rows[1:]], [r[1] for r in rows[1:]])

    def delete_instances(
        self, instance_ids: Sequence[str], *, statuses: frozenset[OrchestrationStatus]
    ) -> list[str]:
        if not instance_ids:
            return []
        with self._tx() as c:
            ids = [r[0] for r in c.execute(
                "SELECT instance_id FROM instances WHERE instance_id IN "
                "(SELECT value FROM json_each(?)) AND status IN (SELECT value FROM json_each(?))",
                (json_ids(instance_ids), json_ids([int(s) for s in statuses])),
            )]
            if ids:
                arg = (json_ids(ids),)
                sub = "(SELECT value FROM json_each(?))"
                for table in ("history", "inbox", "activities", "payloads", "instances"):
                    c.execute(f"DELETE FROM {table} WHERE instance_id IN {sub}", arg)
        if ids:
            self._hub.instances_changed(ids)
        return ids

    # -- worker side ---------------------------------------------------------------------------
    def register_worker(self, owner: str) -> None:
        host = socket.gethostname()
        now = self._clock()
        with self._tx() as c:
            for other, pid, beat in c.execute(
                "SELECT owner, pid, heartbeat FROM workers WHERE host=?", (host,)
            ).fetchall():
                dead = (pid != os.getpid() and not _pid_alive(pid)) or (
                    beat + 3 * self._lease_us < now)
                if dead:
                    self._release(c, other)
                    c.execute("DELETE FROM workers WHERE owner=?", (other,))
            c.execute(
                "INSERT OR REPLACE INTO workers(owner, host, pid, started_at, heartbeat) "
                "VALUES (?,?,?,?,?)",
                (owner, host, os.getpid(), now, now),
            )

    @staticmethod
    def _release(c: sqlite3.Connection, owner: str) -> None:
        c.execute("UPDATE instances SET lock_owner=NULL, lock_expires=0 WHERE lock_owner=?",
                  (owner,))
        c.execute("UPDATE activities SET lock_owner=NULL, lock_expires=0 WHERE lock_owner=?",
                  (owner,))

    def unregister_worker(self, owner: str) -> None:
        with self._tx() as c:
            self._release(c, owner)
            c.execute("DELETE FROM workers WHERE owner=?", (owner,))
        self._hub.work_added(None)

    def release_activities(self, owner: str, activity_ids: Sequence[int]) -> None:
        if not activity_ids:
            return
        with self._tx() as c:
            c.execute(
                "UPDATE activities SET lock_owner=NULL, lock_expires=0 WHERE lock_owner=? AND "
                "id IN (SELECT value FROM json_each(?))",
                (owner, json_ids(activity_ids)),
            )
        self._hub.work_added(None)

    def heartbeat(self, owner: str, activity_ids: Sequence[int]) -> set[int]:
        # Instance leases are held only while a step runs (fetch to commit, one dispatcher
        # turn), far shorter than a lease: only activities in flight need renewing.
        now = self._clock()
        held: set[int] = set()
        with self._tx() as c:
            if activity_ids:
                held = {r[0] for r in c.execute(
                    "UPDATE activities SET lock_expires=? WHERE lock_owner=? AND id IN "
                    "(SELECT value FROM json_each(?)) RETURNING id",
                    (now + self._lease_us, owner, json_ids(activity_ids)),
                ).fetchall()}
            c.execute("UPDATE workers SET heartbeat=? WHERE owner=?", (now, owner))
        return held

    def run_turn(
        self,
        owner: str,
        *,
        steps: Sequence[StepWrite],
        outcomes: Sequence[ActivityOutcome],
        instance_limit: int,
        activity_limit: int,
    ) -> Turn:
        # One transaction for a whole dispatcher turn (group commit): the steps replayed since
        # the last turn, the activity outcomes gathered meanwhile, and the leases on the next
        # batch of instances and activities.
        refused: list[StepWrite] = []
        changed: list[str] = []
        work = False
        delayed: Optional[int] = None
        now = self._clock()
        with self._tx() as c:
            if steps:
                refused = turn.check_fences(c, owner, steps)
                if refused:
                    for s in refused:
                        self._claimed_flags.pop(s.instance_id, None)
                    bad = {id(s) for s in refused}
                    steps = [s for s in steps if id(s) not in bad]
                work, delayed = turn.write_steps(c, steps, now, self._claimed_flags)
                changed = [s.instance_id for s in steps]
            if outcomes:
                work = turn.write_outcomes(c, owner, outcomes) or work
            items = turn.claim_instances(c, owner, now, instance_limit, self._lease_us,
                                         self._claimed_flags) if instance_limit > 0 else []
            acts = (turn.claim_activities(c, owner, now, activity_limit, self._lease_us)
                    if activity_limit > 0 else [])
        hub = self._hub
        if changed:
            hub.instances_changed(changed)
        if work or delayed is not None:
            hub.work_added(delayed if not work else None)
        return Turn(refused, items, acts)

    def next_visible(self, horizon: int) -> list[int]:
        return [
            r[0]
            for r in self._read(
                "SELECT DISTINCT visible_at FROM inbox WHERE visible_at>? AND visible_at<=? "
                "ORDER BY visible_at LIMIT 10000",
                (self._clock(), horizon),
            )
        ]

    def backlog(self) -> Backlog:
        # a read (WAL: never waits for a writer, works on a read-only store too)
        n_inst, oldest, n_act = self._read(BACKLOG, (self._clock(),))[0]
        return Backlog(n_inst, n_act, oldest)
