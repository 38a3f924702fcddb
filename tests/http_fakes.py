"""An in-memory stand-in for ``durable_core.AsyncClient`` (the HTTP tests' fast path).

It implements the client contract the HTTP layer uses -- start, state, wait for start /
completion, events, terminate, suspend, resume, restart, purge, history -- with
"orchestrations" that are plain ``async def behavior(ctx, input)`` functions run as asyncio
tasks on the test's loop. The same HTTP tests also run against the real runtime; this fake
keeps them fast and lets them run where the runtime is not available.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Optional

from durable_core import history as h
from durable_core.converter import default_converter
from durable_core.errors import (
    OrchestrationAlreadyExistsError,
    OrchestrationNotFoundError,
    PayloadError,
)
from durable_core.status import OrchestrationState, OrchestrationStatus

Behavior = Callable[["FakeContext", Any], Awaitable[Any]]

_TERMINAL = {
    OrchestrationStatus.COMPLETED,
    OrchestrationStatus.FAILED,
    OrchestrationStatus.TERMINATED,
    OrchestrationStatus.CANCELED,
}


class FakeContext:
    """What a fake behavior can do: custom status, wait for events, sleep."""

    def __init__(self, inst: "_Instance", client: "FakeAsyncClient") -> None:
        self._inst = inst
        self._client = client

    @property
    def instance_id(self) -> str:
        return self._inst.instance_id

    def set_custom_status(self, value: Any) -> None:
        self._inst.custom = self._client.converter.serialize(value)
        self._client._touch(self._inst)

    async def wait_for_event(self, name: str) -> Any:
        inst = self._inst
        while True:
            for i, (n, data) in enumerate(inst.inbox):
                if n.lower() == name.lower():
                    del inst.inbox[i]
                    await inst.resumed.wait()
                    return self._client.converter.deserialize(data)
            inst.inbox_changed.clear()
            await inst.inbox_changed.wait()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._inst.resumed.wait()


@dataclass
class _Instance:
    instance_id: str
    name: str
    input: Optional[bytes]
    status: OrchestrationStatus = OrchestrationStatus.PENDING
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    updated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    output: Optional[bytes] = None
    custom: Optional[bytes] = None
    failure: Optional[h.FailureDetails] = None
    history: list = field(default_factory=list)
    inbox: list = field(default_factory=list)
    inbox_changed: asyncio.Event = field(default_factory=asyncio.Event)
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: Optional[asyncio.Task] = None


class FakeNotifier:
    """Like the runtime's store notifier: ``add_waiter(id, cb)``; ``cb()`` on every change."""

    def __init__(self) -> None:
        self.waiters: dict[str, list[Callable[[], None]]] = {}

    def add_waiter(self, instance_id: str, cb: Callable[[], None]) -> None:
        self.waiters.setdefault(instance_id, []).append(cb)

    def remove_waiter(self, instance_id: str, cb: Callable[[], None]) -> None:
        lst = self.waiters.get(instance_id, [])
        if cb in lst:
            lst.remove(cb)
        if not lst:
            self.waiters.pop(instance_id, None)

    def changed(self, instance_id: str) -> None:
        for cb in tuple(self.waiters.get(instance_id, ())):
            cb()


class _FakeBackend:
    def __init__(self) -> None:
        self.notifier = FakeNotifier()


class FakeAsyncClient:
    """In-memory AsyncClient with the contract's method names and errors."""

    def __init__(self, behaviors: dict[str, Behavior], *, start_delay: float = 0.0) -> None:
        self.behaviors = dict(behaviors)
        self.converter = default_converter()
        self.instances: dict[str, _Instance] = {}
        self.start_delay = start_delay
        self.schedule_calls = 0
        self.closed = False
        self.backend = _FakeBackend()

    # -- internals ---------------------------------------------------------------------------

    def _touch(self, inst: _Instance) -> None:
        inst.updated = datetime.now(timezone.utc)
        inst.changed.set()
        inst.changed = asyncio.Event()
        self.backend.notifier.changed(inst.instance_id)

    def _get(self, instance_id: str) -> _Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise OrchestrationNotFoundError(instance_id)
        return inst

    def _state(self, inst: _Instance) -> OrchestrationState:
        return OrchestrationState(
            instance_id=inst.instance_id,
            name=inst.name,
            runtime_status=inst.status,
            created_at=inst.created,
            last_updated_at=inst.updated,
            serialized_input=inst.input,
            serialized_output=inst.output,
            serialized_custom_status=inst.custom,
            failure_details=inst.failure,
            _converter=self.converter,
        )

    async def _run(self, inst: _Instance) -> None:
        await asyncio.sleep(self.start_delay)
        behavior = self.behaviors.get(inst.name)
        inst.status = OrchestrationStatus.RUNNING
        inst.resumed.set()
        self._touch(inst)
        try:
            if behavior is None:
                raise LookupError(f"orchestrator {inst.name!r} not registered")
            out = await behavior(FakeContext(inst, self), self.converter.deserialize(inst.input))
            await inst.resumed.wait()
            inst.output = self.converter.serialize(out)
            inst.status = OrchestrationStatus.COMPLETED
            inst.history.append(
                h.ExecutionCompleted(-1, h.utc_now_us(), int(inst.status), inst.output)
            )
        except asyncio.CancelledError:
            return
        except Exception as e:  # the orchestration failed
            inst.failure = h.FailureDetails(
                "OrchestratorNotFoundError" if behavior is None else type(e).__name__,
                str(e),
                traceback.format_exc(),
            )
            inst.status = OrchestrationStatus.FAILED
            inst.history.append(
                h.ExecutionCompleted(-1, h.utc_now_us(), int(inst.status), None, inst.failure)
            )
        self._touch(inst)

    def _launch(self, inst: _Instance) -> None:
        inst.history.append(
            h.ExecutionStarted(-1, h.utc_now_us(), inst.name, inst.instance_id, inst.input)
        )
        inst.task = asyncio.get_running_loop().create_task(self._run(inst))

    # -- contract ----------------------------------------------------------------------------

    async def schedule_new_orchestration(
        self,
        orchestrator: Any,
        *,
        input: Any = None,
        instance_id: Optional[str] = None,
        start_at: Any = None,
        tags: Any = None,
        reuse_policy: Any = None,
    ) -> str:
        name = orchestrator if isinstance(orchestrator, str) else orchestrator.__name__
        try:
            data = self.converter.serialize(input)
        except Exception as e:
            raise PayloadError(str(e)) from e
        iid = instance_id or uuid.uuid4().hex
        if iid in self.instances:
            raise OrchestrationAlreadyExistsError(iid)
        self.schedule_calls += 1
        inst = _Instance(iid, name, data)
        self.instances[iid] = inst
        self._launch(inst)
        return iid

    async def get_orchestration_state(
        self, instance_id: str, *, fetch_payloads: bool = True
    ) -> Optional[OrchestrationState]:
        inst = self.instances.get(instance_id)
        return None if inst is None else self._state(inst)

    async def _wait(self, instance_id: str, pred: Callable[[_Instance], bool], timeout: Optional[float]) -> OrchestrationState:
        inst = self._get(instance_id)

        async def loop() -> OrchestrationState:
            while not pred(inst):
                await inst.changed.wait()
            return self._state(inst)

        try:
            return await asyncio.wait_for(loop(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{instance_id}: timed out") from None

    async def wait_for_orchestration_start(
        self, instance_id: str, *, timeout: Optional[float] = None
    ) -> OrchestrationState:
        return await self._wait(
            instance_id, lambda i: i.status != OrchestrationStatus.PENDING, timeout
        )

    async def wait_for_orchestration_completion(
        self, instance_id: str, *, timeout: Optional[float] = None
    ) -> OrchestrationState:
        return await self._wait(instance_id, lambda i: i.status in _TERMINAL, timeout)

    async def wait_for_orchestration_change(
        self, instance_id: str, *, since: Optional[OrchestrationState] = None, timeout: float = 30.0
    ) -> Optional[OrchestrationState]:
        """The contract's wait primitive: the state once it differs from ``since`` (status,
        last update, custom status), the unchanged one at the deadline, None when gone."""
        inst = self.instances.get(instance_id)
        if inst is None:
            return None

        def key(st: OrchestrationState) -> tuple:
            return (st.runtime_status, st.last_updated_at, st.serialized_custom_status)

        st = self._state(inst)
        if since is None or key(st) != key(since) or timeout <= 0:
            return st
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        woken = asyncio.Event()
        self.backend.notifier.add_waiter(instance_id, woken.set)
        try:
            while True:
                woken.clear()
                inst = self.instances.get(instance_id)
                if inst is None:
                    return None
                st = self._state(inst)
                remaining = deadline - loop.time()
                if key(st) != key(since) or remaining <= 0:
                    return st
                try:
                    await asyncio.wait_for(woken.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.backend.notifier.remove_waiter(instance_id, woken.set)

    async def raise_orchestration_event(
        self, instance_id: str, event_name: str, *, data: Any = None
    ) -> None:
        inst = self._get(instance_id)
        payload = self.converter.serialize(data)
        inst.history.append(h.EventRaised(-1, h.utc_now_us(), event_name, payload))
        if inst.status in _TERMINAL:
            return
        inst.inbox.append((event_name, payload))
        inst.inbox_changed.set()

    async def terminate_orchestration(
        self, instance_id: str, *, output: Any = None, recursive: bool = True
    ) -> None:
        inst = self._get(instance_id)
        if inst.status in _TERMINAL:
            return
        if inst.task is not None:
            inst.task.cancel()
        inst.output = self.converter.serialize(output)
        inst.status = OrchestrationStatus.TERMINATED
        inst.history.append(h.ExecutionTerminated(-1, h.utc_now_us(), inst.output))
        self._touch(inst)

    async def suspend_orchestration(self, instance_id: str, *, reason: Any = None) -> None:
        inst = self._get(instance_id)
        if inst.status in (OrchestrationStatus.RUNNING, OrchestrationStatus.PENDING):
            inst.resumed.clear()
            inst.status = OrchestrationStatus.SUSPENDED
            inst.history.append(h.ExecutionSuspended(-1, h.utc_now_us(), None))
            self._touch(inst)

    async def resume_orchestration(self, instance_id: str, *, reason: Any = None) -> None:
        inst = self._get(instance_id)
        if inst.status == OrchestrationStatus.SUSPENDED:
            inst.status = OrchestrationStatus.RUNNING
            inst.history.append(h.ExecutionResumed(-1, h.utc_now_us(), None))
            inst.resumed.set()
            self._touch(inst)

    async def restart_orchestration(
        self, instance_id: str, *, restart_with_new_instance_id: bool = False
    ) -> str:
        inst = self._get(instance_id)
        if restart_with_new_instance_id:
            return await self.schedule_new_orchestration(
                inst.name, input=self.converter.deserialize(inst.input)
            )
        if inst.status not in _TERMINAL:
            raise OrchestrationAlreadyExistsError(instance_id)
        new = _Instance(instance_id, inst.name, inst.input)
        self.instances[instance_id] = new
        self._launch(new)
        return instance_id

    async def purge_orchestration(self, instance_id: str, *, recursive: bool = True) -> int:
        inst = self.instances.get(instance_id)
        if inst is None or inst.status not in _TERMINAL:
            return 0
        del self.instances[instance_id]
        return 1

    async def get_orchestration_history(self, instance_id: str) -> list:
        return list(self._get(instance_id).history)

    async def close(self) -> None:
        self.closed = True
        for inst in self.instances.values():
            if inst.task is not None and not inst.task.done():
                inst.task.cancel()


# -- behaviors mirroring tests/http_orchestrations.py (the real-runtime versions) ----------------


async def echo(ctx: FakeContext, value: Any) -> Any:
    return value


async def fail(ctx: FakeContext, value: Any) -> Any:
    raise ValueError(f"boom: {value}")


async def wait_event(ctx: FakeContext, value: Any) -> Any:
    ctx.set_custom_status({"stage": "waiting"})
    got = await ctx.wait_for_event("go")
    return {"got": got}


async def steps(ctx: FakeContext, value: Any) -> Any:
    n = int((value or {}).get("steps", 3))
    for i in range(n):
        ctx.set_custom_status({"percentComplete": int(100 * i / n), "step": i})
        await ctx.wait_for_event("next")
    ctx.set_custom_status({"percentComplete": 100, "step": n})
    return {"steps": n}


async def sample_operation(ctx: FakeContext, value: Any) -> Any:
    """Stands in for the sample's ``async_http_api_orchestrator`` (worker.py)."""
    data = dict(value or {})
    t = float(data.get("processing_time", data.get("delay_seconds", 0)))
    if t < 0:
        raise ValueError("processing_time must be >= 0")
    ctx.set_custom_status({"stage": "processing"})
    await ctx.sleep(t)
    out = {"operation_id": ctx.instance_id, "status": "completed", "processing_time": t}
    if "name" in data:
        out["message"] = f"Hello, {data['name']}! Processed in {t} seconds."
    return out


FAKE_BEHAVIORS: dict[str, Behavior] = {
    "echo": echo,
    "fail": fail,
    "wait_event": wait_event,
    "steps": steps,
    "async_http_api_orchestrator": sample_operation,
}
