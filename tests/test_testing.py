"""durable_core.testing: the test harness (clock, skip, auto-skip, fakes) and the replayer."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

import durable_core as dc
from durable_core import history as h
from durable_core.status import OrchestrationStatus as S
from durable_core.testing import (
    AsyncTestEnvironment,
    TestEnvironment,
    read_history_file,
    replay,
    write_history_file,
    with_fakes,
)

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ["durable_core.testing.fixtures"]


def _registry():
    reg = dc.Registry()

    def send_mail(ctx, to):
        raise RuntimeError("the real mail server must not be called from tests")

    def reminder(ctx, to):
        yield ctx.create_timer(timedelta(days=30))
        return (yield ctx.call_activity("send_mail", input=to))

    def approval(ctx, _):
        t = ctx.create_timer(timedelta(days=3))
        e = ctx.wait_for_external_event("approve")
        won = yield dc.when_any([t, e])
        return "approved" if won is e else "expired"

    def retries(ctx, _):
        policy = dc.RetryPolicy(first_retry_interval=timedelta(hours=1), max_number_of_attempts=3)
        return (yield ctx.call_activity("flaky", retry_policy=policy))

    attempts = []

    def flaky(ctx, _):
        attempts.append(1)
        if len(attempts) < 3:
            raise ValueError("not yet")
        return len(attempts)

    reg.add_activity(send_mail, "send_mail")
    reg.add_activity(flaky, "flaky")
    for fn in (reminder, approval, retries):
        reg.add_orchestrator(fn, fn.__name__)
    return reg


def test_a_thirty_day_timer_fires_when_the_test_skips_time():
    reg = _registry()
    t0 = time.monotonic()
    with TestEnvironment(registry=reg, activities={"send_mail": lambda ctx, to: f"sent {to}"}) as env:
        start = env.now()
        iid = env.client.schedule_new_orchestration("reminder", input="a@x")
        env.client.wait_for_orchestration_start(iid, timeout=5)
        time.sleep(0.1)
        assert env.client.get_orchestration_state(iid).runtime_status == S.RUNNING
        env.skip(timedelta(days=30))
        st = env.wait_for_completion(iid)
        assert st.output == "sent a@x"
        assert env.now() - start >= 30 * 86_400 * 1_000_000
        kinds = [type(e).__name__ for e in env.history(iid)]
        assert "TimerFired" in kinds and "TaskCompleted" in kinds
    assert time.monotonic() - t0 < 5  # well under a second of work, plus start/stop


def test_auto_skip_runs_timers_and_retry_back_offs_at_once():
    reg = _registry()
    with TestEnvironment(registry=reg, auto_skip=True) as env:
        a = env.client.schedule_new_orchestration("approval")
        r = env.client.schedule_new_orchestration("retries")
        assert env.wait_for_completion(a).output == "expired"
        assert env.wait_for_completion(r).output == 3
        b = env.client.schedule_new_orchestration("approval")
        env.client.wait_for_orchestration_start(b, timeout=5)
        env.client.raise_orchestration_event(b, "approve")
        assert env.wait_for_completion(b).output in ("approved", "expired")


def test_the_async_environment():
    reg = _registry()

    async def main():
        async with AsyncTestEnvironment(registry=reg) as env:
            iid = await env.client.schedule_new_orchestration("approval")
            await env.client.wait_for_orchestration_start(iid, timeout=5)
            await env.skip(timedelta(days=3, seconds=1))
            st = await env.wait_for_completion(iid)
            assert st.output == "expired"
            assert len(await env.history(iid)) > 5

    asyncio.run(main())


def test_fakes_must_name_real_activities():
    with pytest.raises(KeyError, match="no activity named nope"):
        with_fakes(_registry(), {"nope": lambda ctx, x: x})


def test_the_fixture(durable_env):
    assert durable_env.auto_skip and durable_env.client is not None


# -- replay -----------------------------------------------------------------------------------
def _v1():
    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: x + 1, "inc")

    def flow(ctx, n):
        a = yield ctx.call_activity("inc", input=n)
        yield ctx.wait_for_external_event("go")
        b = yield ctx.call_activity("inc", input=a)
        return b

    reg.add_orchestrator(flow, "flow")
    return reg


def _v2_broken():
    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: x + 1, "inc")
    reg.add_activity(lambda ctx, x: x * 2, "double")

    def flow(ctx, n):
        a = yield ctx.call_activity("double", input=n)  # was "inc": breaks old histories
        yield ctx.wait_for_external_event("go")
        return (yield ctx.call_activity("inc", input=a))

    reg.add_orchestrator(flow, "flow")
    return reg


def test_replay_reports_clean_and_broken_histories(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with dc.Runtime(url, registry=_v1()) as rt:
        c = rt.client
        done = c.schedule_new_orchestration("flow", input=1, instance_id="done")
        waiting = c.schedule_new_orchestration("flow", input=5, instance_id="waiting")
        c.wait_for_orchestration_start(done, timeout=10)
        deadline = time.monotonic() + 10
        while len(c.get_orchestration_history(waiting)) < 7 or len(c.get_orchestration_history(done)) < 7:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        c.raise_orchestration_event(done, "go")
        assert c.wait_for_orchestration_completion(done, timeout=10).output == 3
    same = replay(store=url, registry=_v1())
    assert same.ok and len(same.results) == 2, str(same)
    broken = replay(store=url, registry=_v2_broken(), statuses=[S.RUNNING])
    assert not broken.ok and len(broken.results) == 1
    r = broken.results[0]
    assert r.instance_id == "waiting" and r.outcome == "nondeterministic"
    assert r.sequence_number == 0 and "inc" in r.expected and "double" in r.actual
    assert "waiting" in str(broken) and broken.to_dict()["ok"] is False
    # by name, by id, unknown orchestrators
    assert replay(store=url, registry=_v1(), name="nope").results == []
    assert len(replay(store=url, registry=_v1(), instance_ids=["done"]).results) == 1
    empty = replay(store=url, registry=dc.Registry())
    assert {r.outcome for r in empty.results} == {"unknown-orchestrator"}
    # exported files replay the same way
    with dc.Client(url) as c:
        path = tmp_path / "waiting.history"
        write_history_file(path, c.get_orchestration_history("waiting"))
    assert read_history_file(path)[1].instance_id == "waiting"
    assert not replay(files=[path], registry=_v2_broken()).ok
    assert replay(files=[path], registry=_v1()).ok
    bad = tmp_path / "bad.history"
    bad.write_bytes(b"DCH\x01garbage")
    assert replay(files=[bad], registry=_v1()).results[0].outcome == "corrupt"


def test_replay_finds_a_completion_that_moved():
    reg = _v1()
    ev = [
        h.OrchestratorStarted(-1, 1),
        h.ExecutionStarted(-1, 1, "flow", "x", b"1"),
        h.TaskScheduled(0, 1, "inc", b"1"),
        h.OrchestratorCompleted(-1, 1),
        h.OrchestratorStarted(-1, 2),
        h.TaskCompleted(-1, 2, 0, b"2"),
        h.ExecutionCompleted(1, 2, int(S.COMPLETED), b"2"),  # v0 returned after one call
        h.OrchestratorCompleted(-1, 2),
    ]
    rep = replay([ev], registry=reg)
    assert rep.results[0].outcome == "diverged"
    assert "COMPLETED" in rep.results[0].expected and "did not complete" in rep.results[0].actual


# -- the CLI: export, and replay as a deploy gate ----------------------------------------------
FLOWS_V1 = '''
import durable_core as dc

reg = dc.Registry()


def inc(ctx, x):
    return x + 1


def flow(ctx, n):
    a = yield ctx.call_activity("inc", input=n)
    yield ctx.wait_for_external_event("go")
    return (yield ctx.call_activity("inc", input=a))


reg.add_activity(inc, "inc")
reg.add_orchestrator(flow, "flow")
'''

# v2 first validates the input with a new activity: old histories recorded ``inc`` first
FLOWS_V2_UNPATCHED = FLOWS_V1.replace(
    '    a = yield ctx.call_activity("inc", input=n)',
    '    n = yield ctx.call_activity("check", input=n)\n    a = yield ctx.call_activity("inc", input=n)',
) + 'reg.add_activity(lambda ctx, x: x, "check")\n'


def test_cli_replay_gates_a_deploy_and_export_writes_files(tmp_path, capsys, monkeypatch):
    import sys

    from durable_core.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    (tmp_path / "flows_v1.py").write_text(FLOWS_V1)
    (tmp_path / "flows_v2.py").write_text(FLOWS_V2_UNPATCHED)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import importlib

    v1 = importlib.import_module("flows_v1")
    with dc.Runtime(url, registry=v1.reg) as rt:
        iid = rt.client.schedule_new_orchestration("flow", input=1, instance_id="w1")
        deadline = time.monotonic() + 10
        while len(rt.client.get_orchestration_history(iid)) < 7:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert main(["export", "w1", "--store", url]) == 0
    assert (tmp_path / "w1.history").exists()
    assert main(["replay", "flows_v1:reg", "--store", url]) == 0
    assert "1 ok" in capsys.readouterr().out
    # the same change without a patch: caught before the restart (a fresh process, as in CI:
    # the decorators of both versions would clash in one registry)
    import json
    import subprocess

    p = subprocess.run([sys.executable, "-m", "durable_core", "replay", "flows_v2:reg", "--store", url,
                        "--status", "RUNNING", "--json"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is False and doc["results"][0]["outcome"] == "nondeterministic"
    assert doc["results"][0]["sequenceNumber"] == 0
    p = subprocess.run([sys.executable, "-m", "durable_core", "replay", "flows_v2:reg", "--no-store",
                        "--file", "w1.history"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 1 and "nondeterministic" in p.stdout, p.stdout + p.stderr
    assert main(["export", "nope", "--store", url]) == 1
    assert main(["replay", "flows_v1:reg", "--store", f"sqlite:///{tmp_path / 'missing.db'}"]) == 3


# -- a real redeploy with a patch ------------------------------------------------------------
FLOWS_V2_PATCHED = FLOWS_V1.replace(
    '    a = yield ctx.call_activity("inc", input=n)',
    '    if ctx.is_patched("check-input"):\n'
    '        n = yield ctx.call_activity("check", input=n)\n'
    '    a = yield ctx.call_activity("inc", input=n)',
) + 'reg.add_activity(lambda ctx, x: x * 100, "check")\n'


def _worker(tmp_path, module, url):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "durable_core", "worker", f"{module}:reg",
                             "--store", url], cwd=tmp_path, stderr=subprocess.PIPE, text=True)


def _stop(p):
    import signal

    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err


def test_a_patch_across_a_real_redeploy(tmp_path):
    """Instances started on v1 finish on the old branch after the worker restarts on v2; new
    ones take the new branch. The unpatched v2 is caught by ``durable-core replay`` first."""
    import subprocess
    import sys

    (tmp_path / "flows_v1.py").write_text(FLOWS_V1)
    (tmp_path / "flows_v2.py").write_text(FLOWS_V2_UNPATCHED)
    (tmp_path / "flows_v2p.py").write_text(FLOWS_V2_PATCHED)
    url = f"sqlite:///{tmp_path / 'deploy.db'}"
    with dc.Client(url) as c:
        old = [c.schedule_new_orchestration("flow", input=i, instance_id=f"old-{i}") for i in range(3)]
        w = _worker(tmp_path, "flows_v1", url)
        try:
            deadline = time.monotonic() + 30
            while any(len(c.get_orchestration_history(i)) < 7 for i in old):
                assert time.monotonic() < deadline and w.poll() is None
                time.sleep(0.05)
        finally:
            _stop(w)
        # before the restart: the unpatched change breaks every waiting instance, the patched one none
        def gate(module):
            return subprocess.run([sys.executable, "-m", "durable_core", "replay", f"{module}:reg",
                                   "--store", url], capture_output=True, text=True, cwd=tmp_path,
                                  timeout=60)
        bad = gate("flows_v2")
        assert bad.returncode == 1 and bad.stdout.count("nondeterministic") >= 1, bad.stdout
        good = gate("flows_v2p")
        assert good.returncode == 0, good.stdout + good.stderr
        w = _worker(tmp_path, "flows_v2p", url)
        try:
            new = c.schedule_new_orchestration("flow", input=1, instance_id="new-1")
            c.wait_for_orchestration_start(new, timeout=30)
            deadline = time.monotonic() + 30
            while len(c.get_orchestration_history(new)) < 9:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for iid in old + [new]:
                c.raise_orchestration_event(iid, "go")
            outs = {iid: c.wait_for_orchestration_completion(iid, timeout=30).output for iid in old + [new]}
        finally:
            _stop(w)
    assert outs == {"old-0": 2, "old-1": 3, "old-2": 4, "new-1": 102}  # old: n+2; new: 100n+2
    with dc.Client(url) as c:
        kinds = [type(e).__name__ for e in c.get_orchestration_history("new-1")]
        assert "PatchMarker" in kinds
        assert "PatchMarker" not in [type(e).__name__ for e in c.get_orchestration_history("old-0")]
