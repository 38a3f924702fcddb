"""Orchestrations that give the operator tools (CLI, dashboard) something to show: parallel
activities, a retried activity, a timer, an event wait, a sub-orchestration, a failure, a
payload with markup in it, and one that waits until told to go.

``populate(url)`` runs a worker on the store until the finished ones are finished and the
waiting one is waiting, and returns their ids.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import durable_core as dc

registry = dc.Registry()
_attempts: dict[str, int] = {}

XSS = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned=2\">"


def shout(ctx: Any, s: str) -> str:
    time.sleep(0.02)
    return str(s).upper()


def fast(ctx: Any, s: str) -> str:
    return s


def flaky(ctx: Any, key: str) -> str:
    n = _attempts[key] = _attempts.get(key, 0) + 1
    if n < 3:
        raise RuntimeError(f"flaky attempt {n}")
    return f"ok after {n}"


def explode(ctx: Any, _: Any) -> None:
    raise ValueError("the activity exploded")


def child(ctx: Any, x: Any) -> Any:
    r = yield ctx.call_activity("shout", input=f"child-{x}")
    return {"child": r}


def showcase(ctx: Any, data: Any) -> Any:
    """Parallel activities, a retried one, a timer, an event, a sub-orchestration."""
    parts = yield dc.when_all([ctx.call_activity("shout", input=w) for w in ("a", "b", "c")])
    retried = yield ctx.call_activity(
        "flaky", input=ctx.instance_id,
        retry_policy=dc.RetryPolicy(first_retry_interval=timedelta(milliseconds=10),
                                    max_number_of_attempts=5),
    )
    yield ctx.create_timer(timedelta(milliseconds=20))
    ctx.set_custom_status({"stage": "waiting for approval"})
    approved = yield ctx.wait_for_external_event("approve")
    sub = yield ctx.call_sub_orchestrator("child", input=1)
    ctx.set_custom_status({"stage": "done"})
    return {"parts": parts, "retried": retried, "approved": approved, "sub": sub, "note": XSS}


def failing(ctx: Any, _: Any) -> Any:
    yield ctx.call_activity("explode")


def waiter(ctx: Any, data: Any) -> Any:
    ctx.set_custom_status({"stage": "waiting", "html": XSS})
    got = yield ctx.wait_for_external_event("go")
    return got


def many(ctx: Any, n: int) -> Any:
    """``n`` activities one after another: a long history."""
    for i in range(int(n)):
        yield ctx.call_activity("fast", input=str(i))
    return n


for fn in (showcase, failing, waiter, child, many):
    registry.add_orchestrator(fn, name=fn.__name__)
for fn in (shout, fast, flaky, explode):
    registry.add_activity(fn, name=fn.__name__)


def populate(url: str) -> dict[str, str]:
    """Run the flows on ``url``; returns {"showcase", "failing", "waiter", "xss", "child"} ids
    (``waiter`` and ``xss`` are left waiting for their event)."""
    _attempts.clear()  # flaky() fails twice per instance id, again for this store
    with dc.Runtime(url, registry=registry) as rt:
        c = rt.client
        ids = {
            "showcase": c.schedule_new_orchestration("showcase", input={"who": "ops"}, instance_id="showcase-1"),
            "failing": c.schedule_new_orchestration("failing", instance_id="failing-1"),
            "waiter": c.schedule_new_orchestration("waiter", input={"n": 1}, instance_id="waiter-1"),
            "xss": c.schedule_new_orchestration("waiter", input={"html": XSS}, instance_id="xss-1"),
        }
        st = c.wait_for_orchestration_start(ids["showcase"], timeout=30)
        while (st.custom_status or {}).get("stage") != "waiting for approval":
            st = c.wait_for_orchestration_change(ids["showcase"], since=st, timeout=10)
        c.raise_orchestration_event(ids["showcase"], "approve", data=True)
        for k in ("showcase", "failing"):
            c.wait_for_orchestration_completion(ids[k], timeout=60)
        for k in ("waiter", "xss"):
            st = c.wait_for_orchestration_start(ids[k], timeout=30)
            while st.custom_status is None:
                st = c.wait_for_orchestration_change(ids[k], since=st, timeout=10)
        kids = c.query_orchestrations(parent_instance_id=ids["showcase"]).states
        ids["child"] = kids[0].instance_id
    return ids
