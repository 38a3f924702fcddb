"""The PostgreSQL store: many workers on many machines, one database.

Persistence only (the contract is :mod:`durable_core.backends.base`; tables in :mod:`.schema`,
statements in :mod:`.sql`, the dispatcher turn in :mod:`.turn`, change notification in
:mod:`.notify`). Connections come from a ``psycopg_pool`` pool, each with the task hub's
schema as its ``search_path``; calls are synchronous and thread-safe, and an event loop hands
them to a thread (``concurrency = "thread"``).

Leases are judged by the server's clock; :meth:`PostgresBackend.now` is the local clock plus
the offset to the server's, measured when the backend opens and again whenever the LISTEN
connection (re)connects. A lost connection fails the call that was using it with
:class:`~durable_core.errors.StoreUnavailableError` (a read is tried once more on another
connection first); the pool replaces broken connections with back-off, so the next call -- a
worker's next turn -- carries on when the server is back.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar

from ...errors import BackendNotAvailableError, StoreUnavailableError
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
    Turn,
    WorkListener,
    failure_from_json,
)
from . import sql, turn
from .notify import DEBOUNCE, Listener, Outbox
from .schema import MIGRATIONS, SCHEMA_VERSION, connect_error, incompatible, parse_url

# an ImportError here becomes BackendNotAvailableError (with the pip command) in open_backend
import psycopg
import psycopg_pool

__all__ = ["PostgresBackend"]

_T = TypeVar("_T")
_MIGRATE_LOCK = 0x64636F72  # advisory lock key held while migrating ("dcor")
#: rolled back by the server, nothing written: a turn tries again
_ROLLED_BACK = (psycopg.errors.TransactionRollback, psycopg.errors.SerializationFailure,
                psycopg.errors.DeadlockDetected)


def _float_option(name: str, value: str, *, minimum: float) -> float:
    try:
        v = float(value)
    except ValueError:
        raise BackendNotAvailableError(
            f"store option {name}={value!r}: expected a number") from None
    if not v >= minimum or v == float("inf"):
        raise BackendNotAvailableError(
            f"store option {name}={value!r}: must be a finite number >= {minimum:g}")
    return v


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # pragma: no cover - platform dependent
        return True
    return True


def _tags(text: Optional[str]) -> Optional[dict[str, str]]:
    if text is None:
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def _row(r: Sequence[Any]) -> InstanceRow:
    return InstanceRow(
        instance_id=r[0], execution_id=r[1], name=r[2], status=OrchestrationStatus(r[3]),
        created_at=r[4], last_updated_at=r[5], parent_instance_id=r[6], parent_task_id=r[7],
        history_length=r[8], version=r[9], scheduled_start_at=r[10], input=r[11], output=r[12],
        custom_status=r[13], failure=failure_from_json(r[14]) if r[14] is not None else None,
        tags=_tags(r[15]),
    )


class PostgresBackend(Backend):
    """The PostgreSQL store (see the module docstring)."""

    schemes = ("postgresql", "postgres")
    concurrency = "thread"
    options = {
        "schema": "the task hub: the PostgreSQL schema holding this application's tables "
                  "(default durable_core); apps sharing a database use different ones",
        "lease_seconds": "how long a claim on work lasts without a heartbeat (default 30)",
        "pool_size": "most connections this process opens (default 10)",
        "pool_min": "connections kept open when idle (default 1)",
        "connect_timeout": "seconds to wait for the server when connecting (default 5)",
        "timeout": "seconds a call waits for a free pooled connection, or for the server to "
                   "come back, before StoreUnavailableError (default 10)",
        "notify_debounce": "seconds between this process's change announcements (NOTIFY); "
                           "changes in between are merged (default 0.003)",
        "sslmode": "passed to libpq (likewise sslrootcert, sslcert, sslkey, application_name, "
                   "target_session_attrs, passfile, channel_binding, gssencmode)",
    }

    def __init__(
        self,
        url: str,
        conn_kw: Mapping[str, Any],
        schema: str,
        *,
        lease_seconds: float = 30.0,
        pool_size: int = 10,
        pool_min: int = 1,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        notify_debounce: float = DEBOUNCE,
        migrate: bool = True,
        create: bool = True,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.url = url
        self.schema = schema
        self.lease_seconds = float(lease_seconds)
        self._lease_us = int(lease_seconds * 1_000_000)
        self.write_timeout = float(timeout)
        self._timeout = float(timeout)
        where = url.split("?", 1)[0]
        self._where = where
        kw = dict(conn_kw)
        kw.setdefault("application_name", "durable_core")
        kw.update(
            connect_timeout=max(1, int(round(connect_timeout))),
            options=f"-c search_path={schema}",
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
            tcp_user_timeout=int(max(connect_timeout, timeout) * 1000),
        )
        self._kw = kw
        self._hub = ChangeHub()
        self._token = os.urandom(6).hex()
        self._closed = False
        self._offset = 0
        self._pool: Any = None
        self._notify_conn: Any = None
        self._checking = threading.Lock()
        self._outbox = Outbox(self._token, self._send_notify, notify_debounce)
        self._listener = Listener(self._connect, schema, self._hub, self._token,
                                  on_connect=self._measure_clock)
        self._open(migrate, create)
        self._pool = psycopg_pool.ConnectionPool(
            "", kwargs=dict(kw, autocommit=True), min_size=min(pool_min, pool_size),
            max_size=pool_size, timeout=timeout, open=False, name=f"durable_core {schema}",
            reconnect_timeout=max(60.0, timeout))
        self._pool.open(wait=False)

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, str], *, migrate: bool = True,
                 create: bool = True) -> "PostgresBackend":
        from .schema import LIBPQ_OPTIONS

        unknown = sorted(set(options) - set(cls.options) - LIBPQ_OPTIONS)
        if unknown:
            raise BackendNotAvailableError(
                f"unknown PostgreSQL store option(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(set(cls.options) | LIBPQ_OPTIONS)))
        shown, kw, schema = parse_url(url, options)
        args: dict[str, Any] = {}
        for name, minimum in (("lease_seconds", 0.001), ("connect_timeout", 1),
                              ("timeout", 0.1), ("notify_debounce", 0)):
            if name in options:
                args[name] = _float_option(name, options[name], minimum=minimum)
        for name in ("pool_size", "pool_min"):
            if name in options:
                args[name] = int(_float_option(name, options[name], minimum=1 if name == "pool_size" else 0))
        if schema != "durable_core" or "schema" in options:
            shown = shown + ("&" if "?" in shown else "?") + f"schema={schema}"
        return cls(shown, kw, schema, migrate=migrate, create=create, **args)

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url!r})"

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        """A new connection of our own (autocommit), errors made readable."""
        try:
            return psycopg.connect(**self._kw, autocommit=True)
        except psycopg.Error as exc:
            raise connect_error(self._where, exc) from None

    def _measure_clock(self, conn: Any) -> None:
        t0 = utc_now_us()
        server = conn.execute(sql.NOW_US).fetchone()[0]
        t1 = utc_now_us()
        self._offset = server - (t0 + t1) // 2

    def _lost(self, exc: BaseException, write: bool) -> StoreUnavailableError:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        tail = ("; the write may or may not have been committed" if write
                else "; nothing was written")
        return StoreUnavailableError(f"{self._where}: the call to PostgreSQL failed "
                                     f"({msg}){tail}")

    def _call(self, fn: Callable[[Any], _T], *, write: bool) -> _T:
        """Run ``fn(conn)`` on a pooled connection; connection failures become
        StoreUnavailableError (a read is retried once on a fresh connection)."""
        if self._closed:
            raise StoreUnavailableError(f"{self._where}: the store is closed")
        tries = 1 if write else 2
        for attempt in range(tries):
            try:
                with self._pool.connection() as c:
                    return fn(c)
            except psycopg_pool.PoolTimeout as exc:
                raise StoreUnavailableError(
                    f"{self._where}: no connection to PostgreSQL within {self._timeout:g} s "
                    f"(the server is down or unreachable, or the pool of "
                    f"{self._pool.max_size} is exhausted: raise ?pool_size=)") from exc
            except _ROLLED_BACK:
                raise  # a deadlock or a lost lease: rolled back, nothing written (run_turn retries)
            except psycopg.OperationalError as exc:
                self._pool_check()
                if attempt + 1 >= tries:
                    raise self._lost(exc, write) from None
            except psycopg.errors.UndefinedTable as exc:
                raise StoreUnavailableError(
                    f"{self._where}: the task hub schema {self.schema!r} is gone ({exc})"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _pool_check(self) -> None:
        """A connection broke: have the pool test its idle ones (in the background)."""
        pool = self._pool
        if self._checking.locked():
            return  # one check at a time (an outage fails many calls at once)

        def check() -> None:
            with self._checking:
                try:
                    pool.check()
                except Exception:  # noqa: BLE001
                    pass

        threading.Thread(target=check, daemon=True, name="durable_core pg check").start()

    def _read(self, q: str, args: Any = None) -> list[Any]:
        return self._call(lambda c: c.execute(q, args).fetchall(), write=False)

    def _send_notify(self, payload: str) -> None:
        c = self._notify_conn
        if c is None or c.closed:
            c = self._notify_conn = self._connect()
        try:
            c.execute(sql.NOTIFY, (self.schema, payload))
        except Exception:
            self._notify_conn = None
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
            raise

    # -- lifecycle ---------------------------------------------------------------------------
    def _open(self, migrate: bool, create: bool) -> None:
        c = self._connect()
        try:
            self._measure_clock(c)
            version, tables = self._inspect(c)
            self.opened_schema_version = version
            if tables is None and not create:
                raise StoreUnavailableError(
                    f"{self._where}: no task hub schema {self.schema!r} in this database (a "
                    "worker, or 'durable-core migrate', creates it)")
            if version > SCHEMA_VERSION:
                raise incompatible(self._where, self.schema,
                                   f"schema version {version} is newer than this durable_core "
                                   f"({SCHEMA_VERSION}); upgrade durable_core")
            if version < SCHEMA_VERSION:
                if not migrate:
                    raise incompatible(
                        self._where, self.schema,
                        f"schema version {version} is older than this durable_core "
                        f"({SCHEMA_VERSION}); run: durable-core migrate --store {self.url}")
                self._migrate(c)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"{self._where}: {' '.join(str(exc).split())}") from None
        finally:
            c.close()

    def _inspect(self, c: Any) -> tuple[int, Optional[set[str]]]:
        """(schema version, tables in the schema; None when the schema does not exist)."""
        rows = c.execute(
            "SELECT n.nspname, c.relname FROM pg_namespace n LEFT JOIN pg_class c "
            "ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p') WHERE n.nspname = %s",
            (self.schema,)).fetchall()
        if not rows:
            return 0, None
        tables = {r[1] for r in rows if r[1] is not None}
        if "meta" not in tables:
            if tables:
                raise incompatible(
                    self._where, self.schema,
                    f"holds another application's tables ({', '.join(sorted(tables)[:5])}); "
                    "give the task hub its own schema (?schema=...)")
            return 0, tables
        meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("application") not in (None, "durable_core"):
            raise incompatible(self._where, self.schema,
                               f"belongs to {meta.get('application')!r}, not durable_core")
        return int(meta.get("schema_version", "0")), tables

    def _migrate(self, c: Any) -> tuple[int, int]:
        with c.transaction():
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            c.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            version, _tables = self._inspect(c)
            if version > SCHEMA_VERSION:
                raise incompatible(self._where, self.schema,
                                   f"schema version {version} is newer than this durable_core")
            for v in range(version, SCHEMA_VERSION):
                c.execute(MIGRATIONS[v])
                c.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', %s), "
                    "('application', 'durable_core') ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value", (str(v + 1),))
        return version, SCHEMA_VERSION

    def migrate(self) -> tuple[int, int]:
        """Bring the schema up to date; returns (version before, version now)."""
        c = self._connect()
        try:
            return self._migrate(c)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"{self._where}: {' '.join(str(exc).split())}") from None
        finally:
            c.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._outbox.close()
        self._listener.stop()
        if self._pool is not None:
            self._pool.close(timeout=2.0)
        c = self._notify_conn
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    def now(self) -> int:
        return utc_now_us() + self._offset

    # -- change notification -----------------------------------------------------------------
    def add_work_listener(self, cb: WorkListener) -> None:
        self._hub.add_work_listener(cb)
        self._listener.ensure_started()

    def remove_work_listener(self, cb: WorkListener) -> None:
        self._hub.remove_work_listener(cb)

    def add_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        self._hub.add_instance_watcher(instance_id, cb)
        self._listener.ensure_started()

    def remove_instance_watcher(self, instance_id: str, cb: InstanceWatcher) -> None:
        self._hub.remove_instance_watcher(instance_id, cb)

    def watcher_count(self, instance_id: Optional[str] = None) -> int:
        return self._hub.watcher_count(instance_id)

    def _notify_in_tx(self, conn: Any, box: list[Optional[str]], work: bool,
                      later: Optional[int], ids: Sequence[str]) -> None:
        """Inside a transaction: send the announcement now if one is due (NOTIFY rides in
        this transaction; ``box[0]`` records it), else leave it to the outbox after the
        commit."""
        payload = self._outbox.take_for_commit(work, later, ids)
        if payload is not None:
            conn.execute(sql.NOTIFY, (self.schema, payload))
        box[0] = payload

    @contextmanager
    def _restoring(self, box: list[Optional[str]]) -> Iterator[None]:
        """Around a transaction that may carry an announcement: if it fails (its commit
        included), the announcement goes back to the outbox."""
        try:
            yield
        except BaseException:
            if box[0] is not None:
                self._outbox.restore(box[0])
                box[0] = None
            raise

    def _announce(self, sent: Optional[str], work: bool, later: Optional[int],
                  ids: Sequence[str]) -> None:
        """After a commit: tell this process's listeners, and other processes (unless the
        commit carried the announcement already)."""
        hub = self._hub
        if ids:
            hub.instances_changed(ids)
        if work:
            hub.work_added(None)
        elif later is not None:
            hub.work_added(later)
        if sent is None and (work or later is not None or ids):
            self._outbox.add(work, later, ids)

    # -- client side ---------------------------------------------------------------------------
    def create_instance(self, new: NewInstance) -> Optional[OrchestrationStatus]:
        vis = new.start.visible_at
        now = self.now()
        work, later = vis <= now, (vis if vis > now else None)
        if new.on_conflict is not None:
            work = True

        def run(c: Any) -> tuple[Optional[int], Optional[str]]:
            payload = self._outbox.take_for_commit(work, later, [new.instance_id])
            try:
                if payload is None:
                    st = c.execute(sql.CREATE, turn.create_args(new)).fetchone()[0]
                else:
                    st = c.execute(sql.CREATE_NOTIFY,
                                   turn.create_args(new) + (self.schema, payload)).fetchone()[0]
            except BaseException:
                if payload is not None:
                    self._outbox.restore(payload)
                raise
            return st, payload

        try:
            st, sent = self._call(run, write=True)
        except psycopg.errors.UniqueViolation:  # created meanwhile by another client
            st, sent = self._call(run, write=True)
        if st is None:
            self._announce(sent, work, later, [new.instance_id])
            return None
        if new.on_conflict is not None:
            self._announce(sent, True, None, ())
        return OrchestrationStatus(st)

    def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        if not messages:
            return []
        now = self.now()
        due = min(m.visible_at for m in messages)
        work, later = due <= now, (due if due > now else None)

        def run(c: Any) -> tuple[list[bool], Optional[str]]:
            box: list[Optional[str]] = [None]
            with self._restoring(box), c.transaction():
                self._notify_in_tx(c, box, work, later, ())
                ok = [r[0] for r in c.execute(sql.ENQUEUE, turn.msg_arrays(messages))]
            return ok, box[0]

        ok, sent = self._call(run, write=True)
        if any(ok):
            self._announce(sent, work, later, ())
        return ok

    def get_instance(self, instance_id: str, *, payloads: bool = True) -> Optional[InstanceRow]:
        if "\x00" in instance_id:  # PostgreSQL text cannot hold one: no such instance
            return None
        rows = self._read((sql.SELECT_FULL if payloads else sql.SELECT_LEAN)
                          + " WHERE instance_id = %s", (instance_id,))
        return _row(rows[0]) if rows else None

    def get_instances(self, instance_ids: Sequence[str]) -> dict[str, InstanceRow]:
        instance_ids = [i for i in instance_ids if "\x00" not in i]
        if not instance_ids:
            return {}
        rows = self._read(sql.SELECT_FULL + " WHERE instance_id = ANY(%s::text[])",
                          (list(instance_ids),))
        return {r[0]: _row(r) for r in rows}

    @staticmethod
    def _where_sql(flt: InstanceFilter) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if flt.created_from is not None:
            where.append("created_at >= %s")
            args.append(flt.created_from)
        if flt.created_to is not None:
            where.append("created_at <= %s")
            args.append(flt.created_to)
        if flt.statuses is not None:
            where.append("status = ANY(%s::smallint[])")
            args.append([int(s) for s in flt.statuses])
        if flt.instance_id_prefix:
            where.append("starts_with(instance_id, %s)")
            args.append(flt.instance_id_prefix)
        if flt.name is not None:
            where.append("name = %s")
            args.append(flt.name)
        if flt.parent_instance_id is not None:
            where.append("parent_instance_id = %s")
            args.append(flt.parent_instance_id)
        return where, args

    def query(self, flt: InstanceFilter, *, page_size: int, continuation_token: Optional[str],
              payloads: bool = True) -> QueryPage:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        where, args = self._where_sql(flt)
        if continuation_token:
            try:
                t_created, t_id = json.loads(continuation_token)
                t_created = int(t_created)
                t_id = str(t_id)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"malformed continuation token {continuation_token!r}") from exc
            where.append("(created_at, instance_id) > (%s, %s)")
            args.extend([t_created, t_id])
        q = ((sql.SELECT_FULL if payloads else sql.SELECT_LEAN)
             + (" WHERE " + " AND ".join(where) if where else "")
             + " ORDER BY created_at, instance_id LIMIT %s")
        args.append(page_size + 1)
        rows = self._read(q, args)
        token = None
        if len(rows) > page_size:
            rows = rows[:page_size]
            token = json.dumps([rows[-1][4], rows[-1][0]])
        return QueryPage([_row(r) for r in rows], token)

    def count(self, flt: InstanceFilter) -> dict[OrchestrationStatus, int]:
        where, args = self._where_sql(flt)
        q = ("SELECT status, count(*) FROM instances"
             + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY status")
        return {OrchestrationStatus(st): n for st, n in self._read(q, args)}

    def load_history(self, instance_id: str) -> Optional[StoredHistory]:
        if "\x00" in instance_id:
            return None
        rows = self._read(sql.LOAD_HISTORY, (instance_id, instance_id))
        if not rows or rows[0][0] != -1:
            return None
        return StoredHistory(rows[0][2], [r[0] for r in rows[1:]], [r[1] for r in rows[1:]])

    def delete_instances(self, instance_ids: Sequence[str], *,
                         statuses: frozenset[OrchestrationStatus]) -> list[str]:
        instance_ids = [i for i in instance_ids if "\x00" not in i]
        if not instance_ids:
            return []

        def run(c: Any) -> tuple[list[str], Optional[str]]:
            box: list[Optional[str]] = [None]
            with self._restoring(box), c.transaction():
                ids = [r[0] for r in c.execute(sql.DELETE, (list(instance_ids),
                                                            [int(s) for s in statuses]))]
                if ids:
                    self._notify_in_tx(c, box, False, None, ids)
            return ids, box[0]

        ids, sent = self._call(run, write=True)
        if ids:
            self._announce(sent, False, None, ids)
        return ids

    # -- worker side ---------------------------------------------------------------------------
    def register_worker(self, owner: str) -> None:
        host = socket.gethostname()
        now = self.now()

        def run(c: Any) -> None:
            with c.transaction():
                dead = [
                    other for other, h, pid, beat in c.execute(
                        "SELECT owner, host, pid, heartbeat FROM workers FOR UPDATE")
                    if other != owner and (
                        (h == host and pid != os.getpid() and not _pid_alive(pid))
                        or beat + 3 * self._lease_us < now)
                ]
                if dead:
                    self._release(c, dead)
                    c.execute("DELETE FROM workers WHERE owner = ANY(%s::text[])", (dead,))
                c.execute(
                    "INSERT INTO workers (owner, host, pid, started_at, heartbeat) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (owner) DO UPDATE SET "
                    "host = excluded.host, pid = excluded.pid, heartbeat = excluded.heartbeat",
                    (owner, host, os.getpid(), now, now))

        self._call(run, write=True)

    @staticmethod
    def _release(c: Any, owners: list[str]) -> None:
        c.execute("UPDATE instances SET lock_owner = NULL, lock_expires = 0 "
                  "WHERE lock_owner = ANY(%s::text[])", (owners,))
        c.execute("UPDATE activities SET lock_owner = NULL, lock_expires = 0 "
                  "WHERE lock_owner = ANY(%s::text[])", (owners,))

    def unregister_worker(self, owner: str) -> None:
        def run(c: Any) -> None:
            with c.transaction():
                self._release(c, [owner])
                c.execute("DELETE FROM workers WHERE owner = %s", (owner,))

        self._call(run, write=True)
        self._announce(None, True, None, ())

    def release_activities(self, owner: str, activity_ids: Sequence[int]) -> None:
        if not activity_ids:
            return
        self._call(lambda c: c.execute(
            "UPDATE activities SET lock_owner = NULL, lock_expires = 0 "
            "WHERE lock_owner = %s AND id = ANY(%s::bigint[])", (owner, list(activity_ids))),
            write=True)
        self._announce(None, True, None, ())

    def heartbeat(self, owner: str, activity_ids: Sequence[int]) -> set[int]:
        rows = self._call(lambda c: c.execute(sql.HEARTBEAT, {
            "owner": owner, "lease": self._lease_us, "ids": list(activity_ids)}).fetchall(),
            write=True)
        return {r[0] for r in rows}

    def run_turn(self, owner: str, *, steps: Sequence[StepWrite],
                 outcomes: Sequence[ActivityOutcome], instance_limit: int,
                 activity_limit: int) -> Turn:
        for attempt in range(3):
            try:
                return self._call(
                    lambda c: self._turn(c, owner, steps, outcomes, instance_limit,
                                         activity_limit), write=True)
            except (*_ROLLED_BACK, psycopg.errors.UniqueViolation) as exc:
                # a deadlock, a lease lost mid-commit, a race for a new instance's id: nothing
                # was written; the next try sees the new state (and refuses a lost step)
                if attempt == 2:
                    raise StoreUnavailableError(
                        f"{self._where}: the turn could not commit "
                        f"({' '.join(str(exc).split())}); nothing was written, try again"
                    ) from None
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _turn(self, c: Any, owner: str, steps: Sequence[StepWrite],
              outcomes: Sequence[ActivityOutcome], ilimit: int, alimit: int) -> Turn:
        refused: list[StepWrite] = []
        work = bool(outcomes)
        delayed: Optional[int] = None
        changed: list[str] = []
        now = self.now()
        ci = ca = None
        box: list[Optional[str]] = [None]
        with self._restoring(box), c.pipeline():
            with c.transaction():
                if steps:
                    held = {r[0]: (r[1], r[2]) for r in c.execute(
                        sql.LOCK_STEPS, ([s.instance_id for s in steps],)).fetchall()}
                    ok = []
                    for s in steps:
                        (ok if held.get(s.instance_id) == (owner, s.fence) else refused).append(s)
                    if ok:
                        w, delayed = turn.write_steps(c, owner, ok, now)
                        work = work or w
                        changed = [s.instance_id for s in ok]
                if outcomes:
                    turn.write_outcomes(c, owner, outcomes)
                self._notify_in_tx(c, box, work, delayed, changed)
                if ilimit > 0:
                    ci = turn.claim_instances(c, self, owner, ilimit)
                if alimit > 0:
                    ca = turn.claim_activities(c, self, owner, alimit)
            items = turn.claimed_instances(ci) if ci is not None else []
            acts = turn.claimed_activities(ca) if ca is not None else []
        self._announce(box[0], work, delayed, changed)
        return Turn(refused, items, acts)

    def next_visible(self, horizon: int) -> list[int]:
        return [r[0] for r in self._read(sql.NEXT_VISIBLE, (horizon,))]

    def backlog(self) -> Backlog:
        """One statement on the server's clock (see :class:`~..base.Backlog`)."""
        r = self._read(sql.BACKLOG)[0]
        return Backlog(int(r[0]), int(r[1]), int(r[2]) if r[2] is not None else None)
