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

Waking up: in one process, a commit by a client wakes the dispatcher at once (in-process
signal); delayed work (durable timers, retry back-offs, delayed starts) comes due through the
timer service, loaded ahead from the store; changes made by other processes are found by
polling with back-off (a short sleep that grows while idle, gated by the store's cheap
"changed elsewhere" check).
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

from . import history as h
from .backends import DEFAULT_URL, Backend, open_backend
from .backends.base import ActivityResult, ActivityWorkItem, OrchestrationWorkItem, StepCommit
from .converter import DataConverter, default_converter
from .errors import HistoryCorruptError, PayloadError
from .failure import failure_details_of
from .history import FailureDetails
from .status import TERMINAL_STATUSES, OrchestrationStatus

__all__ = ["Worker"]

log = logging.getLogger("durable_core.worker")

_RUNNING = OrchestrationStatus.RUNNING
_SUSPENDED = OrchestrationStatus.SUSPENDED
_FAILED = OrchestrationStatus.FAILED
_CAN = OrchestrationStatus.CONTINUED_AS_NEW


class _ActivityPool:
    """Threads for sync activities: a queue and up to ``size`` threads started on demand.

    Leaner than ``ThreadPoolExecutor`` for this use (no future per job: results go back to
    the dispatcher through the worker's completion queue).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            raise RuntimeError("activity pool is shut down")
        self._q.put((fn, args))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that thread is taken by this job
                return
            if len(self._threads) >= self._size:
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
        max_poll_interval: float = 0.05,
        lookahead_seconds: float = 30.0,
    ) -> None:
        if max_concurrent_activities < 1 or max_concurrent_orchestrations < 1:
            raise ValueError("concurrency limits must be at least 1")
        if isinstance(store, Backend):
            self.backend = store
            self._own_backend = False
        else:
            self.backend = open_backend(store, lease_seconds=lease_seconds)
            self._own_backend = True
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
        self._max_poll = max_poll_interval
        self._lookahead_us = int(lookahead_seconds * 1_000_000)
        self._executor: Any = None
        self._pool: Optional[_ActivityPool] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread = 0
        self._timers: Any = None
        self._timer_deadlines: set[int] = set()
        self._completions: collections.deque[ActivityResult] = collections.deque()
        self._pending: list[OrchestrationWorkItem] = []
        self._retry_commits: list[StepCommit] = []
        self._inflight: dict[int, ActivityWorkItem] = {}
        self._async_tasks: set[asyncio.Task[Any]] = set()
        self._wake_fut: Optional[asyncio.Future[None]] = None
        self._wake_pending = False
        self._main_task: Optional[asyncio.Task[None]] = None
        self._lease_task: Optional[asyncio.Task[None]] = None
        self._stopping = False
        self._started = False
        self._arity: dict[Any, int] = {}
        #: counters, for tests and benchmarks
        self.stats = {"steps": 0, "activities": 0, "commits": 0, "refused": 0}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start serving on the running event loop (returns at once)."""
        if self._started:
            raise RuntimeError("worker already started")
        from .engine import OrchestrationExecutor

        self._started = True
        self._executor = OrchestrationExecutor(self.registry, self.converter)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._pool = _ActivityPool(self.max_concurrent_activities)
        self._timers = _make_timer_service()
        self._timers.start()
        now = h.utc_now_us()
        self.backend.register_worker(self.owner, now=now)
        start_ckpt = getattr(self.backend, "start_background_checkpoints", None)
        if start_ckpt is not None:
            start_ckpt()
        self.backend.notifier.add_work_listener(self._on_work)
        self._main_task = self._loop.create_task(self._main(), name="durable_core dispatcher")
        self._lease_task = self._loop.create_task(self._heartbeat(), name="durable_core leases")

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking work, let activities in flight finish (up to ``grace`` seconds) and
        commit their results, then release every lease still held."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        self.backend.notifier.remove_work_listener(self._on_work)
        self._wake()
        if self._main_task is not None:
            try:
                await self._main_task
            except Exception:  # pragma: no cover - logged by _main
                pass
        deadline = time.monotonic() + grace
        # commit the steps leased by the last turn and the results of activities in flight
        self._turn_logged()
        while self._inflight and time.monotonic() < deadline:
            await self._wait_or_timeout(min(0.02, max(0.0, deadline - time.monotonic())))
            self._turn_logged()
        self._turn_logged()
        for t in list(self._async_tasks):
            t.cancel()
        if self._lease_task is not None:
            self._lease_task.cancel()
            try:
                await self._lease_task
            except (asyncio.CancelledError, Exception):
                pass
        await self._timers.aclose()
        self.backend.unregister_worker(self.owner)
        stop_ckpt = getattr(self.backend, "stop_background_checkpoints", None)
        if stop_ckpt is not None:
            stop_ckpt()
        if self._pool is not None:
            self._pool.shutdown()
        if self._own_backend:
            self.backend.close()

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

    def _on_work(self, visible_at: Optional[int]) -> None:
        """Notifier callback, from any thread: new work was committed in this process."""
        loop = self._loop
        if loop is None or self._stopping:
            return
        if visible_at is not None:
            try:
                loop.call_soon_threadsafe(self._schedule_timer, visible_at)
            except RuntimeError:  # loop closed
                pass
            return
        if threading.get_ident() == self._loop_thread:
            self._wake()
        elif not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed
                pass

    def _schedule_timer(self, visible_at_us: int) -> None:
        ms = -(-visible_at_us // 1000)
        if ms in self._timer_deadlines or self._timers is None:
            return
        self._timer_deadlines.add(ms)
        self._timers.call_at(ms, self._timer_fired, ms)

    def _timer_fired(self, ms: int) -> None:
        self._timer_deadlines.discard(ms)
        self._wake()

    # -- the dispatcher --------------------------------------------------------------------
    async def _main(self) -> None:
        backend = self.backend
        min_sleep = 0.001
        sleep = min_sleep
        last_full = 0.0
        last_lookahead = 0.0
        while not self._stopping:
            try:
                mono = time.monotonic()
                if mono - last_lookahead > self._lookahead_us / 3_000_000:
                    self._load_lookahead()
                    last_lookahead = mono
                did = self._turn()
                last_full = mono
            except Exception:
                log.exception("durable_core worker: dispatcher turn failed; retrying")
                did = False
                await asyncio.sleep(0.1)
            if did:
                sleep = min_sleep
                await asyncio.sleep(0)
                continue
            # idle: wait for an in-process signal, a timer, or poll for other processes
            while not self._stopping:
                woken = await self._wait_or_timeout(sleep)
                if woken:
                    sleep = min_sleep
                    break
                sleep = min(sleep * 2, self._max_poll)
                if backend.changed_elsewhere():
                    self._load_lookahead()
                    last_lookahead = time.monotonic()
                    break
                if time.monotonic() - last_full > 1.0:
                    break

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
        now = h.utc_now_us()
        for t in self.backend.next_visible(now=now, horizon=now + self._lookahead_us):
            self._schedule_timer(t)

    def _turn(self) -> bool:
        """One dispatcher turn; True if it did anything.

        Replays the instances leased by the previous turn, then one transaction commits those
        steps and the activity results gathered meanwhile and leases the next instances and
        activities (group commit: one transaction per turn however many items it carries).
        """
        backend = self.backend
        pending, self._pending = self._pending, []
        commits: list[StepCommit] = list(self._retry_commits)
        results: list[Any] = [None] * len(commits)
        self._retry_commits = []
        if pending:
            now = h.utc_now_us()
            for it in pending:
                c, res = self._step(it, now)
                commits.append(c)
                results.append(res)
        comp = self._completions
        completions: list[ActivityResult] = []
        while comp:
            completions.append(comp.popleft())
        stopping = self._stopping
        free = 0 if stopping else self.max_concurrent_activities - len(self._inflight)
        for r in completions:
            self._inflight.pop(r.item.id, None)
        free += 0 if stopping else len(completions)
        try:
            refused, items, acts = backend.run_turn(
                self.owner,
                steps=commits,
                completions=completions,
                now=h.utc_now_us(),
                orchestration_limit=0 if stopping else self.max_concurrent_orchestrations,
                activity_limit=max(0, free),
            )
        except BaseException:
            # keep everything for the next turn (the leases keep it ours meanwhile)
            self._retry_commits = commits
            for r in completions:
                self._inflight[r.item.id] = r.item
            comp.extendleft(reversed(completions))
            raise
        if commits:
            self.stats["steps"] += len(commits)
            self.stats["commits"] += 1
        self.stats["activities"] += len(completions)
        if commits:
            refused_ids = {id(c) for c in refused} if refused else ()
            self.stats["refused"] += len(refused)
            horizon = h.utc_now_us() + self._lookahead_us
            sessions = self._sessions
            for c, res in zip(commits, results):
                key = (c.item.instance_id, c.item.execution_id)
                if refused_ids and id(c) in refused_ids:
                    sessions.pop(key, None)
                    continue
                sess = res.session if res is not None else None
                if (
                    sess is not None
                    and c.continue_as_new is None
                    and c.status not in TERMINAL_STATUSES
                ):
                    sessions[key] = sess
                    if len(sessions) > self._sticky_size:
                        sessions.popitem(last=False)
                for _tid, fire_at in c.timers:
                    if fire_at <= horizon:
                        self._schedule_timer(fire_at)
        self._pending = items
        for a in acts:
            self._dispatch_activity(a)
        return bool(commits or completions or items or acts)

    # -- orchestration steps ---------------------------------------------------------------
    def _step(self, it: OrchestrationWorkItem, now: int) -> tuple[StepCommit, Any]:
        iid = it.instance_id
        key = (iid, it.execution_id)
        try:
            new_events = [h.OrchestratorStarted(-1, now)]
            new_events.extend(h.decode_records(it.new_events))
            sess = self._sessions.pop(key, None)
            if sess is not None and sess.history_length == it.history_length:
                res = sess.execute(new_events)
            else:
                old = self.backend.load_history(iid) if it.history_length else b""
                res = self._executor.execute(iid, old, new_events)
            return self._to_commit(it, res), res
        except HistoryCorruptError as exc:
            log.error("orchestration %r: corrupt history: %s", iid, exc)
            fd = FailureDetails(
                "HistoryCorruptError",
                f"the stored history of {iid!r} is corrupt (byte offset {exc.offset}"
                f"{', torn tail' if exc.torn_tail else ''}): {exc}",
                None,
                None,
                True,
            )
            return StepCommit(it, None, 0, _FAILED, failure=fd), None
        except Exception as exc:  # an engine bug must not take the worker down
            log.exception("orchestration %r: replay failed", iid)
            return StepCommit(it, None, 0, _FAILED, failure=failure_details_of(exc)), None

    def _to_commit(self, it: OrchestrationWorkItem, res: Any) -> StepCommit:
        new_history = res.new_history
        if it.history_length == 0:
            chunk = h.encode(new_history)
        else:
            chunk = h.encode_records(new_history)
        c = StepCommit(it, chunk, len(new_history), _RUNNING, custom_status=res.custom_status)
        comp = res.completion
        if comp is not None:
            status = OrchestrationStatus(comp.status)
            if status == _CAN:
                c.continue_as_new = (
                    comp.result,
                    h.encode_records(list(comp.carryover_events)) if comp.carryover_events else b"",
                )
                c.status = _RUNNING
                c.history_chunk = None
                c.history_added = 0
                c.drop_history = True
            else:
                c.status = status
                c.output = comp.result
                c.failure = comp.failure_details
        elif res.is_suspended:
            c.status = _SUSPENDED
        for a in res.actions:
            kind = type(a).__name__
            if kind == "ScheduleTask":
                c.activities.append((a.id, a.name, a.input))
            elif kind == "CreateTimer":
                c.timers.append((a.id, a.fire_at))
            elif kind == "CreateSubOrchestration":
                c.sub_orchestrations.append((a.id, a.name, a.instance_id, a.input))
            elif kind == "SendEvent":
                c.events.append((a.instance_id, a.name, a.input))
        return c

    # -- activities ------------------------------------------------------------------------
    def _dispatch_activity(self, item: ActivityWorkItem) -> None:
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
            self._completions.append(ActivityResult(item, failure=fd))
            self._wake()
            return
        self._inflight[item.id] = item
        if inspect.iscoroutinefunction(fn):
            task = self._loop.create_task(self._run_async(fn, item))  # type: ignore[union-attr]
            self._async_tasks.add(task)
            task.add_done_callback(self._async_tasks.discard)
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

    def _activity_ctx(self, item: ActivityWorkItem) -> Any:
        from .context import ActivityContext

        return ActivityContext(item.instance_id, item.task_id, item.name)

    def _run_sync(self, fn: Any, item: ActivityWorkItem) -> None:
        """Thread-pool job: run a sync activity and hand the result to the loop."""
        try:
            ctx = self._activity_ctx(item)
            n = self._nargs(fn)
            if n >= 2:
                out = fn(ctx, self.converter.deserialize(item.input))
            else:
                out = fn(ctx) if n == 1 else fn()
            r = ActivityResult(item, result=self.converter.serialize(out))
        except BaseException as exc:  # noqa: BLE001 - the failure goes to the orchestrator
            r = ActivityResult(item, failure=failure_details_of(exc))
        self._completions.append(r)
        loop = self._loop
        if loop is not None and not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # pragma: no cover - loop closed during shutdown
                pass

    async def _run_async(self, fn: Any, item: ActivityWorkItem) -> None:
        try:
            ctx = self._activity_ctx(item)
            n = self._nargs(fn)
            if n >= 2:
                out = await fn(ctx, self.converter.deserialize(item.input))
            else:
                out = await (fn(ctx) if n == 1 else fn())
            r = ActivityResult(item, result=self.converter.serialize(out))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - user code: SystemExit too fails the task
            r = ActivityResult(item, failure=failure_details_of(exc))
        self._completions.append(r)
        self._wake()

    async def _heartbeat(self) -> None:
        lease_s = getattr(self.backend, "lease_us", 30_000_000) / 1_000_000
        while True:
            await asyncio.sleep(max(0.05, lease_s / 3))
            try:
                self.backend.renew_leases(
                    self.owner, now=h.utc_now_us(), activity_ids=list(self._inflight)
                )
            except Exception:  # pragma: no cover - store briefly unavailable
                log.exception("durable_core worker: lease renewal failed")

    # -- inspection ------------------------------------------------------------------------
    @property
    def inflight_activities(self) -> int:
        """Activities running now."""
        return len(self._inflight)
