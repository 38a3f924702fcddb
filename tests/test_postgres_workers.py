"""Worker processes on one PostgreSQL task hub: four of them run 2,000 mixed orchestrations
while one is killed with SIGKILL and restarted; a worker whose every connection is terminated
by the server recovers. The database itself audits the run: triggers record, in the writing
transaction, who held each instance's lease when its history grew."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

pytest.importorskip("durable_core.engine")

import durable_core as dc  # noqa: E402
from durable_core import history as h  # noqa: E402
from durable_core.status import OrchestrationStatus as S  # noqa: E402

from pg_support import admin, hub_url, pg_schema  # noqa: E402,F401

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

APP = '''
from datetime import timedelta
import durable_core as dc

registry = dc.Registry()

def inc(ctx, x):
    return x + 1

def chain(ctx, x):
    for _ in range(3):
        x = yield ctx.call_activity("inc", input=x)
    return x

def fan(ctx, x):
    rs = yield dc.when_all([ctx.call_activity("inc", input=x + i) for i in range(5)])
    return sum(rs)

def timer(ctx, x):
    yield ctx.create_timer(timedelta(milliseconds=100))
    return (yield ctx.call_activity("inc", input=x))

def event(ctx, x):
    got = yield ctx.wait_for_external_event("go")
    return got + x

def parent(ctx, x):
    r = yield ctx.call_sub_orchestrator("chain", input=x)
    return r * 2

for f in (inc,):
    registry.add_activity(f)
for f in (chain, fan, timer, event, parent):
    registry.add_orchestrator(f)
'''

KINDS = {
    "chain": lambda x: x + 3,
    "fan": lambda x: sum(x + i + 1 for i in range(5)),
    "timer": lambda x: x + 1,
    "event": lambda x: x + 7,
    "parent": lambda x: (x + 3) * 2,
}

AUDIT = """
CREATE TABLE {s}.audit_claims (instance_id text, fence bigint, owner text);
CREATE TABLE {s}.audit_writes (instance_id text, seq int, owner text, fence bigint,
                               expires_ok boolean);
CREATE FUNCTION {s}.audit_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.fence <> OLD.fence AND NEW.lock_owner IS NOT NULL THEN
    INSERT INTO {s}.audit_claims VALUES (NEW.instance_id, NEW.fence, NEW.lock_owner);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_claim AFTER UPDATE ON {s}.instances FOR EACH ROW
  EXECUTE FUNCTION {s}.audit_claim();
CREATE FUNCTION {s}.audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.audit_writes
  SELECT NEW.instance_id, NEW.seq, i.lock_owner, i.fence,
         i.lock_expires >= (extract(epoch from statement_timestamp()) * 1000000)::bigint
  FROM {s}.instances i WHERE i.instance_id = NEW.instance_id;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_write AFTER INSERT ON {s}.history FOR EACH ROW
  EXECUTE FUNCTION {s}.audit_write();
"""


def _spawn_worker(tmp_path: Any, url: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path))
    return subprocess.Popen(
        [sys.executable, "-m", "durable_core", "worker", "app:registry", "--db", url,
         "--log-level", "WARNING", *extra],
        cwd=str(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _stop(p: subprocess.Popen) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    return p.stderr.read().decode(errors="replace") if p.stderr else ""


def _prepare(url: str, schema: str, audit: bool = True) -> None:
    dc.Client(url).close()  # creates the task hub
    if audit:
        with admin() as c:
            c.execute(AUDIT.format(s=schema))


def _start_all(url: str, n: int) -> dict[str, tuple[str, int]]:
    kinds = list(KINDS)
    plan = {f"o{i:05d}": (kinds[i % len(kinds)], i) for i in range(n)}

    def start(chunk: list[str]) -> None:
        with dc.Client(url) as c:
            for iid in chunk:
                kind, x = plan[iid]
                c.schedule_new_orchestration(kind, input=x, instance_id=iid)
                if kind == "event":
                    c.raise_orchestration_event(iid, "go", data=7)

    ids = list(plan)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(start, [ids[i::4] for i in range(4)]))
    return plan


def _check_all(url: str, plan: dict[str, tuple[str, int]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with dc.Client(url) as c:
        for iid, (kind, x) in plan.items():
            st = c.wait_for_orchestration_completion(iid, timeout=max(1, deadline - time.monotonic()))
            assert st.runtime_status == S.COMPLETED, (iid, st)
            assert st.serialized_output == str(KINDS[kind](x)).encode(), (iid, kind, st)
            _no_duplicates(iid, c.get_orchestration_history(iid))


def _no_duplicates(iid: str, events: list) -> None:
    keys = []
    for e in events:
        if isinstance(e, (h.TaskScheduled, h.SubOrchestrationInstanceCreated, h.TimerCreated)):
            keys.append((type(e).__name__, e.event_id))
        elif isinstance(e, (h.TaskCompleted, h.TaskFailed, h.TimerFired,
                            h.SubOrchestrationInstanceCompleted)):
            keys.append((type(e).__name__, getattr(e, "task_scheduled_id", None)
                         if not isinstance(e, h.TimerFired) else e.timer_id))
        elif isinstance(e, (h.ExecutionStarted, h.ExecutionCompleted, h.EventRaised)):
            keys.append((type(e).__name__,))
    dup = [k for k, n in Counter(keys).items() if n > 1]
    assert not dup, (iid, dup)


def _audit(schema: str) -> None:
    with admin() as c:
        writes, claims = c.execute(
            f"SELECT (SELECT count(*) FROM {schema}.audit_writes), "
            f"(SELECT count(*) FROM {schema}.audit_claims)").fetchone()
        assert writes >= 2000 and claims >= 2000  # the audit saw the run
        bad = c.execute(
            f"SELECT count(*) FROM {schema}.audit_writes WHERE owner IS NULL OR NOT expires_ok"
        ).fetchone()[0]
        assert bad == 0, "a history chunk was written without a live lease"
        # the owner of every write holds the claim with that fence: one owner per fence
        mism = c.execute(
            f"SELECT count(*) FROM {schema}.audit_writes w LEFT JOIN {schema}.audit_claims k "
            "ON k.instance_id = w.instance_id AND k.fence = w.fence "
            "WHERE k.owner IS DISTINCT FROM w.owner").fetchone()[0]
        assert mism == 0, "a history chunk was written by a worker that did not hold its fence"
        twice = c.execute(
            f"SELECT count(*) FROM (SELECT instance_id, fence FROM {schema}.audit_claims "
            "GROUP BY 1, 2 HAVING count(*) > 1) x").fetchone()[0]
        assert twice == 0, "one fence was handed out twice"
        # histories are contiguous chunks, none written twice
        gaps = c.execute(
            f"SELECT count(*) FROM (SELECT instance_id, seq, lead(seq) OVER w AS nxt, "
            f"history_length FROM {schema}.history JOIN {schema}.instances USING (instance_id) "
            "WINDOW w AS (PARTITION BY instance_id ORDER BY seq)) x "
            "WHERE nxt IS NOT NULL AND nxt <= seq").fetchone()[0]
        assert gaps == 0


def test_four_workers_2000_orchestrations_with_a_kill_9(pg_schema, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    url = hub_url(pg_schema, lease_seconds=5)
    _prepare(url, pg_schema)
    # every orchestration is queued before a worker runs, so the kill below lands mid-run
    # however fast the workers are (when they ran during the starts, a quick machine had
    # finished everything before the kill)
    plan = _start_all(url, 2000)
    workers = [_spawn_worker(tmp_path, url) for _ in range(4)]
    try:
        # kill one worker mid-run (SIGKILL: no cleanup at all), then start a new one
        with admin() as c:
            deadline = time.monotonic() + 60
            count = (f"SELECT count(*) FILTER (WHERE status = 1), count(*) "
                     f"FROM {pg_schema}.instances")
            while c.execute(count).fetchone()[0] < 300:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            done_at_kill, total = c.execute(count).fetchone()
            workers[1].kill()
        # the parents' sub-orchestrations are instances too: the total is above 2,000
        assert done_at_kill < total, "the run finished before the kill"
        workers[1].wait()
        workers[1] = _spawn_worker(tmp_path, url)
        _check_all(url, plan, timeout=90)
    finally:
        errs = [_stop(w) for w in workers]
    for e in errs:
        assert "Traceback" not in e, e
    _audit(pg_schema)


def test_a_worker_whose_connections_are_all_terminated_recovers(pg_schema, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    app_name = "w_" + pg_schema
    url = hub_url(pg_schema, application_name=app_name, lease_seconds=5)
    _prepare(url, pg_schema, audit=False)
    w = _spawn_worker(tmp_path, url)
    try:
        plan = _start_all(hub_url(pg_schema), 300)
        killed = 0
        with admin() as c:
            for _ in range(3):  # a few times, while it works
                time.sleep(0.3)
                killed += c.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s", (app_name,)).fetchone()[0]
        assert killed >= 2
        _check_all(hub_url(pg_schema), plan, timeout=60)
        assert w.poll() is None, "the worker died"
        with admin() as c:  # it is connected again, LISTEN included
            back = c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             (app_name,)).fetchone()[0]
        assert back >= 1
    finally:
        err = _stop(w)
    assert "connection" in err  # it said what happened (and carried on)
