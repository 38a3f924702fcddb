"""Two processes sharing the store file: a worker started with the CLI, clients in this one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("durable_core.engine")

import durable_core as dc  # noqa: E402
from durable_core.status import OrchestrationStatus as S  # noqa: E402

APP = '''
from datetime import timedelta
import durable_core as dc

registry = dc.Registry()

def hello(ctx, name):
    return f"hello {name}"

def flow(ctx, names):
    greetings = yield dc.when_all([ctx.call_activity("hello", input=n) for n in names])
    yield ctx.create_timer(timedelta(milliseconds=50))
    approved = yield ctx.wait_for_external_event("approve")
    ctx.set_custom_status("approved")
    return {"greetings": greetings, "approved": approved}

registry.add_activity(hello)
registry.add_orchestrator(flow)
'''


def _worker(tmp_path, url, target="app:registry"):
    (tmp_path / "app.py").write_text(APP)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, "-m", "durable_core", "worker", target, "--db", url,
         "--log-level", "WARNING"],
        cwd=str(tmp_path), env=env, stderr=subprocess.PIPE,
    )


def test_worker_process_and_clients(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    proc = _worker(tmp_path, url)
    try:
        with dc.Client(url) as c:
            ids = [c.schedule_new_orchestration("flow", input=[f"n{i}", "x"]) for i in range(20)]
            for iid in ids:
                c.wait_for_orchestration_start(iid, timeout=60)
            for iid in ids:
                c.raise_orchestration_event(iid, "approve", data=True)
            for i, iid in enumerate(ids):
                st = c.wait_for_orchestration_completion(iid, timeout=60)
                assert st.runtime_status == S.COMPLETED
                assert st.output == {"greetings": [f"hello n{i}", "hello x"], "approved": True}
                assert st.custom_status == "approved"

        async def async_side():
            async with dc.AsyncClient(url) as ac:
                iid = await ac.schedule_new_orchestration("flow", input=["a"])
                await ac.raise_orchestration_event(iid, "approve", data=1)
                return await ac.wait_for_orchestration_completion(iid, timeout=60)

        assert asyncio.run(async_side()).output == {"greetings": ["hello a"], "approved": 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 0, out  # graceful shutdown


def test_worker_cli_rejects_bad_target(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    proc = _worker(tmp_path, url, target="app:nothing_here")
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode != 0 and "nothing_here" in err


def test_unknown_orchestrator_in_worker_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    proc = _worker(tmp_path, url)
    try:
        with dc.Client(url) as c:
            bad = c.schedule_new_orchestration("not_registered")
            st = c.wait_for_orchestration_completion(bad, timeout=60)
            assert st.runtime_status == S.FAILED
            assert st.failure_details.error_type == "OrchestratorNotFoundError"
            good = c.schedule_new_orchestration("flow", input=[])
            c.raise_orchestration_event(good, "approve", data=0)
            assert c.wait_for_orchestration_completion(good, timeout=60).output["approved"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
