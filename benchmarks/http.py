"""HTTP benchmark: the async HTTP API sample under load, beside a no-op route on the same server.

One uvicorn worker (uvloop + httptools) serves ``examples/async_http_api/app.py`` -- the worker
runs in the same process, as ``make run`` runs it -- plus ``GET /bench/noop``, a FastAPI route
that does nothing: the framework's ceiling on this machine. The load generator is this script in
a second process: an asyncio HTTP/1.1 client over keep-alive loopback connections.

Measured:
- closed loop (``--connections`` requests in flight, ``--seconds`` each): no-op req/s,
  starts/s (``POST /api/start-operation``), status reads/s (``GET /api/operations/{id}``);
- open loop at a fixed offered rate (``--rate``, default 500 req/s): p50/p99 latency of each,
  timed from the moment a request was due (so a stalled server is not hidden by waiting).
  Starts are measured twice in open loop: at once after the closed run, while the worker (on
  the same event loop in ``one``) still works off the operations that overload started, and
  again once every started operation has finished -- the steady state the goal is about.

    python benchmarks/http.py [--seconds 5] [--connections 32] [--rate 500]
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's ``http`` package; run as a script its directory
# comes first on sys.path and would shadow it (uvicorn and starlette import http.client).
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "async_http_api"

GOALS = {"starts/s": 1500.0, "status reads/s": 3000.0, "p99 ms @ rate": 50.0}


# -- the server (a separate process) ----------------------------------------------------------


def serve(db: str, port: int, mode: str) -> None:
    """Run the sample plus a no-op route under uvicorn (one worker).

    ``one``: app.py, the worker on the server's loop; ``two``: client.py only (an AsyncClient on
    the store), the worker being a separate ``worker.py`` process.
    """
    import uvicorn

    sys.path.insert(0, str(SAMPLE))
    if mode == "one":
        import app as sample_app  # examples/async_http_api/app.py

        opts = json.loads(os.environ.get("DURABLE_BENCH_RUNTIME_OPTIONS", "{}"))
        application = sample_app.create_app(db, api_key="bench", **opts)
    else:
        import client as sample_client  # examples/async_http_api/client.py

        from durable_core.fastapi import client_lifespan

        application = sample_client.create_app(client_lifespan(db))

    @application.get("/bench/noop")
    async def noop() -> dict:
        return {"ok": True}

    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        workers=1,
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down on
        pass


# -- the load generator -------------------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection; requests are pre-encoded bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> "Conn":
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(r, w)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def post_json(path: str, body: object) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


START = post_json("/api/start-operation", {"processing_time": 0})


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def closed_loop(
    port: int, make: "callable", seconds: float, connections: int, expect: int
) -> tuple[int, float, list[float], int]:
    """``connections`` clients each sending back to back for ``seconds``: (n, rate, lat, errors)."""
    conns = [await Conn.open(port) for _ in range(connections)]
    lat: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(c: Conn, k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            status, _ = await c.request(make(i))
            lat.append(time.perf_counter() - t0)
            if status != expect:
                errors += 1
            i += connections

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c, k) for k, c in enumerate(conns)))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return len(lat), len(lat) / elapsed, lat, errors


async def open_loop(
    port: int, make: "callable", seconds: float, rate: float, expect: int, pool: int = 64
) -> tuple[int, float, list[float], int]:
    """Requests due every 1/rate s for ``seconds``; latency from the due time to the answer."""
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(pool):
        free.put_nowait(await Conn.open(port))
    lat: list[float] = []
    errors = 0
    n = int(seconds * rate)
    interval = 1.0 / rate
    t_start = time.perf_counter() + 0.05
    tasks = []

    async def one(i: int, due: float) -> None:
        nonlocal errors
        c = await free.get()
        try:
            status, _ = await c.request(make(i))
        finally:
            free.put_nowait(c)
        lat.append(time.perf_counter() - due)
        if status != expect:
            errors += 1

    for i in range(n):
        due = t_start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    while not free.empty():
        free.get_nowait().close()
    return n, n / elapsed, lat, errors


def backlog(db: str) -> int:
    """Operations started but not finished yet (0 once the worker has caught up), read from the
    store by a client in this process -- WAL readers never block the server's writers."""
    import durable_core as dc

    n = 0
    token = None
    with dc.Client(db) as c:
        while True:
            page = c.query_orchestrations(
                runtime_status=[dc.OrchestrationStatus.PENDING, dc.OrchestrationStatus.RUNNING],
                page_size=1000,
                continuation_token=token,
                fetch_payloads=False,
            )
            n += len(page.states)
            token = page.continuation_token
            if token is None:
                return n


async def drain(db: str, timeout: float = 300.0) -> float:
    """Seconds until every operation started so far has finished (the worker caught up)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout and backlog(db):
        await asyncio.sleep(0.05)
    return time.perf_counter() - t0


async def run_load(
    port: int, db: str, seconds: float, connections: int, rate: float
) -> tuple[list[dict], list[float]]:
    # warm up and make operations to read
    c = await Conn.open(port)
    ids: list[str] = []
    for _ in range(200):
        status, body = await c.request(START)
        assert status == 202, (status, body)
        ids.append(json.loads(body)["operation_id"])
    c.close()
    await drain(db)
    status_req = [get(f"/api/operations/{i}") for i in ids]
    noop = get("/bench/noop")

    # (scenario, make request, expected status, mode, wait for the worker to catch up after)
    # The start lines run closed loop (an overload: the worker falls behind), open loop at once
    # while the worker drains that backlog, then open loop again with the worker caught up.
    steps = [
        ("no-op route (framework ceiling)", lambda i: noop, 200, "closed", False),
        ("no-op route (framework ceiling)", lambda i: noop, 200, "open", False),
        ("status GET /api/operations/{id}", lambda i: status_req[i % len(status_req)], 200, "closed", False),
        ("status GET /api/operations/{id}", lambda i: status_req[i % len(status_req)], 200, "open", False),
        ("start  POST /api/start-operation", lambda i: START, 202, "closed", False),
        ("start  POST /api/start-operation", lambda i: START, 202, "open, backlog", True),
        ("start  POST /api/start-operation", lambda i: START, 202, "open", True),
    ]
    rows = []
    drains = []
    for name, make, expect, mode, then_drain in steps:
        if mode == "closed":
            n, r, lat, err = await closed_loop(port, make, seconds, connections, expect)
            label = f"closed, {connections} conns"
        else:
            left = backlog(db) if mode == "open, backlog" else 0
            n, r, lat, err = await open_loop(port, make, seconds, rate, expect)
            label = f"open, {rate:.0f}/s" + (f", {left} behind" if left else "")
        rows.append(
            dict(scenario=name, mode=label, n=n, rate=r, p50=percentile(lat, 50) * 1e3,
                 p99=percentile(lat, 99) * 1e3, errors=err, backlog=mode == "open, backlog")
        )
        if then_drain:  # let the worker finish everything started before measuring on
            drains.append(await drain(db))
        await asyncio.sleep(0.5)
    return rows, drains


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not come up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(mode: str, args: argparse.Namespace) -> tuple[list[dict], list[float]]:
    tmp = tempfile.mkdtemp(prefix="dc-http-bench-")
    db = f"sqlite:///{tmp}/bench.db"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", mode, "--db", db, "--port", str(port)], env=env
        )
    ]
    if mode == "two":
        procs.append(
            subprocess.Popen(
                [sys.executable, str(SAMPLE / "worker.py"), "--db", db],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        wait_up(port, procs[0])
        return asyncio.run(run_load(port, db, args.seconds, args.connections, args.rate))
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


MODES = {
    "one": "app.py: API + worker in one process (make run)",
    "two": "client.py API process + worker.py process",
}


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--modes", default="one,two", help="one, two or both (comma-separated)")
    ap.add_argument("--serve", choices=sorted(MODES), help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.db, args.port, args.serve)
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    results = {m: measure(m, args) for m in args.modes.split(",")}

    print(f"\nHTTP benchmark: one uvicorn worker (uvloop, httptools), SQLite store in a temp dir; "
          f"load generator: asyncio HTTP/1.1 client in another process over loopback; "
          f"{args.seconds:g} s per line; {os.cpu_count()} CPUs (shared)\n")
    print(f"| {'server':5} | {'scenario':34} | {'mode':24} | {'requests':>8} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | err |")
    print(f"|{'-' * 7}|{'-' * 36}|{'-' * 26}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 9}|-----|")
    for m, (rows, _) in results.items():
        for r in rows:
            print(f"| {m:5} | {r['scenario']:34} | {r['mode']:24} | {r['n']:>8} | {r['rate']:>7.0f} | "
                  f"{r['p50']:>7.2f} | {r['p99']:>7.2f} | {r['errors']:>3} |")
    print()
    for m, desc in MODES.items():
        if m in results:
            d = results[m][1]
            print(f"{m}: {desc}; every started operation finished {d[0]:.1f} s / {d[1]:.1f} s after "
                  f"the two open-loop start runs")
    print()
    for m, (rows, _) in results.items():
        by = {(r["scenario"].split()[0], r["mode"].split(",")[0]): r for r in rows if not r["backlog"]}
        starts = by[("start", "closed")]["rate"]
        reads = by[("status", "closed")]["rate"]
        ceiling = by[("no-op", "closed")]["rate"]
        print(f"[{m}] framework ceiling (no-op) {ceiling:.0f} req/s")
        print(f"[{m}] goal starts/s >= {GOALS['starts/s']:.0f}: {starts:.0f} -> "
              f"{'met' if starts >= GOALS['starts/s'] else 'MISSED'}")
        print(f"[{m}] goal status reads/s >= {GOALS['status reads/s']:.0f}: {reads:.0f} -> "
              f"{'met' if reads >= GOALS['status reads/s'] else 'MISSED'}")
        for label in ("start", "status"):
            v = by[(label, "open")]["p99"]
            print(f"[{m}] goal p99 < {GOALS['p99 ms @ rate']:.0f} ms at {args.rate:.0f} req/s ({label}, "
                  f"worker caught up): {v:.1f} ms -> {'met' if v < GOALS['p99 ms @ rate'] else 'MISSED'}")
        behind = [r for r in rows if r["backlog"]][0]
        print(f"[{m}] the same while the worker drains the closed run's backlog ({behind['mode']}): "
              f"p99 {behind['p99']:.1f} ms")


if __name__ == "__main__":
    main()
