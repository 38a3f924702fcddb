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

    python benchmarks/http.py [--seconds 5] [--connections 32] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "async_http_api"

GOALS = {"starts/s": 1500.0, "status reads/s": 3000.0, "p99 ms @ rate": 50.0}


# -- the server (a separate process) ----------------------------------------------------------


def serve(db: str, port: int) -> None:
    """Run the sample app plus a no-op route under uvicorn (one worker)."""
    import uvicorn

    sys.path.insert(0, str(SAMPLE))
    import app as sample_app  # examples/async_http_api/app.py

    application = sample_app.create_app(db, api_key="bench")

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
    uvicorn.Server(config).run()


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


async def run_load(port: int, seconds: float, connections: int, rate: float) -> list[dict]:
    # warm up and make operations to read
    c = await Conn.open(port)
    ids: list[str] = []
    for _ in range(200):
        status, body = await c.request(START)
        assert status == 202, (status, body)
        ids.append(json.loads(body)["operation_id"])
    for _ in range(300):  # let the worker finish them (status reads then hit terminal states)
        status, body = await c.request(get(f"/api/operations/{ids[-1]}"))
        if json.loads(body)["status"] == "Completed":
            break
        await asyncio.sleep(0.05)
    c.close()
    status_req = [get(f"/api/operations/{i}") for i in ids]
    noop = get("/bench/noop")
    scenarios = [
        ("no-op route (framework ceiling)", lambda i: noop, 200),
        ("start  POST /api/start-operation", lambda i: START, 202),
        ("status GET /api/operations/{id}", lambda i: status_req[i % len(status_req)], 200),
    ]
    rows = []
    for name, make, expect in scenarios:
        n, r, lat, err = await closed_loop(port, make, seconds, connections, expect)
        rows.append(
            dict(scenario=name, mode=f"closed, {connections} conns", n=n, rate=r,
                 p50=percentile(lat, 50) * 1e3, p99=percentile(lat, 99) * 1e3, errors=err)
        )
        await asyncio.sleep(0.5)
    for name, make, expect in scenarios:
        n, r, lat, err = await open_loop(port, make, seconds, rate, expect)
        rows.append(
            dict(scenario=name, mode=f"open, {rate:.0f} req/s offered", n=n, rate=r,
                 p50=percentile(lat, 50) * 1e3, p99=percentile(lat, 99) * 1e3, errors=err)
        )
        await asyncio.sleep(0.5)
    return rows


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


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.db, args.port)
        return

    tmp = tempfile.mkdtemp(prefix="dc-http-bench-")
    db = f"sqlite:///{tmp}/bench.db"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--db", db, "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_up(port, proc)
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover
            pass
        rows = asyncio.run(run_load(port, args.seconds, args.connections, args.rate))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    print(f"\nHTTP benchmark: one uvicorn worker (uvloop, httptools), sample app with its worker in "
          f"process, SQLite at {db}; load generator: asyncio client in a second process, loopback; "
          f"{os.cpu_count()} CPUs\n")
    print(f"| {'scenario':34} | {'mode':24} | {'requests':>8} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | errors |")
    print(f"|{'-' * 36}|{'-' * 26}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 9}|--------|")
    for r in rows:
        print(f"| {r['scenario']:34} | {r['mode']:24} | {r['n']:>8} | {r['rate']:>8.0f} | "
              f"{r['p50']:>7.2f} | {r['p99']:>7.2f} | {r['errors']:>6} |")
    starts = rows[1]["rate"]
    reads = rows[2]["rate"]
    p99_start, p99_status = rows[4]["p99"], rows[5]["p99"]
    print()
    print(f"goal starts/s >= {GOALS['starts/s']:.0f}: {starts:.0f} -> {'met' if starts >= GOALS['starts/s'] else 'MISSED'}")
    print(f"goal status reads/s >= {GOALS['status reads/s']:.0f}: {reads:.0f} -> "
          f"{'met' if reads >= GOALS['status reads/s'] else 'MISSED'}")
    for label, v in (("start", p99_start), ("status", p99_status)):
        print(f"goal p99 < {GOALS['p99 ms @ rate']:.0f} ms at {args.rate:.0f} req/s ({label}): {v:.1f} ms -> "
              f"{'met' if v < GOALS['p99 ms @ rate'] else 'MISSED'}")


if __name__ == "__main__":
    main()
