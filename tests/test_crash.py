"""Crash safety: kill -9 a worker process at random moments while it runs many orchestrations.

After every kill a new worker process starts on the same file. Every orchestration must
complete with the right output, no history may contain a duplicated event, and only activities
in flight at a kill may have run twice (activities are at-least-once; each run is recorded in a
side file by the activity itself).
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import time

import pytest

pytest.importorskip("durable_core.engine")

import durable_core as dc  # noqa: E402
from durable_core import history as h  # noqa: E402
from durable_core.status import OrchestrationStatus as S  # noqa: E402

MAX_ACTIVITIES = 8

APP = '''
import os, time
from datetime import timedelta
import durable_core as dc

LOG = os.environ["CRASH_LOG"]

def _record(ctx):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.orchestration_id} {ctx.task_id}\\n".encode())
    finally:
        os.close(fd)

@dc.activity(name="cr_step")
def step(ctx, x):
    _record(ctx)
    time.sleep(0.001)
    return x + 1

@dc.activity(name="cr_astep")
async def astep(ctx, x):
    _record(ctx)
    return x + 1

@dc.orchestrator(name="cr_chain")
def chain(ctx, n):
    v = 0
    for i in range(n):
        v = yield ctx.call_activity(step if i % 2 else astep, input=v)
    return v

@dc.orchestrator(name="cr_fan")
def fan(ctx, n):
    rs = yield dc.when_all([ctx.call_activity(step, input=i) for i in range(n)])
    return sum(rs)

@dc.orchestrator(name="cr_timer")
def timer(ctx, ms):
    yield ctx.create_timer(timedelta(milliseconds=ms))
    v = yield ctx.call_activity(step, input=41)
    return v

@dc.orchestrator(name="cr_parent")
def parent(ctx, n):
    a = yield ctx.call_sub_orchestrator(chain, input=n)
    b = yield ctx.call_activity(astep, input=a)
    return b
'''


def _expected(kind: str, n: int) -> int:
    if kind == "cr_chain":
        return n
    if kind == "cr_fan":
        return n * (n + 1) // 2
    if kind == "cr_timer":
        return 42
    return n + 1  # cr_parent


def _start_worker(tmp_path, url: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "durable_core", "worker", "crash_app", "--db", url,
            "--activities", str(MAX_ACTIVITIES), "--log-level", "WARNING",
        ],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_registered(db_path, pid: int, timeout: float = 60.0) -> None:
    """Wait until the worker process has started serving (it registers in the store)."""
    import sqlite3

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        con = sqlite3.connect(str(db_path))
        try:
            if con.execute("SELECT 1 FROM workers WHERE pid=?", (pid,)).fetchone():
                return
        except sqlite3.OperationalError:
            pass
        finally:
            con.close()
        time.sleep(0.01)
    raise AssertionError("worker did not start")


def _check_history(events: list) -> None:
    ids = collections.Counter()
    answers = collections.Counter()
    starts = ends = 0
    for e in events:
        if isinstance(e, (h.TaskScheduled, h.TimerCreated, h.SubOrchestrationInstanceCreated)):
            ids[e.event_id] += 1
        elif isinstance(e, (h.TaskCompleted, h.TaskFailed, h.SubOrchestrationInstanceCompleted,
                            h.SubOrchestrationInstanceFailed)):
            answers[e.task_scheduled_id] += 1
        elif isinstance(e, h.TimerFired):
            answers[e.timer_id] += 1
        elif isinstance(e, h.ExecutionStarted):
            starts += 1
        elif isinstance(e, h.ExecutionCompleted):
            ends += 1
    assert starts == 1 and ends == 1, events
    assert all(v == 1 for v in ids.values()), ids
    assert all(v == 1 for v in answers.values()), answers
    assert set(answers) == set(ids)


def run_crash_scenario(tmp_path, n_orchestrations: int, kills: int, seed: int) -> None:
    (tmp_path / "crash_app.py").write_text(APP)
    log = tmp_path / "runs.log"
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    env = dict(os.environ, CRASH_LOG=str(log), PYTHONPATH=os.pathsep.join(sys.path))
    rng = random.Random(seed)
    kinds = [("cr_chain", 5), ("cr_fan", 12), ("cr_timer", 150), ("cr_parent", 3)]
    expected = {}
    worker = _start_worker(tmp_path, url, env)
    try:
        with dc.Client(url) as client:
            for i in range(n_orchestrations):
                kind, n = kinds[i % len(kinds)]
                iid = f"o{i:04d}"
                client.schedule_new_orchestration(kind, input=n, instance_id=iid)
                expected[iid] = _expected(kind, n)
            done_kills = 0
            while done_kills < kills:
                _wait_registered(tmp_path / "crash.db", worker.pid)
                time.sleep(rng.uniform(0.02, 0.4))
                worker.kill()
                worker.wait()
                done_kills += 1
                worker = _start_worker(tmp_path, url, env)
            for iid, want in expected.items():
                st = client.wait_for_orchestration_completion(iid, timeout=120)
                assert st.runtime_status == S.COMPLETED, (iid, st.failure_details)
                assert st.output == want, (iid, st.output, want)
                _check_history(client.get_orchestration_history(iid))
                if iid.startswith("o") and int(iid[1:]) % len(kinds) == 3:
                    child = client.get_orchestration_history(f"{iid}:0000")
                    _check_history(child)
        _wait_registered(tmp_path / "crash.db", worker.pid)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            worker.kill()
            worker.wait()
        err = worker.stderr.read().decode() if worker.stderr else ""
    assert worker.returncode == 0, err
    runs = collections.Counter(log.read_text().split("\n")[:-1])
    twice = sum(c - 1 for c in runs.values())
    # at most the activities leased (in flight) at each kill ran again
    assert twice <= kills * MAX_ACTIVITIES, (twice, kills)
    print(f"{len(expected)} orchestrations, {kills} kills, {sum(runs.values())} activity runs, "
          f"{twice} repeated")


def test_crash_short(tmp_path):
    run_crash_scenario(tmp_path, n_orchestrations=120, kills=4, seed=1)


@pytest.mark.slow
def test_crash_long(tmp_path):
    run_crash_scenario(tmp_path, n_orchestrations=400, kills=20, seed=7)


def test_two_worker_processes_share_the_store(tmp_path):
    """Two workers on one file: leases keep every step and result single; all complete."""
    (tmp_path / "crash_app.py").write_text(APP)
    log = tmp_path / "runs.log"
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    env = dict(os.environ, CRASH_LOG=str(log), PYTHONPATH=os.pathsep.join(sys.path))
    kinds = [("cr_chain", 4), ("cr_fan", 10), ("cr_timer", 50), ("cr_parent", 2)]
    workers = [_start_worker(tmp_path, url, env) for _ in range(2)]
    try:
        for w in workers:
            _wait_registered(tmp_path / "crash.db", w.pid)
        expected = {}
        with dc.Client(url) as client:
            for i in range(60):
                kind, n = kinds[i % len(kinds)]
                iid = client.schedule_new_orchestration(kind, input=n, instance_id=f"t{i:03d}")
                expected[iid] = _expected(kind, n)
            for iid, want in expected.items():
                st = client.wait_for_orchestration_completion(iid, timeout=120)
                assert (st.runtime_status, st.output) == (S.COMPLETED, want), iid
                _check_history(client.get_orchestration_history(iid))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.communicate(timeout=60)
    assert [w.returncode for w in workers] == [0, 0]
    runs = collections.Counter(log.read_text().split("\n")[:-1])
    assert all(c == 1 for c in runs.values())  # no kill: every activity ran once
