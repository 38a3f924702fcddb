"""Change notification between processes: NOTIFY out, LISTEN in.

Every commit that adds work or changes instances is announced to this process's listeners at
once (through the :class:`~durable_core.backends.base.ChangeHub`) and to other processes with
``NOTIFY`` on the task hub's channel. A commit carrying ``NOTIFY`` takes a database-wide lock,
so announcements are coalesced: :class:`Outbox` gathers what commits changed and hands it to
at most one transaction per ``debounce`` interval (the announcement rides in that
transaction's own round trip); whatever is still waiting then is sent by the outbox's thread
on its own connection. A payload is JSON: ``o`` the sending backend object's token (it ignores
its own), ``w`` work is due now, ``t`` the earliest later due time, ``i`` changed instance ids
(``"*"`` when too many to list).

:class:`Listener` holds one connection in ``LISTEN`` and passes what it hears on to the hub.
When that connection drops it reconnects with back-off and then wakes every listener and
watcher once (what was sent meanwhile is lost; a spurious wake-up is harmless). Waiters keep
their own slow safety poll for anything lost otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, Optional

from ..base import ChangeHub

__all__ = ["Outbox", "Listener", "DEBOUNCE", "MAX_PAYLOAD"]

_log = logging.getLogger("durable_core.backends.postgres")

DEBOUNCE = 0.003
#: PostgreSQL refuses payloads of 8000 bytes or more
MAX_PAYLOAD = 7000


class _Pending:
    __slots__ = ("work", "later", "ids", "all")

    def __init__(self) -> None:
        self.work = False
        self.later: Optional[int] = None
        self.ids: set[str] = set()
        self.all = False

    def empty(self) -> bool:
        return not self.work and self.later is None and not self.ids and not self.all


class Outbox:
    """What commits changed, waiting to be announced (see the module docstring)."""

    def __init__(self, token: str, send: Callable[[str], None], debounce: float = DEBOUNCE):
        self.token = token
        self._send = send
        self.debounce = debounce
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._p = _Pending()
        self._last = 0.0
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        #: announcements sent (in a transaction, by the thread), for tests and benchmarks
        self.sent = [0, 0]

    def add(self, work: bool, later: Optional[int], ids: Iterable[str]) -> None:
        """Record a committed change (call after the commit)."""
        with self._lock:
            self._merge(work, later, ids)
            if not self._p.empty():
                self._ensure_thread()
                self._cv.notify()

    def _merge(self, work: bool, later: Optional[int], ids: Iterable[str]) -> None:
        p = self._p
        p.work = p.work or work
        if later is not None and (p.later is None or later < p.later):
            p.later = later
        if not p.all:
            p.ids.update(ids)
            if len(p.ids) > 400:
                p.all, p.ids = True, set()

    def take_for_commit(self, work: bool, later: Optional[int], ids: Iterable[str]) -> Optional[str]:
        """The payload a transaction about to commit should send, with its own change
        (``work``, ``later``, ``ids``) and whatever other commits left waiting; ``None``: none
        now -- then the caller records its change with :meth:`add` after the commit. If the
        transaction fails, :meth:`restore` puts the payload back."""
        if time.monotonic() - self._last < self.debounce:
            return None
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.debounce:
                return None
            self._merge(work, later, ids)
            p, self._p = self._p, _Pending()
            if p.empty():
                return None
            self._last = now
            self.sent[0] += 1
            return self._payload(p)

    def restore(self, payload: str) -> None:
        """A transaction that was to carry ``payload`` failed: put its contents back."""
        try:
            d = json.loads(payload)
        except ValueError:  # pragma: no cover
            return
        ids = d.get("i", [])
        with self._lock:
            if ids == "*":
                self._p.all = True
                ids = []
            self._merge(bool(d.get("w")), d.get("t"), ids)
            self._ensure_thread()
            self._cv.notify()

    def _payload(self, p: _Pending) -> str:
        d: dict[str, Any] = {"o": self.token}
        if p.work:
            d["w"] = 1
        if p.later is not None:
            d["t"] = p.later
        if p.all:
            d["i"] = "*"
        elif p.ids:
            d["i"] = sorted(p.ids)
        text = json.dumps(d, separators=(",", ":"))
        if len(text.encode()) > MAX_PAYLOAD:
            d["i"] = "*"
            text = json.dumps(d, separators=(",", ":"))
        return text

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="durable_core pg notify")
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._lock:
                while not self._closed and self._p.empty():
                    self._cv.wait()
                if self._closed:
                    return
                wait = self._last + self.debounce - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                p, self._p = self._p, _Pending()
                self._last = time.monotonic()
            payload = self._payload(p)
            try:
                self._send(payload)
                self.sent[1] += 1
                backoff = 0.05
            except Exception as exc:  # noqa: BLE001 - the server is away: try again later
                _log.debug("durable_core: NOTIFY failed (%s); retrying", exc)
                self.restore(payload)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def close(self) -> None:
        """Stop the thread (what is still waiting is not sent: the waiters' polls cover it)."""
        with self._lock:
            self._closed = True
            self._cv.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(2.0)


class Listener:
    """A thread holding a ``LISTEN`` connection (see the module docstring)."""

    def __init__(self, connect: Callable[[], Any], channel: str, hub: ChangeHub, token: str,
                 *, on_connect: Optional[Callable[[Any], None]] = None) -> None:
        self._connect = connect
        self._channel = channel
        self._hub = hub
        self._token = token
        self._on_connect = on_connect
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._conn: Any = None
        #: connections made (1 + reconnects), for tests
        self.connects = 0
        self.connected = threading.Event()

    def ensure_started(self) -> None:
        """Start listening (once; on the first listener or watcher)."""
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="durable_core pg listen")
                self._thread.start()

    def stop(self) -> None:
        """Stop listening and close the connection (waits briefly for the thread)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(2.0)

    def _run(self) -> None:
        backoff = 0.05
        first = True
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.execute(f'LISTEN "{self._channel}"')
                self._conn = conn
                self.connects += 1
                if self._on_connect is not None:
                    self._on_connect(conn)
                self.connected.set()
                if not first:  # anything sent while we were away is lost: look again
                    self._everything_changed()
                first = False
                backoff = 0.05
                while not self._stop.is_set():
                    for n in conn.notifies(timeout=0.25):
                        self._dispatch(n.payload)
            except Exception as exc:  # noqa: BLE001 - connection lost: reconnect
                self.connected.clear()
                if self._stop.is_set():
                    break
                _log.warning("durable_core: PostgreSQL LISTEN connection lost (%s); "
                             "reconnecting in %.2f s", " ".join(str(exc).split()), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._conn = None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass

    def _everything_changed(self) -> None:
        hub = self._hub
        hub.work_added(None)
        hub.instances_changed(hub.watched_ids())

    def _dispatch(self, payload: str) -> None:
        try:
            d = json.loads(payload)
        except ValueError:
            self._everything_changed()
            return
        if d.get("o") == self._token:
            return
        hub = self._hub
        if d.get("w"):
            hub.work_added(None)
        t = d.get("t")
        if t is not None:
            hub.work_added(int(t))
        ids = d.get("i")
        if ids == "*":
            hub.instances_changed(hub.watched_ids())
        elif ids:
            hub.instances_changed(ids)
