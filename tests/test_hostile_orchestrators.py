"""With the runtime: an orchestrator that raises a BaseException fails its own instance, and the
worker carries on with the others (the engine never lets it escape)."""

from __future__ import annotations

import sys
from typing import Any

import durable_core as dc


def test_sys_exit_fails_the_instance_and_the_worker_carries_on(tmp_path: Any) -> None:
    reg = dc.Registry()

    def noop(ctx: Any, x: Any) -> Any:
        return x

    def exits(ctx: Any) -> Any:
        yield ctx.call_activity(noop, input=1)
        sys.exit(5)

    def fine(ctx: Any, x: Any) -> Any:
        return (yield ctx.call_activity(noop, input=x))

    reg.add_activity(noop)
    reg.add_orchestrator(exits)
    reg.add_orchestrator(fine)
    with dc.Runtime(f"sqlite:///{tmp_path / 'h.db'}", registry=reg) as rt:
        bad = rt.client.schedule_new_orchestration(exits)
        st = rt.client.wait_for_orchestration_completion(bad, timeout=30)
        assert st.runtime_status == dc.OrchestrationStatus.FAILED
        assert (st.failure_details.error_type, st.failure_details.message) == ("SystemExit", "5")
        later = [rt.client.schedule_new_orchestration(fine, input=i) for i in range(3)]
        for i, iid in enumerate(later):
            done = rt.client.wait_for_orchestration_completion(iid, timeout=30)
            assert done.runtime_status == dc.OrchestrationStatus.COMPLETED and done.output == i
