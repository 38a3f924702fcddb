"""The HTTP tests' orchestrations for the real runtime (the fake mirrors them in http_fakes.py)."""

from __future__ import annotations

from typing import Any

import durable_core as dc


def echo(ctx: Any, value: Any) -> Any:
    return value


def fail(ctx: Any, value: Any) -> Any:
    raise ValueError(f"boom: {value}")


def wait_event(ctx: Any, value: Any) -> Any:
    ctx.set_custom_status({"stage": "waiting"})
    got = yield ctx.wait_for_external_event("go")
    return {"got": got}


def steps(ctx: Any, value: Any) -> Any:
    n = int((value or {}).get("steps", 3))
    for i in range(n):
        ctx.set_custom_status({"percentComplete": int(100 * i / n), "step": i})
        yield ctx.wait_for_external_event("next")
    ctx.set_custom_status({"percentComplete": 100, "step": n})
    return {"steps": n}


def test_registry() -> Any:
    """A registry with the test orchestrations and the sample's worker functions."""
    import worker  # examples/async_http_api/worker.py (on sys.path in the tests)

    reg = dc.Registry()
    for fn in (echo, fail, wait_event, steps):
        reg.add_orchestrator(fn, name=fn.__name__)
    reg.add_orchestrator(worker.async_http_api_orchestrator, name="async_http_api_orchestrator")
    reg.add_activity(worker.process_long_running_operation, name="process_long_running_operation")
    return reg


test_registry.__test__ = False  # type: ignore[attr-defined]
