"""How ``tests/data/store_v1.db`` was made (kept as a record; do not re-run on current code).

The file is a store of schema version 1, written by durable_core as it was before the store
layer and schema v2 (commit b40a5a4). Run against a checkout of that commit::

    git worktree add /tmp/v1 b40a5a4 && cd /tmp/v1 && pip install -e . \
        && python /path/to/tests/data/make_store_v1.py /path/to/tests/data/store_v1.db

It leaves a finished, a failed, a waiting (on an external event, after a fan-out) and a
delayed-start instance, which ``test_backend_sqlite`` migrates and carries on with. The failed
instance's stack trace named this script by its absolute path; after it ran, that path was
rewritten to ``tests/data/`` in the failure text and in the history record (re-encoded, so
its checksum holds), to keep the machine's directories out of the repository.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time

import durable_core as dc


def main(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: x.upper(), "up")

    def answer(ctx, _):
        return 42
        yield  # noqa: unreachable - makes this a generator

    def broken(ctx, x):
        raise ValueError(f"broken {x}")
        yield  # noqa: unreachable

    def flow(ctx, items):
        ctx.set_custom_status({"stage": "started"})
        r = yield dc.when_all([ctx.call_activity("up", input=i) for i in items])
        got = yield ctx.wait_for_external_event("go")
        ctx.set_custom_status({"stage": "done"})
        return {"r": r, "got": got}

    reg.add_orchestrator(answer, "answer")
    reg.add_orchestrator(broken, "broken")
    reg.add_orchestrator(flow, "flow")
    with dc.Runtime(f"sqlite:///{path}", registry=reg) as rt:
        c = rt.client
        c.schedule_new_orchestration("answer", instance_id="done-1", tags={"team": "a"})
        c.schedule_new_orchestration("broken", input="x", instance_id="failed-1")
        c.schedule_new_orchestration("flow", input=["a", "b"], instance_id="waiting-1")
        c.schedule_new_orchestration(
            "flow", input=["c"], instance_id="later-1",
            start_at=dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc),
        )
        c.wait_for_orchestration_completion("done-1", timeout=30)
        c.wait_for_orchestration_completion("failed-1", timeout=30)
        for _ in range(300):
            st = c.get_orchestration_state("waiting-1")
            if st.custom_status == {"stage": "started"} and len(c.get_orchestration_history("waiting-1")) >= 11:
                break
            time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1])
