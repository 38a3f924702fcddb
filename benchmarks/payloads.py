"""Big payloads beside unrelated work: a fan-out's time on a clean store and next to one
completed instance holding a big input.

Before schema v2 the SQLite store kept inputs and outputs inside the clustered (``WITHOUT
ROWID``) instance rows, where SQLite reads a whole overflowing cell to compare keys: with one
10 MB instance in the file a 5,000-activity fan-out took 7.75 s instead of 0.29 s, in every
process. Now payloads live in their own rowid table and the instance rows stay short.

Rows: the fan-out (``--n`` no-op activities) on a fresh file, then on a fresh file holding one
completed instance with a ``--mb`` MB input; each in its own subprocess, best of ``--repeat``.
Also the pages of the instance b-tree (``dbstat``), a figure that does not depend on the machine.

    python benchmarks/payloads.py [--n 5000] [--mb 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any


def child(path: str, n: int, mb: int) -> dict[str, Any]:
    import durable_core as dc

    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: x, "act")

    def fan(ctx: Any, k: int):  # noqa: ANN202
        r = yield dc.when_all([ctx.call_activity("act", input=i) for i in range(k)])
        return len(r)

    reg.add_orchestrator(fan, "fan")
    reg.add_orchestrator(lambda ctx, x: 1, "one")
    url = f"sqlite:///{path}"
    if mb:
        with dc.Runtime(url, registry=reg) as rt:
            iid = rt.client.schedule_new_orchestration("one", input="x" * (mb * 1_000_000))
            rt.client.wait_for_orchestration_completion(iid, timeout=120)
    # a fresh process, as users meet it: the big instance is already in the file
    with dc.Runtime(url, registry=reg) as rt:
        t0 = time.perf_counter()
        iid = rt.client.schedule_new_orchestration("fan", input=n)
        st = rt.client.wait_for_orchestration_completion(iid, timeout=600)
        dt = time.perf_counter() - t0
        assert st.output == n, st
    c = sqlite3.connect(path)
    try:
        pages = c.execute("SELECT count(*) FROM dbstat WHERE name='instances'").fetchone()[0]
    except sqlite3.OperationalError:
        pages = -1
    c.close()
    return {"seconds": dt, "pages": pages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    rows = []
    for mb in (0, args.mb):
        best: dict[str, Any] = {}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="dc-payloads-") as tmp:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", os.path.join(tmp, "p.db"),
                     str(args.n), str(mb)], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if not best or r["seconds"] < best["seconds"]:
                    best = r
        rows.append((mb, best))
    print(f"{args.n}-activity fan-out on SQLite, best of {args.repeat}, each in a fresh process")
    print(f"{'store holds':<36} {'fan-out s':>10} {'activities/s':>13} {'instance pages':>15}")
    print("-" * 77)
    for mb, r in rows:
        label = "nothing else" if mb == 0 else f"one completed instance, {mb} MB input"
        print(f"{label:<36} {r['seconds']:>10.2f} {args.n / r['seconds']:>13,.0f} "
              f"{r['pages']:>15}")
    ratio = rows[1][1]["seconds"] / rows[0][1]["seconds"]
    print(f"slowdown beside the big instance: {ratio:.2f}x (schema v1, measured on the same machine: 0.29 s vs 7.75 s at 10 MB, 27x)")


if __name__ == "__main__":
    main()
