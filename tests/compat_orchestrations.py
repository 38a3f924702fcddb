"""Orchestrations whose histories were recorded by an earlier engine (``tests/data/v1``).

Their code must not change: ``test_codec_compat.py`` replays the recorded histories with the
current engine and checks that every episode gives back exactly the events recorded then.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import durable_core as dc

POLICY = dc.RetryPolicy(timedelta(seconds=1), 3, backoff_coefficient=2.0)


def double(ctx: Any, x: Any) -> Any:
    return x * 2


def fail(ctx: Any, x: Any) -> Any:
    raise ValueError(f"bad {x}")


def _flaky() -> Any:
    calls = {"n": 0}

    def flaky(ctx: Any, x: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 1:
            raise RuntimeError(f"attempt {calls['n']}")
        return x

    return flaky


def activities() -> dict[str, Any]:
    return {"double": double, "fail": fail, "flaky": _flaky()}


def chain(ctx: Any, n: int) -> Any:
    x = 1
    for _ in range(n):
        x = yield ctx.call_activity("double", input=x)
    return x


def fan(ctx: Any, n: int) -> Any:
    xs = yield dc.when_all([ctx.call_activity("double", input=i) for i in range(n)])
    return sum(xs)


def fan_fail(ctx: Any) -> Any:
    try:
        yield dc.when_all([ctx.call_activity("fail", input=1),
                           ctx.call_activity("double", input=2),
                           ctx.call_activity("double", input=3)])
    except dc.TaskFailedError as e:
        # scheduled while the other two calls may still be running
        return (yield ctx.call_activity("double", input=len(e.details.message)))
    return None


def approval(ctx: Any) -> Any:
    timer = ctx.create_timer(timedelta(hours=1))
    ev = ctx.wait_for_external_event("Approve")
    winner = yield dc.when_any([ev, timer])
    if winner is ev:
        timer.cancel()
        ctx.send_event("audit", "approved", data=ev.get_result())
        return ["approved", ev.get_result()]
    return "expired"


def kid(ctx: Any, x: Any) -> Any:
    return (yield ctx.call_activity("double", input=x))


def parent(ctx: Any) -> Any:
    ctx.set_custom_status({"stage": 1})
    a = yield ctx.call_sub_orchestrator(kid, input=3)
    b = yield ctx.call_activity("flaky", input=a, retry_policy=POLICY)
    try:
        yield ctx.call_activity("fail", input=b)
    except dc.TaskFailedError:
        pass
    raise LookupError(f"done with {b}")


def registry() -> dc.Registry:
    reg = dc.Registry()
    for fn in (chain, fan, fan_fail, approval, kid, parent):
        reg.add_orchestrator(fn)
    return reg
