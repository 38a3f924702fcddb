"""The SQLite store's schema, its migrations, and opening a file with errors that name it.

Tables (schema version in ``PRAGMA user_version``, upgraded by :data:`MIGRATIONS`; the file is
marked as ours by ``PRAGMA application_id`` = :data:`APPLICATION_ID`):

- ``instances`` -- one short row per orchestration instance, clustered by id (``WITHOUT
  ROWID``): status, parentage, version, the number of history events, which payloads it has
  (``payload_flags``) and the lease (``lock_owner``, ``lock_expires``, ``fence``). No
  payloads: a 50 MB input would otherwise sit in the b-tree that every fetch and step walks
  (SQLite reads a whole overflowing cell to compare keys in a ``WITHOUT ROWID`` b-tree, and
  rewrites a whole row on every update).
- ``payloads`` -- input, output, custom status, failure and tags of each instance, written
  once per change, in a rowid table (big values never slow down lookups of other keys).
- ``history`` -- appended chunks of codec records per instance, ``seq`` = the index of the
  chunk's first event; the history is the concatenation of the chunks in ``seq`` order.
- ``inbox`` -- new events for instances, each one codec record, with ``visible_at`` (timers
  and delayed starts become visible when due) and the execution they belong to.
- ``activities`` -- the activity queue, leased like instances.
- ``workers`` -- live workers (host, pid, heartbeat), so a restarted worker can release the
  leases of a dead one on the same host at once instead of waiting for them to expire.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Optional

from ...errors import (
    BackendNotAvailableError,
    StoreError,
    StoreIncompatibleError,
    StoreUnavailableError,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "APPLICATION_ID",
    "OUR_TABLES",
    "PAYLOAD_INPUT",
    "PAYLOAD_OUTPUT",
    "PAYLOAD_CUSTOM_STATUS",
    "PAYLOAD_FAILURE",
    "PAYLOAD_TAGS",
    "path_from_url",
    "connect",
    "store_error",
]

#: ``PRAGMA application_id`` of a durable_core store ("dcor")
APPLICATION_ID = 0x64636F72

PAYLOAD_INPUT, PAYLOAD_OUTPUT, PAYLOAD_CUSTOM_STATUS, PAYLOAD_FAILURE, PAYLOAD_TAGS = range(5)

_V1 = """
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
"""

# v2: payloads out of the instance rows, rowid history, versions, delayed-start times, history
# chunks without the codec header (the store layer frames histories), activity trace context.
_V2 = f"""
CREATE TABLE instances_v2 (
    instance_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    status INTEGER NOT NULL,
    parent_instance_id TEXT,
    parent_task_id INTEGER NOT NULL DEFAULT -1,
    parent_execution_id TEXT,
    created_at INTEGER NOT NULL,
    last_updated_at INTEGER NOT NULL,
    scheduled_start_at INTEGER,
    history_length INTEGER NOT NULL DEFAULT 0,
    payload_flags INTEGER NOT NULL DEFAULT 0,
    lock_owner TEXT,
    lock_expires INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE payloads (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    data BLOB NOT NULL
);
INSERT INTO payloads(instance_id, kind, data)
    SELECT instance_id, {PAYLOAD_INPUT}, input FROM instances WHERE input IS NOT NULL;
INSERT INTO payloads(instance_id, kind, data)
    SELECT instance_id, {PAYLOAD_OUTPUT}, output FROM instances WHERE output IS NOT NULL;
INSERT INTO payloads(instance_id, kind, data)
    SELECT instance_id, {PAYLOAD_CUSTOM_STATUS}, custom_status FROM instances
    WHERE custom_status IS NOT NULL;
INSERT INTO payloads(instance_id, kind, data)
    SELECT instance_id, {PAYLOAD_FAILURE}, CAST(failure AS BLOB) FROM instances
    WHERE failure IS NOT NULL;
INSERT INTO payloads(instance_id, kind, data)
    SELECT instance_id, {PAYLOAD_TAGS}, CAST(tags AS BLOB) FROM instances WHERE tags IS NOT NULL;
INSERT INTO instances_v2(instance_id, execution_id, name, version, status, parent_instance_id,
        parent_task_id, parent_execution_id, created_at, last_updated_at, scheduled_start_at,
        history_length, payload_flags, lock_owner, lock_expires, fence)
    SELECT instance_id, execution_id, name, NULL, status, parent_instance_id, parent_task_id,
        parent_execution_id, created_at, last_updated_at,
        CASE WHEN status = 6 THEN (SELECT min(visible_at) FROM inbox b
                                   WHERE b.instance_id = instances.instance_id AND b.kind = 1)
        END,
        history_length,
        ((input IS NOT NULL) << {PAYLOAD_INPUT}) | ((output IS NOT NULL) << {PAYLOAD_OUTPUT})
        | ((custom_status IS NOT NULL) << {PAYLOAD_CUSTOM_STATUS})
        | ((failure IS NOT NULL) << {PAYLOAD_FAILURE}) | ((tags IS NOT NULL) << {PAYLOAD_TAGS}),
        lock_owner, lock_expires, fence
    FROM instances;
DROP TABLE instances;
ALTER TABLE instances_v2 RENAME TO instances;
CREATE INDEX instances_created ON instances(created_at, instance_id);
CREATE INDEX instances_parent ON instances(parent_instance_id)
    WHERE parent_instance_id IS NOT NULL;
CREATE UNIQUE INDEX payloads_key ON payloads(instance_id, kind);
CREATE TABLE history_v2 (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL
);
INSERT INTO history_v2(instance_id, seq, data)
    SELECT instance_id, seq,
        CASE WHEN seq = 0 AND substr(data, 1, 4) = X'44434801' THEN substr(data, 5) ELSE data END
    FROM history ORDER BY instance_id, seq;
DROP TABLE history;
ALTER TABLE history_v2 RENAME TO history;
CREATE UNIQUE INDEX history_key ON history(instance_id, seq);
ALTER TABLE activities ADD COLUMN trace_context TEXT;
CREATE INDEX activities_instance ON activities(instance_id);
"""

#: schema migrations: MIGRATIONS[i] upgrades user_version i -> i + 1
MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)
#: the tables a durable_core store has (any other table means another application's file)
OUR_TABLES = frozenset({"instances", "payloads", "history", "inbox", "activities", "workers"})


def path_from_url(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``.

    Query options must have been split off already (``durable_core.backends.split_options``).
    In-memory databases are refused: the store must outlive the process and be shareable.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise BackendNotAvailableError(
            f"an SQLite store URL starts with {prefix!r} (sqlite:///relative.db or "
            f"sqlite:////absolute/path.db): {url!r}")
    path = url[len(prefix):]
    if path.startswith("file:"):
        path = path[5:]
    if "?" in path:
        raise BackendNotAvailableError(f"{url!r}: options must be split off the URL first")
    if not path or path == ":memory:" or "mode=memory" in path:
        raise BackendNotAvailableError(
            "an in-memory SQLite store cannot be shared or survive a restart: give a file path, "
            "e.g. sqlite:///durable.db (tests can use a temporary directory)"
        )
    return path


def store_error(path: str, exc: BaseException, *, writing: bool = False) -> StoreError:
    """The durable_core error for an ``sqlite3`` failure to open or use the file at ``path``."""
    msg = str(exc)
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        return StoreUnavailableError(f"{path}: is a directory, not an SQLite store file")
    if not os.path.isdir(parent):
        return StoreUnavailableError(f"{path}: the directory {parent} does not exist")
    if "not a database" in msg or "malformed" in msg or "file is encrypted" in msg:
        return StoreIncompatibleError(
            f"{path}: not an SQLite database, or a damaged one ({msg}); point the store URL at "
            "a durable_core store or a new file"
        )
    if "readonly" in msg or "read-only" in msg or (writing and not os.access(parent, os.W_OK)):
        return StoreUnavailableError(
            f"{path}: the store is read-only here ({msg}); reads work with ?mode=ro, writes "
            "need write permission on the file and its directory"
        )
    if "unable to open" in msg:
        return StoreUnavailableError(f"{path}: cannot open the store ({msg})")
    return StoreUnavailableError(f"{path}: {msg}")


def _read_only_reason(path: str) -> Optional[str]:
    """Why ``path`` can only be read here (None: it can be written)."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "the file is not writable"
    if not os.access(parent, os.W_OK):
        return "its directory is not writable"
    return None


def connect(path: str, *, read_only: bool, busy_timeout: float) -> tuple[sqlite3.Connection, bool]:
    """A connection to ``path``, opened read-write unless ``read_only`` (or the file or its
    directory cannot be written: then read-only, and the second value says so)."""
    abspath = os.path.abspath(path)
    if os.path.isdir(abspath):
        raise StoreUnavailableError(f"{path}: is a directory, not an SQLite store file")
    parent = os.path.dirname(abspath)
    if not os.path.isdir(parent):
        raise StoreUnavailableError(
            f"{path}: the directory {parent} does not exist (create it, or point the store URL "
            "elsewhere)")
    if not read_only and _read_only_reason(abspath) is not None:
        read_only = True
    try:
        if read_only:
            if not os.path.exists(abspath):
                raise StoreUnavailableError(f"{path}: no such store (read-only: nothing created)")
            uri = "file:" + _quote(abspath) + "?mode=ro"
            try:
                c = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None,
                                    check_same_thread=False, cached_statements=128)
                c.execute("PRAGMA schema_version").fetchone()
            except sqlite3.OperationalError:
                # a WAL store in a directory we cannot write (no -shm to create): read the file
                # as it is, without change detection
                uri = "file:" + _quote(abspath) + "?mode=ro&immutable=1"
                c = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None,
                                    check_same_thread=False, cached_statements=128)
                c.execute("PRAGMA schema_version").fetchone()
        else:
            c = sqlite3.connect(abspath, timeout=busy_timeout, isolation_level=None,
                                check_same_thread=False, cached_statements=128)
            c.execute("PRAGMA schema_version").fetchone()  # fails now for a non-database
    except sqlite3.Error as exc:
        raise store_error(path, exc, writing=not read_only) from None
    return c, read_only


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
