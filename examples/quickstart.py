"""The README quick start: activities, a durable timer, when_all and custom status.

Run it twice: the store (durable.db in the working directory) keeps every instance.

    python examples/quickstart.py [sqlite:///durable.db]
"""

from __future__ import annotations

import sys
from datetime import timedelta

import durable_core as dc


@dc.activity
def process(ctx: dc.ActivityContext, item: str) -> str:
    return item.upper()


@dc.orchestrator
def flow(ctx: dc.OrchestrationContext, items: list[str]):
    results = yield dc.when_all([ctx.call_activity(process, input=i) for i in items])
    yield ctx.create_timer(timedelta(seconds=1))
    ctx.set_custom_status({"done": len(results)})
    return results


def main(url: str = "sqlite:///durable.db") -> dc.OrchestrationState:
    with dc.Runtime(url) as rt:  # worker + client in one process
        iid = rt.client.schedule_new_orchestration(flow, input=["a", "b", "c"])
        state = rt.client.wait_for_orchestration_completion(iid, timeout=30)
        print(state.runtime_status, state.output)  # OrchestrationStatus.COMPLETED ['A', 'B', 'C']
        print("custom status:", state.custom_status)
        return state


if __name__ == "__main__":
    main(*sys.argv[1:2])
