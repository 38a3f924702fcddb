"""The SQLite backend's background thread: WAL checkpoints and seeing other connections' commits.

One thread per open backend, started when it is first needed (the first write, or the first
listener or watcher) and stopped by ``close()``. It does two jobs on its own connections, with
the GIL released while SQLite works:

- **Checkpoints off the hot path.** By default SQLite copies the WAL back into the database
  (and syncs it) inside whichever commit crosses 1000 pages, stalling that writer. The
  backend's connections turn auto-checkpointing off and this thread checkpoints every
  ``CHECKPOINT_INTERVAL`` seconds. A passive checkpoint never blocks anyone, but under a steady
  stream of commits it never finishes either (frames keep arriving while it copies), so SQLite
  never restarts the WAL and the file grows without bound -- hundreds of MB in seconds at full
  load, and a stall of hundreds of ms when a commit finally truncates it. So when a pass leaves
  the WAL at ``catch_up_pages`` or more, the thread holds writers off (this process's write
  lock, then SQLite's) for one more passive pass that copies only the frames committed
  meanwhile: about a millisecond, after which the next commit starts the WAL over.
- **Change notification across connections.** ``PRAGMA data_version`` changes when another
  connection (another process, or another backend object in this one) commits. While anyone
  listens, the thread reads it every 1 ms after a change, backing off to ``POLL_MAX`` when
  nothing happens; on a change it wakes the work listeners, and reads the watched instances'
  (status, last update) in one statement to wake only the watchers whose instance changed.
  Commits made through this backend object notify at once, without waiting for the thread;
  while it commits, what the thread sees is mostly those same commits, so it passes changes
  on at most every ``BUSY_INTERVAL`` then (at once when the object is quiet).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .backend import SqliteBackend

__all__ = ["Background", "CHECKPOINT_INTERVAL", "POLL_MIN", "POLL_MAX", "BUSY_INTERVAL"]

CHECKPOINT_INTERVAL = 0.2
POLL_MIN = 0.001
POLL_MAX = 0.025
BUSY_INTERVAL = 0.02


class Background:
    """The thread described in the module docstring, for one :class:`SqliteBackend`."""

    def __init__(self, backend: "SqliteBackend", *, catch_up_pages: int = 1000) -> None:
        if catch_up_pages < 1:
            raise ValueError("catch_up_pages must be at least 1")
        self._b = backend
        self._catch_up_pages = catch_up_pages
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.checkpoints = True
        #: (status, last_updated_at) last seen per watched instance
        self._seen: dict[str, tuple[int, int]] = {}

    @property
    def running(self) -> bool:
        return self._thread is not None

    def ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            t = threading.Thread(target=self._run, daemon=True, name="durable_core sqlite")
            self._thread = t
            t.start()

    def poke(self) -> None:
        """Something changed here: look again soon (resets the poll back-off)."""
        self._poke.set()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()
        self._thread = None

    # -- the thread ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        b = self._b
        if b.read_only:
            from .schema import connect

            return connect(b.path, read_only=True, busy_timeout=b.write_timeout)[0]
        return sqlite3.connect(b.path, timeout=b.write_timeout, isolation_level=None,
                               check_same_thread=False)

    def _run(self) -> None:
        try:
            c = self._connect()
            gate = None if self._b.read_only else self._connect()
        except Exception:  # noqa: BLE001 - the store went away; nothing to watch
            return
        try:
            version = c.execute("PRAGMA data_version").fetchone()[0]
            poll = POLL_MIN
            pending = False
            last_notify = 0.0
            next_ckpt = time.monotonic() + CHECKPOINT_INTERVAL
            while not self._stop.is_set():
                hub = self._b._hub
                wait = poll if not hub.idle else CHECKPOINT_INTERVAL
                if self._poke.wait(min(wait, max(0.0, next_ckpt - time.monotonic()))):
                    self._poke.clear()
                    poll = POLL_MIN
                if self._stop.is_set():
                    break
                try:
                    if not hub.idle:
                        v = c.execute("PRAGMA data_version").fetchone()[0]
                        if v != version:
                            version = v
                            poll = POLL_MIN
                            pending = True
                        else:
                            poll = min(poll * 2, POLL_MAX)
                        # While this backend object commits itself, its own listeners hear of
                        # those commits directly, and the changes seen here are mostly its own:
                        # pass on what changed at most every BUSY_INTERVAL then, at once when
                        # this object is quiet (another process's change waits that long at most).
                        mono = time.monotonic()
                        if pending and (mono - self._b._last_commit >= POLL_MIN
                                        or mono - last_notify >= BUSY_INTERVAL):
                            pending = False
                            last_notify = mono
                            self._notify(c)
                    if gate is not None and self.checkpoints and time.monotonic() >= next_ckpt:
                        next_ckpt = time.monotonic() + CHECKPOINT_INTERVAL
                        self._checkpoint(c, gate)
                    elif time.monotonic() >= next_ckpt:
                        next_ckpt = time.monotonic() + CHECKPOINT_INTERVAL
                except sqlite3.Error:  # pragma: no cover - e.g. the file went away
                    time.sleep(0.05)
            if gate is not None and self.checkpoints:
                try:
                    c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # pragma: no cover
                    pass
        finally:
            c.close()
            if gate is not None:
                gate.close()

    def _notify(self, c: sqlite3.Connection) -> None:
        hub = self._b._hub
        if hub.has_work_listeners:
            hub.work_added(None)
        ids = hub.watched_ids()
        if not ids:
            self._seen.clear()
            return
        rows = c.execute(
            "SELECT instance_id, status, last_updated_at FROM instances WHERE instance_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        ).fetchall()
        seen = self._seen
        found = {r[0]: (r[1], r[2]) for r in rows}
        # an instance first seen now may have changed before its watcher's own read: wake it
        changed = [iid for iid in ids if iid not in seen or found.get(iid) != seen[iid]]
        self._seen = found
        if changed:
            hub.instances_changed(changed)

    def _checkpoint(self, c: sqlite3.Connection, gate: sqlite3.Connection) -> None:
        _busy, wal_pages, _copied = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if wal_pages >= self._catch_up_pages:
            self._catch_up(c, gate)

    def _catch_up(self, c: sqlite3.Connection, gate: sqlite3.Connection) -> None:
        """One passive pass with no writer running, so it copies every frame and the next
        commit restarts the WAL. The lock order is the writers' own (process lock, then
        SQLite's), so the two cannot deadlock."""
        b = self._b
        with b._write_lock:
            b._begin(gate, False)
            try:
                c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                gate.execute("ROLLBACK")
