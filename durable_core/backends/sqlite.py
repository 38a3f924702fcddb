"""The embedded store: one SQLite file (WAL) through the standard library's ``sqlite3``.

Tables (schema version in ``PRAGMA user_version``, upgraded by :data:`MIGRATIONS`):

- ``instances`` -- one row per orchestration instance: status, payloads, parentage, the number
  of history events, and the lease (``lock_owner``, ``lock_expires``, ``fence``).
- ``history`` -- appended chunks of codec bytes per instance; the first chunk is a complete
  encoded history (``history.encode``), later ones are records (``encode_records``), so the
  history is the concatenation of the chunks in ``seq`` order.
- ``inbox`` -- new events for instances, each one codec record, with ``visible_at`` (timers
  and delayed starts become visible when due) and the execution they belong to.
- ``activities`` -- the activity queue, leased like instances.
- ``workers`` -- live workers (host, pid, heartbeat), so a restarted worker can release the
  leases of a dead one on the same host at once instead of waiting for them to expire.

Every write is one ``BEGIN IMMEDIATE`` transaction; in one process, writers on the same file
take a process-wide lock first so they never spin in SQLite's busy handler.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

from .. import history as h
from ..errors import (
    DurableError,
    OrchestrationAlreadyExistsError,
    OrchestrationNotFoundError,
    StoreBusyError,
)
from ..status import TERMINAL_STATUSES, OrchestrationStatus
from .base import (
    ActivityResult,
    ActivityWorkItem,
    Backend,
    InstanceRow,
    Notifier,
    OrchestrationWorkItem,
    QueryPage,
    ReuseIdPolicy,
    StepCommit,
    WouldBlock,
    failure_from_json,
    failure_to_json,
)

__all__ = ["SqliteBackend", "path_from_url", "SCHEMA_VERSION", "MIGRATIONS"]

_PENDING = int(OrchestrationStatus.PENDING)
_RUNNING = int(OrchestrationStatus.RUNNING)
_TERMINATED = int(OrchestrationStatus.TERMINATED)
_TERMINAL = tuple(int(s) for s in TERMINAL_STATUSES)
_TERMINAL_SQL = "(" + ",".join(str(s) for s in sorted(_TERMINAL)) + ")"
_K_START = h.ExecutionStarted.EVENT_TYPE
_K_TERMINATE = h.ExecutionTerminated.EVENT_TYPE
_K_TIMER = h.TimerFired.EVENT_TYPE

#: schema migrations: MIGRATIONS[i] upgrades user_version i -> i + 1
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY,
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        status INTEGER NOT NULL,
        input BLOB,
        output BLOB,
        custom_status BLOB,
        failure TEXT,
        parent_instance_id TEXT,
        parent_task_id INTEGER NOT NULL DEFAULT -1,
        parent_execution_id TEXT,
        tags TEXT,
        created_at INTEGER NOT NULL,
        last_updated_at INTEGER NOT NULL,
        history_length INTEGER NOT NULL DEFAULT 0,
        lock_owner TEXT,
        lock_expires INTEGER NOT NULL DEFAULT 0,
        fence INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX instances_created ON instances(created_at, instance_id);
    CREATE INDEX instances_parent ON instances(parent_instance_id)
        WHERE parent_instance_id IS NOT NULL;
    CREATE TABLE history (
        instance_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (instance_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY,
        instance_id TEXT NOT NULL,
        execution_id TEXT,
        kind INTEGER NOT NULL,
        visible_at INTEGER NOT NULL,
        event BLOB NOT NULL
    );
    CREATE INDEX inbox_visible ON inbox(visible_at);
    CREATE TABLE activities (
        id INTEGER PRIMARY KEY,
        instance_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        task_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        input BLOB,
        lock_owner TEXT,
        lock_expires INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE workers (
        owner TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat INTEGER NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: default lease: a crashed worker's work is taken over after this long (or at once on its host)
DEFAULT_LEASE_US = 30_000_000

_INSTANCE_COLS = (
    "instance_id, execution_id, name, status, created_at, last_updated_at, input, output, "
    "custom_status, failure, parent_instance_id, parent_task_id, tags, history_length"
)
_INSTANCE_COLS_NOPAYLOAD = (
    "instance_id, execution_id, name, status, created_at, last_updated_at, NULL, NULL, "
    "NULL, failure, parent_instance_id, parent_task_id, tags, history_length"
)


def path_from_url(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``.

    In-memory databases are refused: the store must outlive the process and be shareable.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"SQLite URL must start with {prefix!r}: {url!r}")
    path = url[len(prefix):]
    if path.startswith("file:"):
        path = path[5:]
    if not path or path == ":memory:" or "mode=memory" in path:
        raise ValueError(
            "an in-memory SQLite store cannot be shared or survive a restart: give a file path, "
            "e.g. sqlite:///durable.db"
        )
    return path


def _row_to_instance(r: Sequence[Any]) -> InstanceRow:
    return InstanceRow(
        instance_id=r[0],
        execution_id=r[1],
        name=r[2],
        status=OrchestrationStatus(r[3]),
        created_at=r[4],
        last_updated_at=r[5],
        input=r[6],
        output=r[7],
        custom_status=r[8],
        failure=failure_from_json(r[9]),
        parent_instance_id=r[10],
        parent_task_id=r[11],
        tags=json.loads(r[12]) if r[12] else None,
        history_length=r[13],
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - platform dependent
        return True
    return True


# one lock per database file per process: in-process writers queue here, not in SQLite
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_NOTIFIERS: dict[str, Notifier] = {}
_REGISTRY_LOCK = threading.Lock()


def _shared_for(path: str) -> tuple[threading.Lock, Notifier]:
    with _REGISTRY_LOCK:
        lock = _WRITE_LOCKS.get(path)
        if lock is None:
            lock = _WRITE_LOCKS[path] = threading.Lock()
            _NOTIFIERS[path] = Notifier()
        return lock, _NOTIFIERS[path]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) == 5
    return "locked" in str(exc)  # pragma: no cover - Python 3.10


def _new_execution_id() -> str:
    return os.urandom(16).hex()


class SqliteBackend(Backend):
    """The SQLite store (see the module docstring). Thread-safe: one connection per thread."""

    def __init__(self, path: str, *, lease_us: int = DEFAULT_LEASE_US, busy_timeout_s: float = 30.0):
        self.path = os.path.abspath(path)
        self.url = "sqlite:///" + self.path
        self.lease_us = int(lease_us)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock, self.notifier = _shared_for(self.path)
        self._closed = False
        self._ckpt_thread: Optional[threading.Thread] = None
        self._ckpt_stop = threading.Event()
        self._migrate()

    # -- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise DurableError("the store is closed")
            c = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=128,
            )
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA temp_store=MEMORY")
            c.execute("PRAGMA cache_size=-16000")
            c.execute("PRAGMA journal_size_limit=67108864")
            if self._ckpt_thread is not None:
                c.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = c
            self._local.data_version = None
            with self._conns_lock:
                self._conns.append(c)
        return c

    @property
    def busy_timeout(self) -> float:
        return self._busy_timeout_s

    @contextmanager
    def nonblocking(self) -> Iterator[None]:
        loc = self._local
        prev = getattr(loc, "nowait", False)
        loc.nowait = True
        try:
            yield
        finally:
            loc.nowait = prev

    def _begin(self, c: sqlite3.Connection, nowait: bool = False) -> None:
        """``BEGIN IMMEDIATE``, waiting for another process's writer in steps of 50 to 300 us.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... 100 ms between tries, so a
        writer that finds the lock taken by a worker in another process loses several ms even
        when the lock is free again within a fraction of one; an API process stalled like that
        spent 40% of its time asleep. Other statements keep the connection's busy timeout.
        ``nowait``: raise :class:`WouldBlock` at the first refusal instead of waiting.
        Past the busy timeout: :class:`StoreBusyError`.
        """
        c.execute("PRAGMA busy_timeout=0")
        try:
            deadline: Optional[float] = None
            delay = 0.00005
            while True:
                try:
                    c.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                    if nowait:
                        raise WouldBlock("another connection is writing") from exc
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self._busy_timeout_s
                    elif now >= deadline:
                        raise StoreBusyError(
                            f"{self.path}: another writer held the lock for longer than the "
                            f"busy timeout ({self._busy_timeout_s:g} s)"
                        ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.0003)
        finally:
            c.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        c = self._conn()
        nowait = getattr(self._local, "nowait", False)
        if not self._write_lock.acquire(blocking=not nowait):
            raise WouldBlock("another thread of this process is writing")
        try:
            self._begin(c, nowait)
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            else:
                c.execute("COMMIT")
        finally:
            self._write_lock.release()

    def migrate(self) -> tuple[int, int]:
        """Bring the schema up to date; returns (version before, version now)."""
        return self._migrate()

    def _migrate(self) -> tuple[int, int]:
        c = self._conn()
        with self._write_lock:
            self._begin(c)
            try:
                version = c.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise DurableError(
                        f"{self.path}: store schema version {version} is newer than this "
                        f"durable_core ({SCHEMA_VERSION}); upgrade durable_core"
                    )
                for v in range(version, SCHEMA_VERSION):
                    for stmt in MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            c.execute(stmt)
                    c.execute(f"PRAGMA user_version={v + 1}")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
        return version, SCHEMA_VERSION

    # -- WAL checkpoints off the hot path -------------------------------------------------------
    def start_background_checkpoints(self, interval: float = 0.2, catch_up_pages: int = 1000) -> None:
        """Checkpoint the WAL from a background thread instead of inside commits.

        By default SQLite copies the WAL back into the database (and syncs it) inside whichever
        commit crosses 1000 pages, stalling that writer. A worker calls this: its connections
        stop auto-checkpointing and a thread checkpoints every ``interval`` seconds, with the
        GIL released, on the other core.

        A passive checkpoint never blocks anyone, but under a steady stream of commits it never
        finishes either (frames keep arriving while it copies), so SQLite never restarts the
        WAL and the file grows without bound -- hundreds of MB in seconds at full load, and a
        stall of hundreds of ms when a commit finally truncates it. So when a pass leaves the
        WAL at ``catch_up_pages`` or more, the thread holds writers off (this process's write
        lock, then SQLite's) for one more passive pass that copies only the frames committed
        meanwhile: about a millisecond, after which the next commit starts the WAL over.
        """
        if self._ckpt_thread is not None:
            return
        if interval <= 0 or catch_up_pages < 1:
            raise ValueError("interval must be > 0 and catch_up_pages >= 1")
        self._ckpt_stop.clear()
        t = threading.Thread(target=self._checkpointer, args=(interval, catch_up_pages),
                             daemon=True, name="durable_core checkpoints")
        self._ckpt_thread = t
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.execute("PRAGMA wal_autocheckpoint=0")
        t.start()

    def stop_background_checkpoints(self) -> None:
        """Stop the checkpoint thread (after a last checkpoint)."""
        t = self._ckpt_thread
        if t is None:
            return
        self._ckpt_stop.set()
        t.join()
        self._ckpt_thread = None
        c = getattr(self._local, "conn", None)
        if c is not None and not self._closed:
            c.execute("PRAGMA wal_autocheckpoint=1000")

    def _checkpointer(self, interval: float, catch_up_pages: int) -> None:
        def connect() -> sqlite3.Connection:
            return sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)

        c = connect()
        gate = connect()  # holds SQLite's write lock during a catch-up pass
        try:
            while not self._ckpt_stop.wait(interval):
                try:
                    _busy, wal_pages, _copied = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if wal_pages >= catch_up_pages:
                        self._catch_up(c, gate)
                except sqlite3.Error:  # pragma: no cover - e.g. the file went away
                    pass
            try:
                c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:  # pragma: no cover
                pass
        finally:
            c.close()
            gate.close()

    def _catch_up(self, c: sqlite3.Connection, gate: sqlite3.Connection) -> None:
        """One passive pass with no writer running, so it copies every frame and the next
        commit restarts the WAL. The lock order is the writers' own (process lock, then
        SQLite's), so the two cannot deadlock."""
        with self._write_lock:
            self._begin(gate)
            try:
                c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                gate.execute("ROLLBACK")

    def close(self) -> None:
        self.stop_background_checkpoints()
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:  # pragma: no cover - closing from another thread
                pass
        self._local = threading.local()

    # -- client side ---------------------------------------------------------------------------
    def _insert_start(
        self,
        c: sqlite3.Connection,
        instance_id: str,
        execution_id: str,
        name: str,
        input: Optional[bytes],
        *,
        visible_at: int,
        scheduled: Optional[int],
        tags: Optional[dict[str, str]],
        parent: Optional[tuple[str, int, Optional[str]]],
        now: int,
    ) -> None:
        ev = h.ExecutionStarted(
            -1,
            now,
            name,
            instance_id,
            input,
            None,
            parent[0] if parent else None,
            parent[1] if parent else -1,
            scheduled,
            tags,
            execution_id,
        )
        c.execute(
            "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
            "VALUES (?,?,?,?,?)",
            (instance_id, execution_id, _K_START, visible_at, h.encode_records([ev])),
        )

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
        parent: Optional[tuple[str, int, Optional[str]]] = None,
    ) -> None:
        visible_at = now if start_at is None or start_at < now else start_at
        tags_json = json.dumps(tags, separators=(",", ":")) if tags else None
        eid = _new_execution_id()
        with self._tx() as c:
            self._create_in_tx(
                c, instance_id, eid, name, input, visible_at, start_at, tags, tags_json,
                reuse_policy, parent, now,
            )
        self.notifier.work_added(visible_at if visible_at > now else None)

    def _create_in_tx(
        self,
        c: sqlite3.Connection,
        instance_id: str,
        eid: str,
        name: str,
        input: Optional[bytes],
        visible_at: int,
        start_at: Optional[int],
        tags: Optional[dict[str, str]],
        tags_json: Optional[str],
        reuse_policy: ReuseIdPolicy,
        parent: Optional[tuple[str, int, Optional[str]]],
        now: int,
    ) -> None:
        cur = c.execute(
            "INSERT INTO instances(instance_id, execution_id, name, status, input, "
            "parent_instance_id, parent_task_id, parent_execution_id, tags, created_at, "
            "last_updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (
                instance_id, eid, name, _PENDING, input,
                parent[0] if parent else None, parent[1] if parent else -1,
                parent[2] if parent else None, tags_json, now, now,
            ),
        )
        if cur.rowcount == 0:
            row = c.execute(
                "SELECT status FROM instances WHERE instance_id=?", (instance_id,)
            ).fetchone()
            status = row[0]
            if status not in _TERMINAL or reuse_policy is not ReuseIdPolicy.REPLACE_IF_TERMINAL:
                state = OrchestrationStatus(status).name
                raise OrchestrationAlreadyExistsError(
                    f"an orchestration instance with id {instance_id!r} already exists "
                    f"(status {state})"
                    + (
                        ""
                        if status not in _TERMINAL
                        else "; pass reuse_policy=ReuseIdPolicy.REPLACE_IF_TERMINAL to replace it"
                    )
                )
            self._reset_instance(c, instance_id)
            c.execute(
                "UPDATE instances SET execution_id=?, name=?, status=?, input=?, output=NULL, "
                "custom_status=NULL, failure=NULL, parent_instance_id=?, parent_task_id=?, "
                "parent_execution_id=?, tags=?, created_at=?, last_updated_at=?, "
                "history_length=0 WHERE instance_id=?",
                (
                    eid, name, _PENDING, input,
                    parent[0] if parent else None, parent[1] if parent else -1,
                    parent[2] if parent else None, tags_json, now, now, instance_id,
                ),
            )
        self._insert_start(
            c, instance_id, eid, name, input, visible_at=visible_at, scheduled=start_at,
            tags=tags, parent=parent, now=now,
        )

    @staticmethod
    def _reset_instance(c: sqlite3.Connection, instance_id: str) -> None:
        c.execute("DELETE FROM history WHERE instance_id=?", (instance_id,))
        c.execute("DELETE FROM inbox WHERE instance_id=?", (instance_id,))
        c.execute(
            "DELETE FROM activities WHERE instance_id=? AND lock_owner IS NULL", (instance_id,)
        )

    def get_instance(self, instance_id: str) -> Optional[InstanceRow]:
        r = (
            self._conn()
            .execute(f"SELECT {_INSTANCE_COLS} FROM instances WHERE instance_id=?", (instance_id,))
            .fetchone()
        )
        return None if r is None else _row_to_instance(r)

    def get_instances(self, instance_ids: Sequence[str]) -> dict[str, InstanceRow]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_INSTANCE_COLS} FROM instances WHERE instance_id IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(list(instance_ids)),),
            )
            .fetchall()
        )
        return {r[0]: _row_to_instance(r) for r in rows}

    def get_status(self, instance_id: str) -> Optional[int]:
        """Just the status (cheap polling for waiting clients)."""
        r = (
            self._conn()
            .execute("SELECT status FROM instances WHERE instance_id=?", (instance_id,))
            .fetchone()
        )
        return None if r is None else r[0]

    def _event_visible_at(self, c: sqlite3.Connection, instance_id: str, now: int) -> Optional[int]:
        """When an event for ``instance_id`` may be delivered (None: no such instance).

        Events for an instance whose delayed start is not due yet wait for the start."""
        r = c.execute(
            "SELECT status, history_length FROM instances WHERE instance_id=?", (instance_id,)
        ).fetchone()
        if r is None:
            return None
        if r[0] == _PENDING and r[1] == 0:
            s = c.execute(
                "SELECT min(visible_at) FROM inbox WHERE instance_id=? AND kind=?",
                (instance_id, _K_START),
            ).fetchone()
            if s is not None and s[0] is not None and s[0] > now:
                return s[0]
        return now

    def enqueue_event(self, instance_id: str, event: Any, *, now: int) -> None:
        data = h.encode_records([event])
        with self._tx() as c:
            vis = self._event_visible_at(c, instance_id, now)
            if vis is None:
                raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
            c.execute(
                "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
                "VALUES (?,NULL,?,?,?)",
                (instance_id, event.EVENT_TYPE, now if event.EVENT_TYPE == _K_TERMINATE else vis,
                 data),
            )
        self.notifier.work_added(None)

    def terminate(
        self, instance_id: str, reason: Optional[bytes], *, recursive: bool, now: int
    ) -> None:
        with self._tx() as c:
            r = c.execute(
                "SELECT status FROM instances WHERE instance_id=?", (instance_id,)
            ).fetchone()
            if r is None:
                raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
            todo = [instance_id]
            seen: set[str] = set()
            while todo:
                iid = todo.pop()
                if iid in seen:
                    continue
                seen.add(iid)
                st = c.execute(
                    "SELECT status FROM instances WHERE instance_id=?", (iid,)
                ).fetchone()
                if st is None or st[0] in _TERMINAL:
                    continue
                ev = h.ExecutionTerminated(-1, now, reason, recursive)
                c.execute(
                    "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
                    "VALUES (?,NULL,?,?,?)",
                    (iid, _K_TERMINATE, now, h.encode_records([ev])),
                )
                if recursive:
                    todo.extend(
                        x[0]
                        for x in c.execute(
                            "SELECT instance_id FROM instances WHERE parent_instance_id=? "
                            f"AND status NOT IN {_TERMINAL_SQL}",
                            (iid,),
                        )
                    )
        self.notifier.work_added(None)

    def restart(self, instance_id: str, new_instance_id: Optional[str], *, now: int) -> str:
        row = self.get_instance(instance_id)
        if row is None:
            raise OrchestrationNotFoundError(f"no orchestration instance {instance_id!r}")
        target = new_instance_id or instance_id
        policy = ReuseIdPolicy.ERROR if new_instance_id else ReuseIdPolicy.REPLACE_IF_TERMINAL
        self.create_instance(
            target, row.name, row.input, start_at=None, tags=row.tags, reuse_policy=policy,
            now=now,
        )
        return target

    def _purge_ids(self, c: sqlite3.Connection, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        arg = (json.dumps(list(ids)),)
        sub = "(SELECT value FROM json_each(?))"
        c.execute(f"DELETE FROM history WHERE instance_id IN {sub}", arg)
        c.execute(f"DELETE FROM inbox WHERE instance_id IN {sub}", arg)
        c.execute(f"DELETE FROM activities WHERE instance_id IN {sub}", arg)
        return c.execute(f"DELETE FROM instances WHERE instance_id IN {sub}", arg).rowcount

    def _with_children(self, c: sqlite3.Connection, roots: Sequence[str]) -> list[str]:
        out: list[str] = []
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            iid = todo.pop()
            if iid in seen:
                continue
            seen.add(iid)
            out.append(iid)
            todo.extend(
                x[0]
                for x in c.execute(
                    "SELECT instance_id FROM instances WHERE parent_instance_id=? "
                    f"AND status IN {_TERMINAL_SQL}",
                    (iid,),
                )
            )
        return out

    def purge(self, instance_id: str, *, recursive: bool) -> int:
        with self._tx() as c:
            r = c.execute(
                "SELECT status FROM instances WHERE instance_id=?", (instance_id,)
            ).fetchone()
            if r is None or r[0] not in _TERMINAL:
                return 0
            ids = self._with_children(c, [instance_id]) if recursive else [instance_id]
            return self._purge_ids(c, ids)

    @staticmethod
    def _filters(
        created_from: Optional[int],
        created_to: Optional[int],
        statuses: Optional[Sequence[OrchestrationStatus]],
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if created_from is not None:
            where.append("created_at >= ?")
            args.append(created_from)
        if created_to is not None:
            where.append("created_at <= ?")
            args.append(created_to)
        if statuses:
            where.append("status IN (SELECT value FROM json_each(?))")
            args.append(json.dumps([int(s) for s in statuses]))
        return where, args

    def purge_by(
        self,
        *,
        created_from: Optional[int],
        created_to: Optional[int],
        statuses: Optional[Sequence[OrchestrationStatus]],
    ) -> int:
        where, args = self._filters(created_from, created_to, statuses)
        where.append(f"status IN {_TERMINAL_SQL}")
        with self._tx() as c:
            ids = [
                r[0]
                for r in c.execute(
                    "SELECT instance_id FROM instances WHERE " + " AND ".join(where), args
                )
            ]
            return self._purge_ids(c, ids)

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
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        where, args = self._filters(created_from, created_to, statuses)
        if instance_id_prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            args.extend([len(instance_id_prefix), instance_id_prefix])
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if parent_instance_id is not None:
            where.append("parent_instance_id = ?")
            args.append(parent_instance_id)
        if continuation_token:
            try:
                t_created, t_id = json.loads(continuation_token)
                t_created = int(t_created)
                t_id = str(t_id)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"malformed continuation token {continuation_token!r}") from exc
            where.append("(created_at > ? OR (created_at = ? AND instance_id > ?))")
            args.extend([t_created, t_created, t_id])
        sql = (
            f"SELECT {_INSTANCE_COLS if fetch_payloads else _INSTANCE_COLS_NOPAYLOAD} "
            "FROM instances"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY created_at, instance_id LIMIT ?"
        )
        args.append(page_size + 1)
        rows = self._conn().execute(sql, args).fetchall()
        token = None
        if len(rows) > page_size:
            rows = rows[:page_size]
            last = rows[-1]
            token = json.dumps([last[4], last[0]])
        return QueryPage([_row_to_instance(r) for r in rows], token)

    def count_by_status(
        self,
        *,
        created_from: Optional[int],
        created_to: Optional[int],
        instance_id_prefix: Optional[str],
        name: Optional[str],
    ) -> dict[OrchestrationStatus, int]:
        where, args = self._filters(created_from, created_to, None)
        if instance_id_prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            args.extend([len(instance_id_prefix), instance_id_prefix])
        if name is not None:
            where.append("name = ?")
            args.append(name)
        sql = "SELECT status, count(*) FROM instances" + (
            " WHERE " + " AND ".join(where) if where else ""
        ) + " GROUP BY status"
        return {OrchestrationStatus(st): n for st, n in self._conn().execute(sql, args)}

    def get_history(self, instance_id: str) -> Optional[bytes]:
        c = self._conn()
        if c.execute("SELECT 1 FROM instances WHERE instance_id=?", (instance_id,)).fetchone() is None:
            return None
        return self.load_history(instance_id)

    # -- worker side ---------------------------------------------------------------------------
    def register_worker(self, owner: str, *, now: int) -> None:
        host = socket.gethostname()
        with self._tx() as c:
            dead = []
            for other, pid, beat in c.execute(
                "SELECT owner, pid, heartbeat FROM workers WHERE host=?", (host,)
            ).fetchall():
                if pid != os.getpid() and not _pid_alive(pid):
                    dead.append(other)
                elif beat + 3 * self.lease_us < now:
                    dead.append(other)
            for other in dead:
                self._release(c, other)
                c.execute("DELETE FROM workers WHERE owner=?", (other,))
            c.execute(
                "INSERT OR REPLACE INTO workers(owner, host, pid, started_at, heartbeat) "
                "VALUES (?,?,?,?,?)",
                (owner, host, os.getpid(), now, now),
            )

    @staticmethod
    def _release(c: sqlite3.Connection, owner: str) -> None:
        c.execute(
            "UPDATE instances SET lock_owner=NULL, lock_expires=0 WHERE lock_owner=?", (owner,)
        )
        c.execute(
            "UPDATE activities SET lock_owner=NULL, lock_expires=0 WHERE lock_owner=?", (owner,)
        )

    def unregister_worker(self, owner: str) -> None:
        with self._tx() as c:
            self._release(c, owner)
            c.execute("DELETE FROM workers WHERE owner=?", (owner,))

    def release_activities(self, owner: str, ids: Sequence[int]) -> None:
        """Give up leases on activities that will not finish here (graceful shutdown)."""
        if not ids:
            return
        with self._tx() as c:
            c.execute(
                "UPDATE activities SET lock_owner=NULL, lock_expires=0 WHERE lock_owner=? AND "
                "id IN (SELECT value FROM json_each(?))",
                (owner, json.dumps(list(ids))),
            )

    def renew_leases(self, owner: str, *, now: int, activity_ids: Sequence[int] = ()) -> None:
        # Instance leases are held only while a step runs (fetch to commit, one dispatcher
        # turn), far shorter than a lease: only activities in flight need renewing.
        exp = now + self.lease_us
        with self._tx() as c:
            if activity_ids:
                c.execute(
                    "UPDATE activities SET lock_expires=? WHERE lock_owner=? AND id IN "
                    "(SELECT value FROM json_each(?))",
                    (exp, owner, json.dumps(list(activity_ids))),
                )
            c.execute("UPDATE workers SET heartbeat=? WHERE owner=?", (now, owner))

    def fetch_orchestrations(
        self, owner: str, *, now: int, limit: int
    ) -> list[OrchestrationWorkItem]:
        with self._tx() as c:
            return self._fetch_orchestrations_in(c, owner, now, limit)

    def _fetch_orchestrations_in(
        self, c: sqlite3.Connection, owner: str, now: int, limit: int
    ) -> list[OrchestrationWorkItem]:
        exp = now + self.lease_us
        # Visible inbox rows, oldest first, driven by the visible_at index (timers due far
        # ahead cost nothing), of instances nobody holds; the first ``limit`` distinct
        # instances are leased with the rows read here. Rows past the scan window wait for
        # the next turn.
        per: dict[str, list[Any]] = {}
        for r in c.execute(
            "SELECT b.id, b.instance_id, b.execution_id, b.kind, b.event "
            "FROM inbox b INDEXED BY inbox_visible "
            "JOIN instances i ON i.instance_id=b.instance_id "
            "WHERE b.visible_at<=? AND i.lock_expires<? ORDER BY b.visible_at LIMIT ?",
            (now, now, max(limit * 4, 256)),
        ):
            lst = per.get(r[1])
            if lst is None:
                if len(per) >= limit:
                    continue
                lst = per[r[1]] = []
            lst.append(r)
        if not per:
            return []
        locked = c.execute(
            "UPDATE instances SET lock_owner=?, lock_expires=?, fence=fence+1 "
            "WHERE instance_id IN (SELECT value FROM json_each(?)) AND lock_expires<? "
            "RETURNING instance_id, execution_id, name, status, history_length, fence, "
            "parent_instance_id, parent_task_id, parent_execution_id",
            (owner, exp, json.dumps(list(per)), now),
        ).fetchall()
        items: list[OrchestrationWorkItem] = []
        release: list[str] = []
        for iid, eid, name, status, hlen, fence, p_iid, p_tid, p_eid in locked:
            evs = per[iid]
            if len(evs) > 1:
                evs.sort()  # arrival order
            inbox_ids = []
            chunks = []
            has_start = False
            has_term = False
            for rid, _, r_eid, kind, data in evs:
                inbox_ids.append(rid)
                if r_eid is not None and r_eid != eid:
                    continue  # a message for an earlier execution: consume, do not deliver
                if kind == _K_START:
                    has_start = True
                elif kind == _K_TERMINATE:
                    has_term = True
                chunks.append(data)
            if status in _TERMINAL or (status == _PENDING and not has_start):
                release.append(iid)
                self._settle_unstartable(
                    c, iid, status, hlen, inbox_ids, has_term, chunks, now
                )
                continue
            if not chunks:
                # only messages for an earlier execution: consume them, no step to run
                release.append(iid)
                c.execute(
                    "DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(inbox_ids),),
                )
                continue
            items.append(
                OrchestrationWorkItem(
                    iid, eid, name, OrchestrationStatus(status), hlen, fence, inbox_ids,
                    b"".join(chunks), p_iid, p_tid, p_eid,
                )
            )
        if release:
            c.execute(
                "UPDATE instances SET lock_owner=NULL, lock_expires=0 WHERE instance_id IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(release),),
            )
        return items

    def _settle_unstartable(
        self,
        c: sqlite3.Connection,
        iid: str,
        status: int,
        hlen: int,
        inbox_ids: list[int],
        has_term: bool,
        chunks: list[bytes],
        now: int,
    ) -> None:
        """Events for an instance that cannot run them now: finished, or not started yet."""
        if status in _TERMINAL:
            c.execute(
                "DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(inbox_ids),),
            )
            return
        if has_term:
            # terminated before its (delayed) start: it never runs
            reason = None
            for ev in h.decode_records(b"".join(chunks)):
                if isinstance(ev, h.ExecutionTerminated):
                    reason = ev.input
            c.execute("DELETE FROM inbox WHERE instance_id=?", (iid,))
            c.execute(
                "UPDATE instances SET status=?, output=?, last_updated_at=? WHERE instance_id=?",
                (_TERMINATED, reason, now, iid),
            )
            self.notifier.instances_changed((iid,))
            return
        start = c.execute(
            "SELECT min(visible_at) FROM inbox WHERE instance_id=? AND kind=?", (iid, _K_START)
        ).fetchone()[0]
        if start is None:
            # no start will ever come (should not happen): drop the events
            c.execute(
                "DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(inbox_ids),),
            )
        else:
            c.execute(
                "UPDATE inbox SET visible_at=? WHERE id IN (SELECT value FROM json_each(?))",
                (start, json.dumps(inbox_ids)),
            )

    def load_history(self, instance_id: str) -> bytes:
        rows = (
            self._conn()
            .execute("SELECT data FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))
            .fetchall()
        )
        if not rows:
            return b""
        if len(rows) == 1:
            return rows[0][0]
        return b"".join(r[0] for r in rows)

    def commit_steps(
        self, owner: str, steps: Sequence[StepCommit], *, now: int
    ) -> list[StepCommit]:
        if not steps:
            return []
        with self._tx() as c:
            refused, changed = self._commit_steps_in(c, owner, steps, now)
        self.notifier.instances_changed(changed)
        return refused

    def _commit_steps_in(
        self, c: sqlite3.Connection, owner: str, steps: Sequence[StepCommit], now: int
    ) -> tuple[list[StepCommit], list[str]]:
        refused = self._check_fences(c, owner, steps)
        if refused:
            bad = {id(s) for s in refused}
            steps = [s for s in steps if id(s) not in bad]
        self._write_steps(c, steps, now)
        return refused, [s.item.instance_id for s in steps]

    @staticmethod
    def _check_fences(
        c: sqlite3.Connection, owner: str, steps: Sequence[StepCommit]
    ) -> list[StepCommit]:
        held = {
            r[0]: (r[1], r[2])
            for r in c.execute(
                "SELECT instance_id, lock_owner, fence FROM instances WHERE instance_id IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps([s.item.instance_id for s in steps]),),
            )
        }
        return [s for s in steps if held.get(s.item.instance_id) != (owner, s.item.fence)]

    def _write_steps(self, c: sqlite3.Connection, steps: Sequence[StepCommit], now: int) -> None:
        upd = []
        hist = []
        consumed: list[int] = []
        acts = []
        inbox = []
        complex_steps = []
        for s in steps:
            it = s.item
            consumed.extend(it.inbox_ids)
            if s.drop_history:
                c.execute("DELETE FROM history WHERE instance_id=?", (it.instance_id,))
                new_len = s.history_added
                base = 0
            else:
                new_len = it.history_length + s.history_added
                base = it.history_length
            if s.history_chunk is not None and s.history_added:
                hist.append((it.instance_id, base, s.history_chunk))
            upd.append(
                (
                    int(s.status), s.custom_status, s.output, failure_to_json(s.failure), new_len,
                    now, it.instance_id,
                )
            )
            eid = it.execution_id
            for task_id, name, inp in s.activities:
                acts.append((it.instance_id, eid, task_id, name, inp))
            for timer_id, fire_at in s.timers:
                ev = h.TimerFired(-1, fire_at, fire_at, timer_id)
                inbox.append((it.instance_id, eid, _K_TIMER, fire_at, h.encode_records([ev])))
            if (
                s.sub_orchestrations
                or s.events
                or s.continue_as_new is not None
                or (it.parent_instance_id is not None and s.status in TERMINAL_STATUSES)
            ):
                complex_steps.append(s)
        c.executemany(
            "UPDATE instances SET status=?, custom_status=?, output=?, failure=?, "
            "history_length=?, last_updated_at=?, lock_owner=NULL, lock_expires=0 "
            "WHERE instance_id=?",
            upd,
        )
        if hist:
            c.executemany("INSERT INTO history(instance_id, seq, data) VALUES (?,?,?)", hist)
        if consumed:
            c.execute(
                "DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(consumed),),
            )
        if acts:
            c.executemany(
                "INSERT INTO activities(instance_id, execution_id, task_id, name, input) "
                "VALUES (?,?,?,?,?)",
                acts,
            )
        if inbox:
            c.executemany(
                "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
                "VALUES (?,?,?,?,?)",
                inbox,
            )
        for s in complex_steps:
            self._write_messages(c, s, now)

    def _write_messages(self, c: sqlite3.Connection, s: StepCommit, now: int) -> None:
        it = s.item
        ins = (
            "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
            "VALUES (?,?,?,?,?)"
        )
        for task_id, name, child_id, inp in s.sub_orchestrations:
            try:
                self._create_in_tx(
                    c, child_id, _new_execution_id(), name, inp, now, None, None, None,
                    ReuseIdPolicy.REPLACE_IF_TERMINAL, (it.instance_id, task_id, it.execution_id),
                    now,
                )
            except OrchestrationAlreadyExistsError as exc:
                from ..history import FailureDetails

                ev = h.SubOrchestrationInstanceFailed(
                    -1, now, task_id,
                    FailureDetails("OrchestrationAlreadyExistsError", str(exc), None, None, True),
                )
                c.execute(
                    ins,
                    (it.instance_id, it.execution_id, ev.EVENT_TYPE, now, h.encode_records([ev])),
                )
        for target, name, inp in s.events:
            vis = self._event_visible_at(c, target, now)
            if vis is None:
                continue  # no such instance: the event is dropped, as in the Durable Task SDK
            ev = h.EventRaised(-1, now, name, inp)
            c.execute(ins, (target, None, ev.EVENT_TYPE, vis, h.encode_records([ev])))
        if it.parent_instance_id is not None and s.status in TERMINAL_STATUSES:
            if s.status == OrchestrationStatus.COMPLETED:
                pev: Any = h.SubOrchestrationInstanceCompleted(-1, now, it.parent_task_id, s.output)
            else:
                from ..history import FailureDetails

                fd = s.failure
                if fd is None:
                    fd = FailureDetails(
                        "OrchestrationTerminatedError"
                        if s.status == OrchestrationStatus.TERMINATED
                        else "OrchestrationFailedError",
                        f"sub-orchestration {it.instance_id!r} ended with status "
                        f"{s.status.name}",
                    )
                pev = h.SubOrchestrationInstanceFailed(-1, now, it.parent_task_id, fd)
            c.execute(
                ins,
                (
                    it.parent_instance_id, it.parent_execution_id, pev.EVENT_TYPE, now,
                    h.encode_records([pev]),
                ),
            )
        if s.continue_as_new is not None:
            new_input, carry = s.continue_as_new
            eid = _new_execution_id()
            c.execute(
                "UPDATE instances SET execution_id=?, input=?, output=NULL, failure=NULL, "
                "history_length=0, status=? WHERE instance_id=?",
                (eid, new_input, _RUNNING, it.instance_id),
            )
            c.execute("DELETE FROM history WHERE instance_id=?", (it.instance_id,))
            parent = (
                (it.parent_instance_id, it.parent_task_id, it.parent_execution_id)
                if it.parent_instance_id is not None
                else None
            )
            self._insert_start(
                c, it.instance_id, eid, it.name, new_input, visible_at=now, scheduled=None,
                tags=None, parent=parent, now=now,
            )
            if carry:
                for ev in h.decode_records(carry):
                    c.execute(
                        ins,
                        (it.instance_id, None, ev.EVENT_TYPE, now, h.encode_records([ev])),
                    )

    def fetch_activities(self, owner: str, *, now: int, limit: int) -> list[ActivityWorkItem]:
        if limit <= 0:
            return []
        with self._tx() as c:
            return self._fetch_activities_in(c, owner, now, limit)

    def _fetch_activities_in(
        self, c: sqlite3.Connection, owner: str, now: int, limit: int
    ) -> list[ActivityWorkItem]:
        rows = c.execute(
            "UPDATE activities SET lock_owner=?, lock_expires=?, attempt=attempt+1 "
            "WHERE id IN (SELECT id FROM activities WHERE lock_expires<? ORDER BY id LIMIT ?) "
            "RETURNING id, instance_id, execution_id, task_id, name, input, attempt",
            (owner, now + self.lease_us, now, limit),
        ).fetchall()
        rows.sort()
        return [ActivityWorkItem(*r) for r in rows]

    def complete_activities(
        self, owner: str, results: Sequence[ActivityResult], *, now: int
    ) -> int:
        if not results:
            return 0
        with self._tx() as c:
            return self._complete_activities_in(c, owner, results, now)

    def _complete_activities_in(
        self, c: sqlite3.Connection, owner: str, results: Sequence[ActivityResult], now: int
    ) -> int:
        kept = {
            r[0]
            for r in c.execute(
                "DELETE FROM activities WHERE lock_owner=? AND id IN "
                "(SELECT value FROM json_each(?)) RETURNING id",
                (owner, json.dumps([r.item.id for r in results])),
            ).fetchall()
        }
        rows = []
        for r in results:
            it = r.item
            if it.id not in kept:
                continue
            if r.failure is None:
                ev: Any = h.TaskCompleted(-1, now, it.task_id, r.result)
            else:
                ev = h.TaskFailed(-1, now, it.task_id, r.failure)
            rows.append(
                (it.instance_id, it.execution_id, ev.EVENT_TYPE, now, h.encode_records([ev]))
            )
        if rows:
            c.executemany(
                "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
                "VALUES (?,?,?,?,?)",
                rows,
            )
        return len(rows)

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
        # One transaction for a whole dispatcher turn (group commit): the steps replayed
        # since the last turn, the activity results gathered meanwhile, and the leases on
        # the next batch of instances and activities.
        refused: list[StepCommit] = []
        changed: list[str] = []
        with self._tx() as c:
            if steps:
                refused, changed = self._commit_steps_in(c, owner, steps, now)
            if completions:
                self._complete_activities_in(c, owner, completions, now)
            items = (
                self._fetch_orchestrations_in(c, owner, now, orchestration_limit)
                if orchestration_limit > 0
                else []
            )
            acts = (
                self._fetch_activities_in(c, owner, now, activity_limit)
                if activity_limit > 0
                else []
            )
        if changed:
            self.notifier.instances_changed(changed)
        return refused, items, acts

    def next_visible(self, *, now: int, horizon: int) -> list[int]:
        return [
            r[0]
            for r in self._conn().execute(
                "SELECT DISTINCT visible_at FROM inbox WHERE visible_at>? AND visible_at<=? "
                "ORDER BY visible_at LIMIT 10000",
                (now, horizon),
            )
        ]

    def changed_elsewhere(self) -> bool:
        c = self._conn()
        v = c.execute("PRAGMA data_version").fetchone()[0]
        old = self._local.data_version
        self._local.data_version = v
        return old is not None and v != old
