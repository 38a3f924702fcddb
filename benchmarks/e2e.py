"""End-to-end benchmark: orchestrations on an SQLite file, worker and client in one process.

Workloads: one activity; a chain of 5 activities; a 100-way fan-out/fan-in. For each:

- ``e2e/s``     -- N orchestrations started by a client thread while the worker runs: completed
                   per second from the first start to the last completion;
- ``p50``/``p99`` -- start-to-completion latency in that burst (durable_core: stored creation
                   time to the commit of the completion; DBOS: seen by the client, waiting in
                   start order, as its SQLite timestamps have whole seconds); includes
                   queueing behind the other N-1;
- ``worker/s``  -- the same N pre-loaded with the worker stopped, then run: the worker's own rate;
- ``client/s``  -- the client's rate of starting orchestrations (the pre-load);
- ``idle p50``  -- one orchestration at a time, client call to client return.

Rows: durable_core with the C extension, the same with ``DURABLE_CORE_NO_EXTENSIONS=1``, and
DBOS on SQLite (``pip install -e '.[bench]'``) with the same workloads. Each runs in its own
subprocess on a fresh file. Activities do no work, so the figures are the runtime's overhead.

    python benchmarks/e2e.py [--n 2000] [--quick]
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Run as a script, this directory leads sys.path, and its http.py (the HTTP benchmark) would shadow
# the standard library's ``http`` package that DBOS imports.
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    del sys.path[0]

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from typing import Any
WORKLOADS = [("1 activity", "one", 1), ("5-activity chain", "chain", 5), ("100 fan-out", "fan", 100)]


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


# -- durable_core ------------------------------------------------------------------------------
def run_durable_core(n: int, idle: int) -> dict[str, Any]:
    import durable_core as dc
    from durable_core import _impl

    reg = dc.Registry()

    def step(ctx: Any, x: int) -> int:
        return x + 1

    def one(ctx: Any, x: int):  # noqa: ANN202
        return (yield ctx.call_activity("step", input=x))

    def chain(ctx: Any, k: int):  # noqa: ANN202
        v = 0
        for _ in range(k):
            v = yield ctx.call_activity("step", input=v)
        return v

    def fan(ctx: Any, k: int):  # noqa: ANN202
        rs = yield dc.when_all([ctx.call_activity("step", input=i) for i in range(k)])
        return sum(rs)

    reg.add_activity(step)
    reg.add_orchestrator(one)
    reg.add_orchestrator(chain)
    reg.add_orchestrator(fan)
    out: dict[str, Any] = {"impl": _impl.IMPLEMENTATION, "rows": {}}
    tmp = tempfile.mkdtemp(prefix="dc-e2e-")
    for label, name, k in WORKLOADS:
        count = n if name != "fan" else max(5, n // 100)
        if name == "chain":
            count = max(10, n // 4)
        row: dict[str, Any] = {"n": count}
        # burst: start while the worker runs
        url = f"sqlite:///{tmp}/{name}-burst.db"
        with dc.Runtime(url, registry=reg) as rt:
            c = rt.client
            t0 = time.perf_counter()
            ids = [c.schedule_new_orchestration(name, input=k) for _ in range(count)]
            for iid in ids:
                st = c.wait_for_orchestration_completion(iid, timeout=600)
                assert st.runtime_status == dc.OrchestrationStatus.COMPLETED, st
            dt = time.perf_counter() - t0
            page = c.query_orchestrations(page_size=count + 1, fetch_payloads=False)
            lat = [
                (s.last_updated_at - s.created_at).total_seconds() * 1000 for s in page.states
            ]
        row["e2e"] = count / dt
        row["p50"] = _pct(lat, 50)
        row["p99"] = _pct(lat, 99)
        # pre-loaded: the client's start rate, then the worker's own rate
        url = f"sqlite:///{tmp}/{name}-pre.db"
        with dc.Client(url) as c:
            t0 = time.perf_counter()
            ids = [c.schedule_new_orchestration(name, input=k) for _ in range(count)]
            row["client"] = count / (time.perf_counter() - t0)
        rt = dc.Runtime(url, registry=reg)
        t0 = time.perf_counter()
        rt.start()
        for iid in ids:
            rt.client.wait_for_orchestration_completion(iid, timeout=600)
        row["worker"] = count / (time.perf_counter() - t0)
        # idle latency: one at a time
        m = idle if name != "fan" else max(5, idle // 10)
        lats = []
        for _ in range(m):
            t1 = time.perf_counter()
            iid = rt.client.schedule_new_orchestration(name, input=k)
            rt.client.wait_for_orchestration_completion(iid, timeout=60)
            lats.append((time.perf_counter() - t1) * 1000)
        rt.stop()
        row["idle_p50"] = statistics.median(lats)
        out["rows"][label] = row
    return out


# -- DBOS --------------------------------------------------------------------------------------
def run_dbos(n: int, idle: int) -> dict[str, Any]:
    import logging

    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.WARNING)
    tmp = tempfile.mkdtemp(prefix="dbos-e2e-")
    url = f"sqlite:///{tmp}/dbos.sqlite"
    DBOS(config={"name": "e2e", "system_database_url": url, "log_level": "WARNING"})
    queues: list[Any] = []

    @DBOS.step()
    def step(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def one(x: int) -> int:
        return step(x)

    @DBOS.workflow()
    def chain(k: int) -> int:
        v = 0
        for _ in range(k):
            v = step(v)
        return v

    @DBOS.workflow()
    def fan(k: int) -> int:
        hs = [queues[0].enqueue(step, i) for i in range(k)]
        return sum(h.get_result() for h in hs)

    DBOS.launch()
    # the queue polls for work; a short interval gives the fan-out its best latency
    queues.append(DBOS.register_queue("fan", worker_concurrency=100, polling_interval_sec=0.01))
    fns = {"one": one, "chain": chain, "fan": fan}
    out: dict[str, Any] = {"impl": "dbos", "rows": {}}
    try:
        for label, name, k in WORKLOADS:
            fn = fns[name]
            count = max(5, n if name != "fan" else n // 100)
            row: dict[str, Any] = {"n": count}
            t0 = time.perf_counter()
            starts = []
            hs = []
            for _ in range(count):
                starts.append(time.perf_counter())
                hs.append(DBOS.start_workflow(fn, k))
            # DBOS stores whole-second timestamps on SQLite: latency is seen by the client,
            # waiting in start order (an upper bound for each)
            lat = []
            for s, hnd in zip(starts, hs):
                hnd.get_result()
                lat.append((time.perf_counter() - s) * 1000)
            dt = time.perf_counter() - t0
            row["e2e"] = count / dt
            row["p50"] = _pct(lat, 50)
            row["p99"] = _pct(lat, 99)
            row["worker"] = None
            row["client"] = None
            m = max(3, idle // 10)
            lats = []
            for _ in range(m):
                t1 = time.perf_counter()
                DBOS.start_workflow(fn, k).get_result()
                lats.append((time.perf_counter() - t1) * 1000)
            row["idle_p50"] = statistics.median(lats)
            out["rows"][label] = row
    finally:
        DBOS.destroy()
    return out


# -- driver ------------------------------------------------------------------------------------
def _child(which: str, n: int, idle: int) -> None:
    res = run_dbos(n, idle) if which == "dbos" else run_durable_core(n, idle)
    print("RESULT " + json.dumps(res))


def _spawn(which: str, n: int, idle: int, env_extra: dict[str, str], timeout: float) -> Any:
    env = dict(os.environ, **env_extra)
    try:
        p = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", which, "--n", str(n),
             "--idle", str(idle)],
            env=env, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish in {timeout:.0f} s"
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return tail[:110]


def _fmt(x: Any, spec: str = ",.0f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and x != x:
        return "n/a"
    if spec == ",.0f" and abs(x) < 10:
        return format(x, ".2f")
    return format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="orchestrations per workload (1 activity)")
    ap.add_argument("--idle", type=int, default=200, help="sequential runs for idle latency")
    ap.add_argument("--dbos-n", type=int, default=200, help="orchestrations per workload for DBOS")
    ap.add_argument("--quick", action="store_true", help="small N (a smoke run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.idle, args.dbos_n = 200, 20, 20
    if args.child:
        _child(args.child, args.n, args.idle)
        return
    runs = [
        ("durable_core (C)", "dc", {"DURABLE_CORE_NO_EXTENSIONS": "0"}),
        ("durable_core (pure Python)", "dc", {"DURABLE_CORE_NO_EXTENSIONS": "1"}),
        ("DBOS (SQLite)", "dbos", {}),
    ]
    results = []
    for title, which, env in runs:
        n = args.dbos_n if which == "dbos" else args.n
        results.append((title, _spawn(which, n, args.idle, env, timeout=1200)))
    print(f"e2e benchmark: worker + client in one process, SQLite file, no-op activities "
          f"(N={args.n} one-activity; DBOS N={args.dbos_n})")
    hdr = (f"{'runtime':<28} {'workload':<18} {'N':>6} {'e2e/s':>9} {'p50 ms':>9} "
           f"{'p99 ms':>9} {'worker/s':>9} {'client/s':>9} {'idle p50':>9}")
    print(hdr)
    print("-" * len(hdr))
    base: dict[str, float] = {}
    for title, res in results:
        if not isinstance(res, dict):
            print(f"{title:<28} could not run: {res}")
            continue
        if title.startswith("durable_core (C)") and res.get("impl") != "c":
            title = "durable_core (C: NOT BUILT)"
        for label, row in res["rows"].items():
            print(
                f"{title:<28} {label:<18} {row['n']:>6} {_fmt(row['e2e']):>9} "
                f"{_fmt(row['p50'], '.1f'):>9} {_fmt(row['p99'], '.1f'):>9} "
                f"{_fmt(row['worker']):>9} {_fmt(row['client']):>9} "
                f"{_fmt(row['idle_p50'], '.2f'):>9}"
            )
            if title == "DBOS (SQLite)":
                base[label] = row["e2e"]
    c_res = results[0][1]
    if isinstance(c_res, dict) and base:
        ratios = ", ".join(
            f"{label}: {c_res['rows'][label]['e2e'] / base[label]:.0f}x"
            for label in base
            if label in c_res["rows"] and base[label]
        )
        print(f"durable_core (C) vs DBOS, e2e/s: {ratios}")


if __name__ == "__main__":
    main()
