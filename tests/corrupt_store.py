"""Poison an SQLite store the way a bad disk, a bad deploy or a hostile writer would.

The tests that check how the HTTP layer, the CLI and the dashboard cope with corrupt data damage
the store only through these functions, written with ``sqlite3`` against the store's schema
(schema v2: ``payloads`` holds each instance's input, output, custom status, failure and tags
as ``(instance_id, kind, data)`` rows, flagged in ``instances.payload_flags``; ``history`` its
codec records in chunks ``(instance_id, seq, data)`` concatenated in ``seq`` order). When the
schema moves, this module is the one place to change.

Each function opens its own connection, commits, and closes it; the store may be open in other
connections (it is in WAL mode) -- readers see the damage on their next read.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, Path]

__all__ = [
    "db_path_of",
    "truncate_history",
    "empty_history_chunk",
    "flip_history_bytes",
    "set_raw_output",
    "set_raw_input",
    "set_raw_custom_status",
    "write_garbage_file",
]

#: bytes that JSON (the default data converter) cannot decode
UNDECODABLE = b"\xff\xfe not json \x00"


def db_path_of(url_or_path: PathLike) -> str:
    """``sqlite:///x.db`` / ``sqlite:////abs/x.db`` or a plain path -> the file's path."""
    s = str(url_or_path)
    if s.startswith("sqlite:///"):
        return s[len("sqlite:///"):]
    return s


def _connect(db: PathLike) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path_of(db), timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _chunks(conn: sqlite3.Connection, instance_id: str) -> list[tuple[int, bytes]]:
    rows = conn.execute(
        "SELECT seq, data FROM history WHERE instance_id=? ORDER BY seq", (instance_id,)
    ).fetchall()
    if not rows:
        raise LookupError(f"instance {instance_id!r} has no stored history")
    return [(int(seq), bytes(data)) for seq, data in rows]


def truncate_history(db: PathLike, instance_id: str, *, drop_bytes: Optional[int] = None) -> int:
    """Cut bytes off the end of the instance's history (a torn write); returns the new length.

    By default the last chunk loses half of its bytes (at least one), which lands inside a
    record and makes the history undecodable.
    """
    with closing(_connect(db)) as conn, conn:
        chunks = _chunks(conn, instance_id)
        seq, data = chunks[-1]
        n = drop_bytes if drop_bytes is not None else max(1, len(data) // 2)
        conn.execute(
            "UPDATE history SET data=? WHERE instance_id=? AND seq=?",
            (data[: max(0, len(data) - n)], instance_id, seq),
        )
        return sum(len(d) for _, d in chunks) - min(n, len(data))


def empty_history_chunk(db: PathLike, instance_id: str, *, index: int = 0) -> None:
    """Empty the ``index``-th history chunk: the store wrote events there, the chunk now holds
    none (corruption the store must notice, not a shorter history)."""
    with closing(_connect(db)) as conn, conn:
        seq, _ = _chunks(conn, instance_id)[index]
        conn.execute(
            "UPDATE history SET data=? WHERE instance_id=? AND seq=?", (b"", instance_id, seq)
        )


def flip_history_bytes(db: PathLike, instance_id: str, *, index: int = 0) -> None:
    """XOR every byte of the ``index``-th history chunk (bit rot in the middle of a history)."""
    with closing(_connect(db)) as conn, conn:
        seq, data = _chunks(conn, instance_id)[index]
        conn.execute(
            "UPDATE history SET data=? WHERE instance_id=? AND seq=?",
            (bytes(b ^ 0x5A for b in data), instance_id, seq),
        )


_KINDS = {"input": 0, "output": 1, "custom_status": 2}


def _set_column(db: PathLike, instance_id: str, column: str, data: Optional[bytes]) -> None:
    kind = _KINDS[column]
    with closing(_connect(db)) as conn, conn:
        if conn.execute("SELECT 1 FROM instances WHERE instance_id=?", (instance_id,)).fetchone() is None:
            raise LookupError(f"no instance {instance_id!r}")
        if data is None:
            conn.execute("DELETE FROM payloads WHERE instance_id=? AND kind=?", (instance_id, kind))
            conn.execute("UPDATE instances SET payload_flags = payload_flags & ~? WHERE "
                         "instance_id=?", (1 << kind, instance_id))
        else:
            conn.execute("INSERT INTO payloads(instance_id, kind, data) VALUES (?,?,?) "
                         "ON CONFLICT(instance_id, kind) DO UPDATE SET data=excluded.data",
                         (instance_id, kind, data))
            conn.execute("UPDATE instances SET payload_flags = payload_flags | ? WHERE "
                         "instance_id=?", (1 << kind, instance_id))


def set_raw_output(db: PathLike, instance_id: str, data: Optional[bytes] = UNDECODABLE) -> None:
    """Store ``data`` as the instance's serialized output (default: bytes JSON cannot read)."""
    _set_column(db, instance_id, "output", data)


def set_raw_input(db: PathLike, instance_id: str, data: Optional[bytes] = UNDECODABLE) -> None:
    """Store ``data`` as the instance's serialized input."""
    _set_column(db, instance_id, "input", data)


def set_raw_custom_status(
    db: PathLike, instance_id: str, data: Optional[bytes] = UNDECODABLE
) -> None:
    """Store ``data`` as the instance's serialized custom status."""
    _set_column(db, instance_id, "custom_status", data)


def write_garbage_file(path: PathLike, size: int = 4096) -> str:
    """A file that is not an SQLite database at all, where a store is expected."""
    p = Path(db_path_of(path))
    p.write_bytes(b"this is not a database\n" * (size // 23 + 1))
    return str(p)
