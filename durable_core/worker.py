"""The worker: runs orchestration steps and activities from a store.

One asyncio task (the dispatcher) loops: commit the activity results gathered since the last
turn, lease a batch of instances with new events, replay each (a sticky session from an LRU
cache when the instance is hot, a full replay of its stored history otherwise), commit all the
steps in one transaction (group commit), then lease as many queued activities as there are
free slots. Sync activities run on a thread pool, ``async def`` ones on the event loop.

Activities are **at-least-once**: a worker that dies after running an activity but before its
result is committed leaves the activity leased; when the lease is released (at once by a
worker restarted on the same host, else when it expires) the activity runs again. Write
activities so that running one twice is harmless.

An activity whose instance finished or was terminated while it ran is abandoned: the store
drops its row, the heartbeat tells the worker, an ``async def`` activity is cancelled, a sync
one runs to its end in the background without holding one of the worker's slots, and its
result is discarded. Activities of a finished instance are never started again.

Orchestrator and activity code is user code: whatever it raises (``SystemExit`` included)
fails that step or task, never the worker. Only a signal stops the worker.

Waking up: the store pushes changes -- a commit in this process wakes the dispatcher at once,
other processes' commits as soon as the backend sees them; delayed work (durable timers,
retry back-offs, delayed starts) comes due through the timer service, loaded ahead from the
store; a slow full turn every second makes up for a notification that was lost.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import queue
import signal
import threading
import time
import uuid
from typing import Any, Callable, Optional, Union

from .backends import DEFAULT_URL, Backend, open_backend
from .backends.base import ActivityOutcome, ClaimedActivity, StepWrite
from .converter import DataConverter, default_converter
from .errors import HistoryCorruptError
from .failure import failure_details_of
from .history import FailureDetails, OrchestratorStarted, utc_now_us
from .status import TERMINAL_STATUSES, OrchestrationStatus
from .store import Store, WorkItem
from .versioning import VersionFailure, VersioningOptions, VersionMatch

__all__ = ["Worker"]

log = logging.getLogger("durable_core.worker")



class _ActivityPool:
    """Threads for sync activities: a queue and up to ``size`` threads started on demand.

    Leaner than ``ThreadPoolExecutor`` for this use (no future per job: results go back to
    the dispatcher through the worker's completion queue).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._extra = 0  # threads allowed beyond ``size`` while abandoned jobs occupy them
        self._q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def abandoned(self) -> None:
        """A running job no longer counts against ``size`` (up to ``size`` such jobs)."""
        with self._lock:
            self._extra = min(self._extra + 1, self._size)

    def abandoned_done(self) -> None:
        with self._lock:
            self._extra = max(0, self._extra - 1)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            raise RuntimeError("activity pool is shut down")
        self._q.put((fn, args))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that thread is taken by this job
                return
            if len(self._threads) >= self._size + self._extra:
                return  # all busy: the job waits for the first free thread
            t = threading.Thread(target=self._run, name="durable-activity", daemon=True)
            self._threads.append(t)
        t.start()

    def _run(self) -> None:
        q = self._q
        while True:
            item = q.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # pragma: no cover - jobs catch their own errors
                log.exception("durable_core worker: activity job failed")
            with self._lock:
                if not q.empty():
                    continue  # more queued: take it without counting as idle
                self._idle += 1

    def shutdown(self) -> None:
        """Let running jobs finish in the background; threads exit when the queue drains."""
        self._closed = True
        for _ in self._threads:
            self._q.put(None)


def _log_fields(it: WorkItem) -> dict[str, Any]:
    """The structured fields (``extra``) of the worker's log records about an instance."""
    return {"instance_id": it.instance_id, "orchestration_name": it.name,
            "execution_id": it.execution_id}


def _activity_log_fields(item: ClaimedActivity) -> dict[str, Any]:
    """The structured fields of the worker's log records about an activity."""
    return {"instance_id": item.instance_id, "activity_name": item.name,
            "task_id": item.task_id, "execution_id": item.execution_id}


def _make_timer_service() -> Any:
    from .timer import TimerService

    return TimerService()


class Worker:
    """Runs the orchestrators and activities of ``registry`` against the store at ``store``.

    ``store`` is a URL (``sqlite:///durable.db``) or an open :class:`Backend`.
    ``max_concurrent_activities`` bounds activities in flight (and the thread pool size);
    ``max_concurrent_orchestrations`` bounds how many instances one dispatcher turn leases and
    replays (the group-commit batch). ``lease_seconds`` is how long a claim lasts without a
    heartbeat. Use :meth:`start` / :meth:`stop` on a running loop, :meth:`run` to serve until
    cancelled, or :meth:`run_sync` to block the calling thread (SIGINT/SIGTERM stop it cleanly).

    With ``opentelemetry-api`` installed the worker emits traces and metrics
    (:mod:`durable_core.telemetry`) through ``tracer_provider`` / ``meter_provider``, or the
    global providers when those are None; with no provider set it records nothing.
    """

    def __init__(
        self,
        store: Union[str, Backend] = DEFAULT_URL,
        *,
        registry: Any = None,
        converter: Optional[DataConverter] = None,
        max_concurrent_activities: int = 16,
        max_concurrent_orchestrations: int = 100,
        lease_seconds: Optional[float] = None,
        sticky_cache_size: int = 4096,
        lookahead_seconds: float = 30.0,
        safety_poll_seconds: float = 1.0,
        versioning: Optional[VersioningOptions] = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        if max_concurrent_activities < 1 or max_concurrent_orchestrations < 1:
            raise ValueError("concurrency limits must be at least 1")
        if isinstance(store, Backend):
            self.backend = store
            self._own_backend = False
        else:
            self.backend = open_backend(store, lease_seconds=lease_seconds)
            self._own_backend = True
        self.store = Store(self.backend)
        if registry is None:
            from .registry import default_registry

            registry = default_registry
        self.registry = registry
        self.converter = converter or default_converter()
        self.max_concurrent_activities = max_concurrent_activities
        self.max_concurrent_orchestrations = max_concurrent_orchestrations
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._sticky_size = sticky_cache_size
        self._sessions: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        self._lookahead_us = int(lookahead_seconds * 1_000_000)
        self._safety_poll = safety_poll_seconds
        self.versioning = versioning or VersioningOptions()
        self._executor: Any = None
        self._pool: Optional[_ActivityPool] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread = 0
        self._timers: Any = None
        self._timer_deadlines: set[int] = set()
        self._force_lookahead = False
        self._lookahead_due = False
        self._completions: collections.deque[ActivityOutcome] = collections.deque()
        self._pending: list[WorkItem] = []
        self._retry_commits: list[StepWrite] = []
        self._inflight: dict[int, ClaimedActivity] = {}
        self._abandoned: set[int] = set()
        self._async_tasks: dict[int, asyncio.Task[Any]] = {}
        self._wake_fut: Optional[asyncio.Future[None]] = None
        self._wake_pending = False
        self._main_task: Optional[asyncio.Task[None]] = None
        self._lease_task: Optional[asyncio.Task[None]] = None
        self._stopping = False
        self._started = False
        self._arity: dict[Any, int] = {}
        #: counters, for tests and benchmarks
        self.stats = {"steps": 0, "activities": 0, "commits": 0, "refused": 0, "abandoned": 0,
                      "rejected": 0}
        from .telemetry import worker_telemetry

        self._tel = worker_telemetry(self.owner, self.backend, tracer_provider=tracer_provider,
                                     meter_provider=meter_provider,
                                     cache_size=sticky_cache_size)
        #: per step in flight, when telemetry is on: id(StepWrite) -> its StepTrace
        self._traces: dict[int, Any] = {}
        self._tel_on = False

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start serving on the running event loop (returns at once)."""
        if self._started:
            raise RuntimeError("worker already started")
        from .engine import OrchestrationExecutor

        self._executor = OrchestrationExecutor(self.registry, self.converter)
        self.backend.register_worker(self.owner)
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._pool = _ActivityPool(self.max_concurrent_activities)
        self._timers = _make_timer_service()
        self._timers.start()
        self.backend.add_work_listener(self._on_work)
        self._main_task = self._loop.create_task(self._main(), name="durable_core dispatcher")
        self._lease_task = self._loop.create_task(self._heartbeat(), name="durable_core leases")

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking work, let activities in flight finish (up to ``grace`` seconds) and
        commit their results, then release every lease still held."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        self.backend.remove_work_listener(self._on_work)
        self._wake()
        if self._main_task is not None:
            try:
                await self._main_task
            except Exception:  # pragma: no cover - logged by _main
                pass
        deadline = time.monotonic() + grace
        # commit the steps leased by the last turn and the results of activities in flight
        self._turn_logged()
        while self._live_inflight() and time.monotonic() < deadline:
            await self._wait_or_timeout(min(0.02, max(0.0, deadline - time.monotonic())))
            self._turn_logged()
        self._turn_logged()
        for t in list(self._async_tasks.values()):
            t.cancel()
        if self._lease_task is not None:
            self._lease_task.cancel()
            try:
                await self._lease_task
            except (asyncio.CancelledError, Exception):
                pass
        await self._timers.aclose()
        try:
            self.backend.unregister_worker(self.owner)
        except Exception:  # the store went away: the leases expire by themselves
            log.exception("durable_core worker: could not release its leases")
        if self._pool is not None:
            self._pool.shutdown()
        if self._tel is not None:
            self._tel.close()
        if self._own_backend:
            self.backend.close()

    def _live_inflight(self) -> int:
        # every abandoned id is also in flight until its outcome arrives (both are dropped
        # together), so the difference counts the live ones
        return len(self._inflight) - len(self._abandoned)

    def _turn_logged(self) -> None:
        try:
            self._turn()
        except Exception:
            log.exception("durable_core worker: commit during shutdown failed")

    async def run(self) -> None:
        """Serve until cancelled (then stop gracefully)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    def run_sync(self) -> None:
        """Serve in the calling thread until SIGINT or SIGTERM."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):  # before start: no unhandled window
                try:
                    loop.add_signal_handler(sig, stop.set)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                    pass
            await self.start()
            try:
                await stop.wait()
            finally:
                await self.stop()

        asyncio.run(main())

    # -- wake-ups --------------------------------------------------------------------------
    def _wake(self) -> None:
        """Wake the dispatcher (event loop thread only)."""
        self._wake_pending = False
        f = self._wake_fut
        if f is not None and not f.done():
            f.set_result(None)

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake()
        elif not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed
                pass

    def _on_work(self, visible_at: Optional[int]) -> None:
        """Store callback, from any thread: work may be ready (or due at ``visible_at``)."""
        loop = self._loop
        if loop is None or self._stopping:
            return
        if visible_at is not None:
            try:
                loop.call_soon_threadsafe(self._schedule_timer, visible_at)
            except RuntimeError:  # loop closed
                pass
            return
        if threading.get_ident() != self._loop_thread:
            # a commit this loop did not make (another process, a client thread): it may have
            # added work due later (a delayed start, a deferral), so read the due times again
            self._lookahead_due = True
        self._wake_threadsafe()

    def _schedule_timer(self, visible_at_us: int) -> None:
        """Wake up when work due at ``visible_at_us`` (on the store's clock) is due.

        The timer service runs on this machine's clock; the store's may differ (another
        server's clock, a test's clock): the deadline is moved by the difference."""
        ms = -(-visible_at_us // 1000)
        if ms in self._timer_deadlines or self._timers is None:
            return
        self._timer_deadlines.add(ms)
        skew_us = self.backend.now() - utc_now_us()
        self._timers.call_at(-(-(visible_at_us - skew_us) // 1000), self._timer_fired, ms)

    def _timer_fired(self, ms: int) -> None:
        self._timer_deadlines.discard(ms)
        self._wake()

    def poke(self) -> None:
        """Look for due work now, from any thread (e.g. after a test clock jumped ahead):
        timers are re-read from the store and the dispatcher runs a turn."""
        loop = self._loop
        if loop is None or self._stopping:
            return
        self._force_lookahead = True
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # loop closed
            pass

    # -- the dispatcher --------------------------------------------------------------------
    async def _main(self) -> None:
        last_lookahead = 0.0
        while not self._stopping:
            try:
                mono = time.monotonic()
                if self._lookahead_due and mono - last_lookahead > 0.01:
                    self._lookahead_due = False
                    last_lookahead = 0.0
                if self._force_lookahead or mono - last_lookahead > self._lookahead_us / 3_000_000:
                    if self._force_lookahead:  # the store's clock jumped: schedule afresh
                        self._force_lookahead = False
                        self._timer_deadlines.clear()
                    self._load_lookahead()
                    last_lookahead = mono
                did = self._turn()
            except Exception:
                log.exception("durable_core worker: dispatcher turn failed; retrying")
                did = False
                await asyncio.sleep(0.1)
            if did:
                await asyncio.sleep(0)
                continue
            # idle: the store, a timer or an activity wakes us; else a slow safety turn
            await self._wait_or_timeout(self._safety_poll)

    async def _wait_or_timeout(self, timeout: float) -> bool:
        if self._completions:
            return True
        loop = self._loop
        assert loop is not None
        fut = self._wake_fut = loop.create_future()
        woken = [True]

        def on_timeout() -> None:
            if not fut.done():
                woken[0] = False
                fut.set_result(None)

        th = loop.call_later(timeout, on_timeout)
        try:
            await fut
        finally:
            th.cancel()
            self._wake_fut = None
        return woken[0]

    def _load_lookahead(self) -> None:
        horizon = self.backend.now() + self._lookahead_us
        for t in self.backend.next_visible(horizon):
            self._schedule_timer(t)

    def _turn(self) -> bool:
        """One dispatcher turn; True if it did anything.

        Replays the instances leased by the previous turn, then one transaction commits those
        steps and the activity outcomes gathered meanwhile and leases the next instances and
        activities (group commit: one transaction per turn however many items it carries).
        """
        pending, self._pending = self._pending, []
        commits: list[StepWrite] = list(self._retry_commits)
        results: list[Any] = [None] * len(commits)
        self._retry_commits = []
        tel = self._tel
        self._tel_on = tel_on = tel is not None and tel.resolve()
        if pending:
            now = self.backend.now()
            check = self.versioning.match is not VersionMatch.NONE
            for it in pending:
                c = self._version_check(it, now) if check else None
                res = None
                if c is None:
                    c, res = self._step(it, now, tel_on)
                commits.append(c)
                results.append(res)
        comp = self._completions
        completions: list[ActivityOutcome] = []
        while comp:
            completions.append(comp.popleft())
        stopping = self._stopping
        for r in completions:
            self._inflight.pop(r.activity_id, None)
            self._abandoned.discard(r.activity_id)
        free = 0 if stopping else self.max_concurrent_activities - self._live_inflight()
        try:
            t = self.store.turn(
                self.owner,
                steps=commits,
                outcomes=completions,
                instance_limit=0 if stopping else self.max_concurrent_orchestrations,
                activity_limit=max(0, free),
            )
        except BaseException:
            # keep everything for the next turn (the leases keep it ours meanwhile)
            self._retry_commits = commits
            comp.extendleft(reversed(completions))
            raise
        self._retry_commits = t.settlements
        if self._traces:
            self._steps_committed(commits, t.refused)
        if tel_on:
            tel.claimed(t.work, t.activities)  # type: ignore[union-attr]
        if commits:
            self.stats["steps"] += len(commits)
            self.stats["commits"] += 1
        self.stats["activities"] += len(completions)
        if commits:
            refused_ids = {id(c) for c in t.refused} if t.refused else ()
            self.stats["refused"] += len(t.refused)
            horizon = self.backend.now() + self._lookahead_us
            sessions = self._sessions
            for c in commits:  # messages made to wait (rejected versions, early events)
                for _rid, vis in c.deferrals:
                    if vis <= horizon:
                        self._schedule_timer(vis)
            for c, res in zip(commits, results):
                if res is None:
                    continue
                key = (c.instance_id, res[1])
                if refused_ids and id(c) in refused_ids:
                    sessions.pop(key, None)
                    continue
                sess = res[0].session
                if sess is not None and c.new_execution_id is None and (
                        c.status not in TERMINAL_STATUSES):
                    sessions[key] = sess
                    if len(sessions) > self._sticky_size:
                        sessions.popitem(last=False)
                for m in c.messages:
                    if m.instance_id == c.instance_id and m.visible_at <= horizon:
                        self._schedule_timer(m.visible_at)
        self._pending = t.work
        for a in t.activities:
            self._dispatch_activity(a)
        return bool(commits or completions or t.work or t.activities or t.settlements)

    # -- orchestration steps ---------------------------------------------------------------
    def _worker_version(self, name: str) -> Optional[str]:
        v = self.registry.orchestrator_version(name)
        return v if v is not None else self.versioning.version

    def _version_check(self, it: WorkItem, now: int) -> Optional[StepWrite]:
        """None if this worker runs ``it``; else the write that leaves it for another worker
        or fails it (see :mod:`durable_core.versioning`)."""
        opts = self.versioning
        if opts.match is VersionMatch.NONE:
            return None
        mine = self._worker_version(it.name)
        theirs = it.claim.version
        if opts.accepts(theirs, mine):
            return None
        if opts.on_mismatch is VersionFailure.FAIL:
            fd = FailureDetails(
                "VersionMismatchError",
                f"orchestration {it.instance_id!r} has version {theirs!r}; this worker runs "
                f"{it.name!r} at version {mine!r} and accepts "
                f"{'only that version' if opts.match is VersionMatch.STRICT else 'it or older'}",
                None, None, True)
            return self.store.failed_write(it, fd)
        self.stats["rejected"] += 1
        log.info("orchestration %r (version %r) left for another worker: this one runs %r at "
                 "version %r", it.instance_id, theirs, it.name, mine, extra=_log_fields(it))
        later = now + int(opts.retry_after_seconds * 1_000_000)
        return StepWrite(it.instance_id, it.claim.fence, it.claim.status, touch=False,
                         deferrals=[(m, later) for m in it.consumed])

    def _step(self, it: WorkItem, now: int, traced: bool = False) -> tuple[StepWrite, Any]:
        """Replay ``it`` and run its new code: the step's write, and (the engine's result,
        the execution id) for the session cache (None when the step failed).

        ``traced`` (telemetry on): the step's trace waits in ``_traces`` for its commit.
        """
        claim = it.claim
        iid = claim.instance_id
        key = (iid, claim.execution_id)
        st = None
        try:
            new_events = [OrchestratorStarted(-1, now)]
            new_events.extend(it.new_events)
            sess = self._sessions.pop(key, None)
            sticky = sess is not None and sess.history_length == claim.history_length
            old = None if sticky else self.store.load_history(it)
            if traced:
                st = self._tel.begin_step(  # type: ignore[union-attr]
                    it, new_events, old, lambda: self.store.load_history(it))
            if sticky:
                res = sess.execute(new_events)
            else:
                res = self._executor.execute(iid, old, new_events)
            w = self.store.step_write(it, res, now=now,
                                      trace_context=st.traceparent if st is not None else None)
            if st is not None:
                self._tel.end_step(st, w, res, 0 if sticky else len(old or ()),  # type: ignore[union-attr]
                                   sticky, new_events)
                self._traces[id(w)] = st
            return w, (res, claim.execution_id)
        except HistoryCorruptError as exc:
            log.error("orchestration %r: corrupt history: %s", iid, exc,
                      extra=_log_fields(it))
            fd = FailureDetails(
                "HistoryCorruptError",
                f"the stored history of {iid!r} is corrupt (byte offset {exc.offset}"
                f"{', torn tail' if exc.torn_tail else ''}): {exc}",
                None,
                None,
                True,
            )
            w = self.store.failed_write(it, fd)
        except BaseException as exc:  # noqa: BLE001 - user code or an engine bug: fail the instance
            log.exception("orchestration %r: replay failed", iid, extra=_log_fields(it))
            w = self.store.failed_write(it, failure_details_of(exc))
        if st is not None:  # the step failed: its write fails the instance
            self._tel.end_step(st, w, None, 0, False, it.new_events)  # type: ignore[union-attr]
            self._traces[id(w)] = st
        return w, None

    def _steps_committed(self, commits: list[StepWrite], refused: list[StepWrite]) -> None:
        """After a turn's commit: end the spans and record the metrics of its steps."""
        tel = self._tel
        traces = self._traces
        no = {id(c) for c in refused} if refused else ()
        for c in commits:
            st = traces.pop(id(c), None)
            if st is None:
                continue
            if no and id(c) in no:
                tel.refused(st)  # type: ignore[union-attr]
            else:
                tel.committed(st, c)  # type: ignore[union-attr]

    # -- activities ------------------------------------------------------------------------
    def _dispatch_activity(self, item: ClaimedActivity) -> None:
        fn = self.registry.get_activity(item.name)
        if fn is None:
            fd = FailureDetails(
                "ActivityNotFoundError",
                f"no activity named {item.name!r} is registered with this worker "
                f"(known: {sorted(self.registry.activity_names())})",
                None,
                None,
                True,
            )
            self._completions.append(self.store.activity_outcome(item, None, fd))
            self._wake()
            return
        self._inflight[item.id] = item
        if inspect.iscoroutinefunction(fn):
            task = self._loop.create_task(self._run_async(fn, item))  # type: ignore[union-attr]
            self._async_tasks[item.id] = task
            task.add_done_callback(lambda _t, i=item.id: self._async_tasks.pop(i, None))
        else:
            self._pool.submit(self._run_sync, fn, item)  # type: ignore[union-attr]

    def _nargs(self, fn: Any) -> int:
        n = self._arity.get(fn)
        if n is None:
            try:
                params = [
                    p
                    for p in inspect.signature(fn).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
                var = any(
                    p.kind == p.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values()
                )
                n = 2 if var else min(len(params), 2)
            except (TypeError, ValueError):
                n = 2
            self._arity[fn] = n
        return n

    def _activity_ctx(self, item: ClaimedActivity) -> Any:
        from .context import ActivityContext

        return ActivityContext(item.instance_id, item.task_id, item.name)

    def _run_sync(self, fn: Any, item: ClaimedActivity) -> None:
        """Thread-pool job: run a sync activity and hand the outcome to the loop."""
        run = self._tel.activity(item) if self._tel_on else None  # type: ignore[union-attr]
        fd = None
        try:
            ctx = self._activity_ctx(item)
            n = self._nargs(fn)
            if n >= 2:
                out = fn(ctx, self.converter.deserialize(item.input))
            else:
                out = fn(ctx) if n == 1 else fn()
            r = self.store.activity_outcome(item, self.converter.serialize(out), None)
        except BaseException as exc:  # noqa: BLE001 - the failure goes to the orchestrator
            fd = failure_details_of(exc)
            r = self.store.activity_outcome(item, None, fd)
        if run is not None:
            run.end(fd, abandoned=item.id in self._abandoned)
        if item.id in self._abandoned and self._pool is not None:
            self._pool.abandoned_done()
        self._completions.append(r)
        self._wake_threadsafe()

    async def _run_async(self, fn: Any, item: ClaimedActivity) -> None:
        run = self._tel.activity(item) if self._tel_on else None  # type: ignore[union-attr]
        fd = None
        try:
            ctx = self._activity_ctx(item)
            n = self._nargs(fn)
            if n >= 2:
                out = await fn(ctx, self.converter.deserialize(item.input))
            else:
                out = await (fn(ctx) if n == 1 else fn())
            r = self.store.activity_outcome(item, self.converter.serialize(out), None)
        except asyncio.CancelledError:
            if run is not None:
                run.end(None, cancelled=True)
            if item.id in self._abandoned:
                return  # its instance finished: nobody waits for it
            raise
        except BaseException as exc:  # noqa: BLE001 - user code: SystemExit too fails the task
            fd = failure_details_of(exc)
            r = self.store.activity_outcome(item, None, fd)
        if run is not None:
            run.end(fd)
        self._completions.append(r)
        self._wake()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.backend.lease_seconds / 3))
            try:
                ids = list(self._inflight)
                held = self.backend.heartbeat(self.owner, ids)
            except Exception:  # pragma: no cover - store briefly unavailable
                log.exception("durable_core worker: lease renewal failed")
                continue
            for aid in ids:
                if aid not in held and aid in self._inflight and aid not in self._abandoned:
                    self._abandon(aid)

    def _abandon(self, activity_id: int) -> None:
        """The activity's row is gone (its instance finished) or another worker took it."""
        item = self._inflight.get(activity_id)
        self._abandoned.add(activity_id)
        self.stats["abandoned"] += 1
        task = self._async_tasks.get(activity_id)
        if task is not None:
            task.cancel()
            self._inflight.pop(activity_id, None)
            self._abandoned.discard(activity_id)
        elif self._pool is not None:
            self._pool.abandoned()
            log.warning(
                "durable_core worker: activity %r of %r is no longer wanted (its instance "
                "finished or another worker took it over); it runs to its end in the "
                "background and its result is discarded",
                item.name if item else activity_id, item.instance_id if item else "?",
                extra=_activity_log_fields(item) if item else None)
        self._wake()

    # -- inspection ------------------------------------------------------------------------
    @property
    def inflight_activities(self) -> int:
        """Activities running now (abandoned ones not counted)."""
        return self._live_inflight()

    @property
    def busy(self) -> bool:
        """True while the worker holds work it has not committed: claimed steps not yet
        written, activities running, or their outcomes not yet written. A test clock that
        skips ahead waits for ``not busy`` so it never jumps past work in flight."""
        return bool(self._pending or self._completions or self._live_inflight())
