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
Two more C rows measure telemetry's cost: OpenTelemetry not importable at all ("OTel absent"),
and traces and metrics on (the SDK's providers with a batch span processor into an in-memory
exporter and an in-memory metric reader, set globally). The plain C row has OpenTelemetry's
API installed and no provider set, what most installs see.

    python benchmarks/e2e.py [--n 2000] [--quick]

With ``--pg`` (or ``--pg-only``, or ``DURABLE_CORE_PG_DSN`` set), PostgreSQL rows follow:
worker processes and a client process on one database, beside DBOS on the same server, and
per-orchestration statements, round trips, WAL bytes and CPU (see ``run_postgres``).
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
from typing import Any, Optional
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


# -- PostgreSQL: worker processes on one database, beside DBOS on the same server -------------
# ``--pg`` (or DURABLE_CORE_PG_DSN set): one-activity orchestrations with 1, 2 and 4 worker
# processes (``python -m durable_core worker``) and a client process starting them, then DBOS
# on the same database (its own schema). Each run gets a throw-away schema. Per orchestration
# costs are machine-independent: SQL statements and round trips counted on the wire by a
# proxy every connection of the run goes through (pg_stat_statements needs a server restart
# to preload), and WAL bytes from pg_current_wal_lsn() before and after.
PG_APP = '''
import durable_core as dc

registry = dc.Registry()


def step(ctx, x):
    return x + 1


def one(ctx, x):
    return (yield ctx.call_activity("step", input=x))


registry.add_activity(step)
registry.add_orchestrator(one)
'''


class _WireCounter:
    """A TCP proxy in front of PostgreSQL counting, per connection, statements (Query and
    Execute messages) and round trips (the client sending after the server has answered)."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target = target
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(256)
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.statements = 0
        self.round_trips = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.statements, self.round_trips

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                a, _ = self.srv.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            for s in (a, b):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"answered": True}
            threading.Thread(target=self._up, args=(a, b, state), daemon=True).start()
            threading.Thread(target=self._down, args=(b, a, state), daemon=True).start()

    def _up(self, src: Any, dst: Any, state: dict) -> None:
        import struct

        buf = b""
        startup = True
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if state["answered"]:
                    state["answered"] = False
                    with self.lock:
                        self.round_trips += 1
                buf += data
                n = 0
                while True:
                    if startup:  # SSLRequest / GSSENCRequest / StartupMessage: no type byte
                        if len(buf) < 8:
                            break
                        ln, code = struct.unpack("!ii", buf[:8])
                        if len(buf) < ln:
                            break
                        buf = buf[ln:]
                        if code not in (80877103, 80877104):
                            startup = False
                        continue
                    if len(buf) < 5:
                        break
                    ln = struct.unpack("!i", buf[1:5])[0]
                    if len(buf) < 1 + ln:
                        break
                    if buf[:1] in (b"Q", b"E"):
                        n += 1
                    buf = buf[1 + ln:]
                if n:
                    with self.lock:
                        self.statements += n
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    @staticmethod
    def _down(src: Any, dst: Any, state: dict) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                state["answered"] = True
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass


def _pg_conn(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _pg_wal(dsn: str) -> str:
    with _pg_conn(dsn) as c:
        return c.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def _pg_wal_bytes(dsn: str, a: str, b: str) -> int:
    with _pg_conn(dsn) as c:
        return int(c.execute("SELECT pg_wal_lsn_diff(%s, %s)", (b, a)).fetchone()[0])


def _pg_server_cpu() -> Optional[float]:
    """CPU seconds used so far by the local PostgreSQL server's processes (None: not local,
    or /proc unreadable). Includes whatever else the server does meanwhile."""
    total = 0
    found = False
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.find("(") + 1:st.rfind(")")]
        if comm.startswith("postgres"):
            fields = st[st.rfind(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
            found = True
    return total / os.sysconf("SC_CLK_TCK") if found else None


def _pg_via(dsn: str, port: Optional[int]) -> str:
    """``dsn`` pointing at the proxy on ``port`` (unchanged for None); no TLS, so the proxy
    can read the protocol."""
    from urllib.parse import urlsplit

    p = urlsplit(dsn)
    if port is not None:
        p = p._replace(netloc=f"{p.username or 'postgres'}@127.0.0.1:{port}")
    q = (p.query + "&" if p.query else "") + "sslmode=disable&gssencmode=disable"
    return p._replace(query=q).geturl()


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used (0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return 0.0
    fields = st[st.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_start_client(url: str, n: int, threads: int = 8) -> list[float]:
    """The client process's work: start ``n`` one-activity orchestrations; returns
    [starts/s, this process's CPU seconds]."""
    import concurrent.futures

    import durable_core as dc

    with dc.Client(url) as c:
        t0 = time.perf_counter()
        c0 = time.process_time()
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda i: c.schedule_new_orchestration("one", input=i), range(n)))
        return [n / (time.perf_counter() - t0), time.process_time() - c0]


def _pg_ours(dsn: str, workers: int, n: int, counter: Optional[_WireCounter],
             preload: bool) -> dict[str, Any]:
    """``workers`` worker processes and a client process on a fresh task hub."""
    import signal
    import uuid

    schema = "dc_bench_" + uuid.uuid4().hex[:10]
    url = _pg_via(dsn, counter.port if counter else None) + f"&schema={schema}"
    tmp = tempfile.mkdtemp(prefix="dc-pg-")
    with open(os.path.join(tmp, "pgapp.py"), "w") as f:
        f.write(PG_APP)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp] + sys.path))
    procs: list[Any] = []
    row: dict[str, Any] = {"n": n}

    def client() -> float:
        """Run the client process; returns its starts/s (its CPU goes to row["client_cpu"])."""
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", "pg-client", "--pg-url", url,
             "--n", str(n)], env=env, capture_output=True, text=True, timeout=600)
        for line in out.stdout.splitlines():
            if line.startswith("RESULT "):
                rate, cpu = json.loads(line[7:])
                row["client_cpu_us"] = cpu / n * 1e6
                return float(rate)
        raise RuntimeError(f"client failed: {out.stderr[-500:]}")

    def spawn_workers() -> None:
        for _ in range(workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "durable_core", "worker", "pgapp:registry", "--db", url,
                 "--log-level", "WARNING"], cwd=tmp, env=env, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while c.execute(f"SELECT count(*) FROM {schema}.workers").fetchone()[0] < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.05)

    def wait_done() -> None:
        deadline = time.monotonic() + 600
        while c.execute(f"SELECT count(*) FROM {schema}.instances WHERE status = 1"
                        ).fetchone()[0] < n:
            if time.monotonic() > deadline:
                raise RuntimeError("orchestrations did not complete")
            time.sleep(0.02)

    import durable_core as dc

    dc.Client(_pg_via(dsn, None) + f"&schema={schema}").close()  # create the task hub
    c = _pg_conn(dsn)
    try:
        if preload:
            row["client"] = client()
            spawn_workers()
            wait_done()
            lo, hi = c.execute(f"SELECT min(last_updated_at), max(last_updated_at) FROM "
                               f"{schema}.instances").fetchone()
            row["worker"] = n / max(1e-6, (hi - lo) / 1e6)
        else:
            spawn_workers()
            time.sleep(0.5)  # past the workers' start-up (imports, first turns)
            wcpu0 = sum(_proc_cpu(p.pid) for p in procs)
            wal0 = _pg_wal(dsn)
            cpu0 = _pg_server_cpu()
            s0 = counter.snapshot() if counter else (0, 0)
            row["client"] = client()
            wait_done()
            lo, hi = c.execute(f"SELECT min(created_at), max(last_updated_at) FROM "
                               f"{schema}.instances").fetchone()
            row["e2e"] = n / max(1e-6, (hi - lo) / 1e6)
            if counter:
                time.sleep(0.3)  # let the last announcements and idle turns settle
                s1 = counter.snapshot()
                row["statements"] = (s1[0] - s0[0]) / n
                row["round_trips"] = (s1[1] - s0[1]) / n
            row["wal"] = _pg_wal_bytes(dsn, wal0, _pg_wal(dsn)) / n
            row["worker_cpu_us"] = (sum(_proc_cpu(p.pid) for p in procs) - wcpu0) / n * 1e6
            cpu1 = _pg_server_cpu()
            if cpu0 is not None and cpu1 is not None:
                row["server_cpu_us"] = (cpu1 - cpu0) / n * 1e6
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        c.close()
    return row


def _pg_dbos_child(url: str, schema: str, n: int) -> None:
    """DBOS on PostgreSQL, in this process: start ``n`` one-step workflows, wait for all.
    Prints READY after launch and waits for a line on stdin before starting (so the parent
    can read the counters), and DONE (then waits again) when every result is in."""
    import logging

    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config={"name": "e2e_pg", "system_database_url": url, "dbos_system_schema": schema,
                 "log_level": "WARNING"})

    @DBOS.step()
    def step(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def one(x: int) -> int:
        return step(x)

    DBOS.launch()
    try:
        one(0)  # warm up
        print("READY", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter()
        c0 = time.process_time()
        hs = [DBOS.start_workflow(one, i) for i in range(n)]
        for i, hnd in enumerate(hs):
            assert hnd.get_result() == i + 1
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        print("DONE", flush=True)
        sys.stdin.readline()
        print("RESULT " + json.dumps([n / dt, cpu]), flush=True)
    finally:
        DBOS.destroy()


def _pg_dbos(dsn: str, n: int, counter: Optional[_WireCounter]) -> dict[str, Any]:
    import uuid

    schema = "dbos_bench_" + uuid.uuid4().hex[:10]
    url = _pg_via(dsn, counter.port if counter else None)
    p = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child", "pg-dbos", "--pg-url", url,
         "--pg-schema", schema, "--n", str(n)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    row: dict[str, Any] = {"n": n, "client": None, "worker": None}
    try:
        assert p.stdout is not None and p.stdin is not None
        if p.stdout.readline().strip() != "READY":
            raise RuntimeError(f"DBOS did not start: {p.communicate(timeout=30)[1][-400:]}")
        wal0 = _pg_wal(dsn)
        cpu0 = _pg_server_cpu()
        s0 = counter.snapshot() if counter else (0, 0)
        p.stdin.write("\n")
        p.stdin.flush()
        if p.stdout.readline().strip() != "DONE":
            raise RuntimeError(f"DBOS failed: {p.communicate(timeout=30)[1][-400:]}")
        time.sleep(0.3)
        s1 = counter.snapshot() if counter else (0, 0)
        row["wal"] = _pg_wal_bytes(dsn, wal0, _pg_wal(dsn)) / n
        cpu1 = _pg_server_cpu()
        if cpu0 is not None and cpu1 is not None:
            row["server_cpu_us"] = (cpu1 - cpu0) / n * 1e6
        if counter:
            row["statements"] = (s1[0] - s0[0]) / n
            row["round_trips"] = (s1[1] - s0[1]) / n
        out, _ = p.communicate("\n", timeout=60)
        for line in out.splitlines():
            if line.startswith("RESULT "):
                rate, cpu = json.loads(line[7:])
                row["e2e"] = float(rate)
                row["worker_cpu_us"] = cpu / n * 1e6  # one process: client and worker
    finally:
        if p.poll() is None:
            p.kill()
        with _pg_conn(dsn) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return row


def run_postgres(dsn: str, n: int, dbos_n: int, counted_n: int) -> None:
    """The PostgreSQL rows: throughput with 1, 2, 4 workers and DBOS, then per-orchestration
    costs through the counting proxy."""
    from urllib.parse import urlsplit

    load = os.getloadavg()
    p = urlsplit(dsn)
    target = (p.hostname or "127.0.0.1", p.port or 5432)
    rows: list[tuple[str, Any]] = []

    def attempt(title: str, fn: Any) -> None:
        try:
            rows.append((title, fn()))
        except Exception as exc:  # noqa: BLE001 - report the row as failed, carry on
            rows.append((title, f"{type(exc).__name__}: {exc}"[:110]))

    for w in (1, 2, 4):
        def both(w: int = w) -> dict[str, Any]:
            r = _pg_ours(dsn, w, n, None, preload=False)
            r.update({k: v for k, v in _pg_ours(dsn, w, n, None, preload=True).items()
                      if k == "worker"})
            return r

        attempt(f"durable_core, {w} worker{'s' if w > 1 else ''}", both)
    attempt("DBOS (1 process)", lambda: _pg_dbos(dsn, dbos_n, None))
    counter = _WireCounter(target)
    costs: list[tuple[str, Any]] = []
    try:
        costs.append(("durable_core, 1 worker", _pg_ours(dsn, 1, counted_n, counter, False)))
    except Exception as exc:  # noqa: BLE001
        costs.append(("durable_core, 1 worker", str(exc)[:110]))
    try:
        costs.append(("DBOS (1 process)", _pg_dbos(dsn, dbos_n, counter)))
    except Exception as exc:  # noqa: BLE001
        costs.append(("DBOS (1 process)", str(exc)[:110]))
    load_after = os.getloadavg()
    print(f"\nPostgreSQL e2e: one-activity orchestrations, worker processes + a client process "
          f"(8 threads) on {target[0]}:{target[1]}, {os.cpu_count()} cores shared with the "
          f"server; load average {load[0]:.2f} before, {load_after[0]:.2f} after")
    hdr = f"{'runtime':<26} {'N':>6} {'e2e/s':>9} {'worker/s':>9} {'client/s':>9}"
    print(hdr)
    print("-" * len(hdr))
    for title, r in rows:
        if not isinstance(r, dict):
            print(f"{title:<26} could not run: {r}")
            continue
        print(f"{title:<26} {r['n']:>6} {_fmt(r.get('e2e')):>9} {_fmt(r.get('worker')):>9} "
              f"{_fmt(r.get('client')):>9}")
    print(f"\nper orchestration (through the counting proxy; N={counted_n}, DBOS N={dbos_n})")
    hdr = (f"{'runtime':<26} {'statements':>11} {'round trips':>12} {'WAL bytes':>10} "
           f"{'server CPU us':>14} {'worker CPU us':>14} {'client CPU us':>14} {'e2e/s':>8}")
    print(hdr)
    print("-" * len(hdr))
    for title, r in costs:
        if not isinstance(r, dict):
            print(f"{title:<26} could not run: {r}")
            continue
        print(f"{title:<26} {_fmt(r.get('statements'), '.1f'):>11} "
              f"{_fmt(r.get('round_trips'), '.2f'):>12} {_fmt(r.get('wal'), ',.0f'):>10} "
              f"{_fmt(r.get('server_cpu_us'), ',.0f'):>14} "
              f"{_fmt(r.get('worker_cpu_us'), ',.0f'):>14} "
              f"{_fmt(r.get('client_cpu_us'), ',.0f'):>14} {_fmt(r.get('e2e')):>8}")
    ours = {t: r for t, r in rows if isinstance(r, dict)}
    one, two = ours.get("durable_core, 1 worker"), ours.get("durable_core, 2 workers")
    db = ours.get("DBOS (1 process)")
    goals = []
    if one and two:
        goals.append(f"2 workers / 1: e2e {two['e2e'] / one['e2e']:.2f}x, "
                     f"worker {two['worker'] / one['worker']:.2f}x (goal 1.5x)")
    if db and ours:
        best = max(r.get("e2e") or 0 for t, r in ours.items() if t.startswith("durable"))
        goals.append(f"best durable_core / DBOS e2e: {best / db['e2e']:.1f}x (goal 15x)")
    c_ours = dict(costs).get("durable_core, 1 worker")
    c_db = dict(costs).get("DBOS (1 process)")
    if isinstance(c_ours, dict) and isinstance(c_db, dict):
        goals.append(f"WAL {c_ours['wal'] / c_db['wal']:.2f}x of DBOS, round trips "
                     f"{c_ours['round_trips'] / c_db['round_trips']:.2f}x (goal <= 0.5x)")
    for g in goals:
        print(g)


# -- driver ------------------------------------------------------------------------------------
class _BlockOtel:
    """An import finder that makes OpenTelemetry look not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


def _otel_setup(mode: str) -> Any:
    """``absent``: block OpenTelemetry's import; ``on``: global SDK providers recording in
    memory (returns the span exporter); anything else: leave it alone."""
    if mode == "absent":
        sys.meta_path.insert(0, _BlockOtel())  # type: ignore[arg-type]
        return None
    if mode != "on":
        return None
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 16))
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return exporter


def _child(which: str, n: int, idle: int, args: Any = None) -> None:
    if which == "pg-client":
        print("RESULT " + json.dumps(_pg_start_client(args.pg_url, n)))
        return
    if which == "pg-dbos":
        _pg_dbos_child(args.pg_url, args.pg_schema, n)
        return
    mode = os.environ.get("DURABLE_CORE_BENCH_OTEL", "")
    exporter = _otel_setup(mode) if which == "dc" else None
    res = run_dbos(n, idle) if which == "dbos" else run_durable_core(n, idle)
    if which == "dc":
        res["otel_loaded"] = any(m.split(".")[0] == "opentelemetry" for m in sys.modules)
        if exporter is not None:
            from opentelemetry import trace

            trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
            res["spans"] = len(exporter.get_finished_spans())
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
    ap.add_argument("--skip-otel", action="store_true", help="leave out the telemetry rows")
    ap.add_argument("--pg", action="store_true",
                    help="add the PostgreSQL rows (also when DURABLE_CORE_PG_DSN is set)")
    ap.add_argument("--pg-only", action="store_true", help="only the PostgreSQL rows")
    ap.add_argument("--pg-dsn", default=os.environ.get("DURABLE_CORE_PG_DSN",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--pg-n", type=int, default=4000, help="orchestrations per PostgreSQL run")
    ap.add_argument("--pg-dbos-n", type=int, default=300, help="workflows for DBOS on PostgreSQL")
    ap.add_argument("--pg-url", help=argparse.SUPPRESS)
    ap.add_argument("--pg-schema", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.idle, args.dbos_n = 200, 20, 20
        args.pg_n, args.pg_dbos_n = 300, 50
    if args.child:
        _child(args.child, args.n, args.idle, args)
        return
    want_pg = args.pg or args.pg_only or bool(os.environ.get("DURABLE_CORE_PG_DSN"))
    if args.pg_only:
        run_postgres(args.pg_dsn, args.pg_n, args.pg_dbos_n, min(args.pg_n, 1000))
        return
    runs = [
        ("durable_core (C)", "dc", {"DURABLE_CORE_NO_EXTENSIONS": "0"}),
        ("durable_core (C, OTel absent)", "dc", {"DURABLE_CORE_NO_EXTENSIONS": "0",
                                                 "DURABLE_CORE_BENCH_OTEL": "absent"}),
        ("durable_core (C, OTel on)", "dc", {"DURABLE_CORE_NO_EXTENSIONS": "0",
                                             "DURABLE_CORE_BENCH_OTEL": "on"}),
        ("durable_core (pure Python)", "dc", {"DURABLE_CORE_NO_EXTENSIONS": "1"}),
        ("DBOS (SQLite)", "dbos", {}),
    ]
    if args.skip_otel:
        runs = [r for r in runs if "OTel" not in r[0]]
    results = []
    for title, which, env in runs:
        n = args.dbos_n if which == "dbos" else args.n
        results.append((title, _spawn(which, n, args.idle, env, timeout=1200)))
    print(f"e2e benchmark: worker + client in one process, SQLite file, no-op activities "
          f"(N={args.n} one-activity; DBOS N={args.dbos_n})")
    hdr = (f"{'runtime':<30} {'workload':<18} {'N':>6} {'e2e/s':>9} {'p50 ms':>9} "
           f"{'p99 ms':>9} {'worker/s':>9} {'client/s':>9} {'idle p50':>9}")
    print(hdr)
    print("-" * len(hdr))
    base: dict[str, float] = {}
    for title, res in results:
        if not isinstance(res, dict):
            print(f"{title:<30} could not run: {res}")
            continue
        if title.startswith("durable_core (C") and res.get("impl") != "c":
            title = "durable_core (C: NOT BUILT)"
        if "OTel absent" in title and res.get("otel_loaded"):
            title += " (NOT BLOCKED)"
        for label, row in res["rows"].items():
            print(
                f"{title:<30} {label:<18} {row['n']:>6} {_fmt(row['e2e']):>9} "
                f"{_fmt(row['p50'], '.1f'):>9} {_fmt(row['p99'], '.1f'):>9} "
                f"{_fmt(row['worker']):>9} {_fmt(row['client']):>9} "
                f"{_fmt(row['idle_p50'], '.2f'):>9}"
            )
            if title == "DBOS (SQLite)":
                base[label] = row["e2e"]
        if "spans" in res:
            print(f"{'':<30} ({res['spans']:,} spans recorded)")
    c_res = results[0][1]
    if isinstance(c_res, dict) and base:
        ratios = ", ".join(
            f"{label}: {c_res['rows'][label]['e2e'] / base[label]:.0f}x"
            for label in base
            if label in c_res["rows"] and base[label]
        )
        print(f"durable_core (C) vs DBOS, e2e/s: {ratios}")
    if want_pg:
        run_postgres(args.pg_dsn, args.pg_n, args.pg_dbos_n, min(args.pg_n, 1000))


if __name__ == "__main__":
    main()
