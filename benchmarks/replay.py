"""Replay engine benchmark: history events replayed per second, side by side.

Scenarios (one full replay each: the whole history is old events, the last completion is new):

- chain N: ``for i in range(N): x = yield ctx.call_activity("step", input=i)`` -- 4 events per
  step (OrchestratorStarted, TaskCompleted, TaskScheduled, OrchestratorCompleted), JSON payloads;
- fan-out N: ``yield when_all([call_activity("step", input=i) for i in range(N)])``.

Columns: the C engine on event lists, the C engine on the encoded history (decode included),
the pure-Python twin, and durabletask's ``_OrchestrationExecutor`` (``pip install durabletask``)
on the same logical history built with its own helpers (``durabletask.internal.helpers``).

Then the cost of one sticky episode (a live session applies one TaskCompleted and schedules the
next activity) against the history length: it must not grow with the history.

Then stored histories replayed per second (issue 15): ``durable_core.testing.replay`` over
10,000 completed histories of a 100-step chain in an SQLite store, end to end (query, read,
decode, replay, report), and over the same histories as in-memory event lists; beside
Temporal's offline ``Replayer`` (``pip install temporalio``) on the same logical histories
(a workflow calling 100 activities in sequence), built as server-shaped protobufs
(``benchmarks/_temporal_replay.py``) and checked first: a changed workflow must fail to replay
them with a non-determinism error. The store is seeded from one real run of the orchestration:
its stored history rows are written for every instance through the backend contract, chunk
for chunk as the worker wrote them.

Times are process CPU time (the machine may be shared), best of several batches.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import durable_core as dc
from durable_core import _impl
from durable_core import history as h
from durable_core.engine import OrchestrationExecutor

T0 = 1_700_000_000_000_000


# --- our orchestrators and histories -------------------------------------------------------------

def chain(ctx: Any, n: int) -> Any:
    x = None
    for i in range(n):
        x = yield ctx.call_activity("step", input=i)
    return x


def chain_obj(ctx: Any, n: int) -> Any:
    x = None
    for i in range(n):
        x = yield ctx.call_activity("step", input={"step": i, "item": f"item-{i}", "tags": ["a", "b"]})
    return x


def fan(ctx: Any, n: int) -> Any:
    rs = yield dc.when_all([ctx.call_activity("step", input=i) for i in range(n)])
    return len(rs)


def endless(ctx: Any, n: int) -> Any:
    i = 0
    while True:
        yield ctx.call_activity("step", input=i)
        i += 1


def int_in(i: int) -> str:
    return str(i)


def int_out(i: int) -> str:
    return str(i * 2)


def obj_in(i: int) -> str:
    return '{"step":%d,"item":"item-%d","tags":["a","b"]}' % (i, i)


def obj_out(i: int) -> str:
    return '{"ok":true,"value":%d,"note":"done %d"}' % (i * 2, i)


def chain_history(n: int, name: str = "chain", pin: Callable[[int], str] = int_in,
                  pout: Callable[[int], str] = int_out) -> tuple[list[Any], list[Any]]:
    """(old, new) events of an N-step chain whose last activity result is the new event."""
    old: list[Any] = [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, name, "i", str(n).encode())]
    for i in range(n):
        ts = T0 + i * 1000
        old.append(h.TaskScheduled(i, ts, "step", pin(i).encode()))
        old.append(h.OrchestratorCompleted(-1, ts))
        nts = ts + 1000
        if i < n - 1:
            old += [h.OrchestratorStarted(-1, nts), h.TaskCompleted(-1, nts, i, pout(i).encode())]
    last = T0 + n * 1000
    new = [h.OrchestratorStarted(-1, last), h.TaskCompleted(-1, last, n - 1, pout(n).encode())]
    return old, new


def fan_history(n: int) -> tuple[list[Any], list[Any]]:
    old: list[Any] = [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, "fan", "i", str(n).encode())]
    old += [h.TaskScheduled(i, T0, "step", str(i).encode()) for i in range(n)]
    old.append(h.OrchestratorCompleted(-1, T0))
    new: list[Any] = [h.OrchestratorStarted(-1, T0 + 1000)]
    new += [h.TaskCompleted(-1, T0 + 1000, i, str(i * 2).encode()) for i in range(n)]
    return old, new


# --- durabletask ----------------------------------------------------------------------------------

def durabletask_runner(kind: str, n: int, pin: Callable[[int], str] = int_in,
                       pout: Callable[[int], str] = int_out) -> Optional[Callable[[], Any]]:
    try:
        from durabletask import task as dt_task
        from durabletask import worker as dt_worker
        from durabletask.internal import helpers as dth
    except ImportError:
        return None

    def dt_chain(ctx: Any, n: int) -> Any:
        x = None
        for i in range(n):
            x = yield ctx.call_activity("step", input=i)
        return x

    def dt_chain_obj(ctx: Any, n: int) -> Any:
        x = None
        for i in range(n):
            x = yield ctx.call_activity("step", input={"step": i, "item": f"item-{i}", "tags": ["a", "b"]})
        return x

    def dt_fan(ctx: Any, n: int) -> Any:
        rs = yield dt_task.when_all([ctx.call_activity("step", input=i) for i in range(n)])
        return len(rs)

    from datetime import datetime, timedelta, timezone

    t0 = datetime(2023, 11, 14, tzinfo=timezone.utc)
    reg = dt_worker._Registry()
    fn = {"chain": dt_chain, "chain-obj": dt_chain_obj, "fan": dt_fan}[kind]
    name = reg.add_orchestrator(fn)
    old: list[Any] = [dth.new_orchestrator_started_event(t0),
                      dth.new_execution_started_event(name, "i", encoded_input=str(n))]
    # durabletask numbers actions from 1 (we start at 0): same logical history
    if kind != "fan":
        for i in range(n):
            old.append(dth.new_task_scheduled_event(i + 1, "step", pin(i)))
            old.append(dth.new_orchestrator_completed_event())
            if i < n - 1:
                old.append(dth.new_orchestrator_started_event(t0 + timedelta(milliseconds=i + 1)))
                old.append(dth.new_task_completed_event(i + 1, pout(i)))
        new = [dth.new_orchestrator_started_event(t0 + timedelta(seconds=n)),
               dth.new_task_completed_event(n, pout(n))]
    else:
        old += [dth.new_task_scheduled_event(i + 1, "step", str(i)) for i in range(n)]
        old.append(dth.new_orchestrator_completed_event())
        new = [dth.new_orchestrator_started_event(t0 + timedelta(seconds=1))]
        new += [dth.new_task_completed_event(i + 1, str(i * 2)) for i in range(n)]
    logger = logging.getLogger("bench.durabletask")
    logger.setLevel(logging.WARNING)
    try:
        from durabletask.serialization import JsonDataConverter as DtJson

        conv: Any = DtJson()
        make = lambda: dt_worker._OrchestrationExecutor(reg, logger, conv)  # noqa: E731
    except ImportError:  # older releases: no converter argument
        make = lambda: dt_worker._OrchestrationExecutor(reg, logger)  # noqa: E731

    def run() -> Any:
        res = make().execute("i", old, new)
        return res

    res = run()
    acts = res.actions if hasattr(res, "actions") else res
    done = [a.completeOrchestration for a in acts if a.HasField("completeOrchestration")]
    expected = str(n) if kind == "fan" else pout(n).replace('":', '": ').replace(',"', ', "')
    got = done[0].result.value if done else None
    if kind == "chain-obj" and got is not None:  # its JSON has spaces: compare as values
        import json

        expected, got = json.loads(pout(n)), json.loads(got)
    if not done or done[0].orchestrationStatus != 1 or got != expected:
        detail = done[0].failureDetails.errorMessage if done else "no completion"
        raise RuntimeError(f"durabletask did not complete the benchmark orchestration: {detail}")
    return run


# --- timing ---------------------------------------------------------------------------------------

def best_time(fn: Callable[[], Any], min_batch_s: float, repeats: int) -> float:
    """Best per-call process time (seconds) over ``repeats`` batches of >= ``min_batch_s``."""
    clock = time.process_time
    fn()
    t = clock()
    fn()
    one = max(clock() - t, 1e-7)
    per_batch = max(1, int(min_batch_s / one))
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        for _ in range(per_batch):
            fn()
        best = min(best, (clock() - t) / per_batch)
    return best


def executors() -> dict[str, OrchestrationExecutor]:
    reg = dc.Registry()
    reg.add_orchestrator(chain)
    reg.add_orchestrator(chain_obj)
    reg.add_orchestrator(fan)
    reg.add_orchestrator(endless)
    out = {}
    impls = _impl.implementations("ContextCore", "durable_core._engine_py")
    for key, core in impls.items():
        out[key] = OrchestrationExecutor(reg, implementation=core)
    return out


def load_average() -> str:
    """The 1/5/15-minute load average (the machine may be shared: it explains noisy timings)."""
    try:
        return "load average %.2f, %.2f, %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover - not on this platform
        return "load average unknown"


def fmt_rate(events: int, seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    r = events / seconds
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.0f}k"


def replay_table(sizes: list[int], min_batch_s: float, repeats: int) -> dict[str, Any]:
    exs = executors()
    c, py = exs.get("c"), exs["py"]
    print("events replayed per second (one full replay; higher is better)")
    head = f"{'scenario':<16}{'events':>8}{'C':>10}{'C+decode':>10}{'twin':>10}{'durabletask':>13}{'C/twin':>8}{'C/dt':>7}"
    print(head)
    print("-" * len(head))
    goals: dict[str, Any] = {}
    cases = [("chain", n) for n in sizes]
    cases += [("chain-obj", n) for n in sizes if n == 1000]
    cases += [("fan-out", n) for n in sizes]
    for kind, n in cases:
        if kind == "chain":
            old, new = chain_history(n)
            expected = int_out(n).encode()
        elif kind == "chain-obj":
            old, new = chain_history(n, "chain_obj", obj_in, obj_out)
            expected = obj_out(n).encode()
        else:
            old, new = fan_history(n)
            expected = str(n).encode()
        events = len(old) + len(new)
        enc_old, enc_new = h.encode(old), h.encode_records(new)
        res: dict[str, Optional[float]] = {}
        for key, ex in (("c", c), ("py", py)):
            if ex is None:
                res[key] = None
                continue
            r = ex.execute("i", old, new)
            assert r.completion is not None and r.completion.result == expected, r.completion
            res[key] = best_time(lambda ex=ex: ex.execute("i", old, new), min_batch_s, repeats)
        if c is not None:
            res["cdec"] = best_time(lambda: c.execute("i", enc_old, enc_new), min_batch_s, repeats)
        else:
            res["cdec"] = None
        dt = durabletask_runner({"fan-out": "fan"}.get(kind, kind), n,
                                *((obj_in, obj_out) if kind == "chain-obj" else ()))
        res["dt"] = best_time(dt, min_batch_s, repeats) if dt is not None else None
        ratio_py = f"{res['py'] / res['c']:.1f}x" if res["c"] and res["py"] else "-"
        ratio_dt = f"{res['dt'] / res['c']:.0f}x" if res["c"] and res["dt"] else "-"
        if kind == "chain" and n == 1000:
            goals = res
        print(f"{kind + ' ' + str(n):<16}{events:>8}{fmt_rate(events, res['c']):>10}"
              f"{fmt_rate(events, res['cdec']):>10}{fmt_rate(events, res['py']):>10}"
              f"{fmt_rate(events, res['dt']):>13}{ratio_py:>8}{ratio_dt:>7}")
        sys.stdout.flush()
    return goals


def sticky_table(sizes: list[int], episodes: int, repeats: int) -> None:
    exs = executors()
    print()
    print(f"one sticky episode (apply a TaskCompleted, schedule the next activity): "
          f"µs per episode, best of {repeats} runs of {episodes}")
    head = f"{'history events':>15}" + "".join(f"{k:>10}" for k in exs) + f"{'full replay C':>15}"
    print(head)
    print("-" * len(head))
    for n in sizes:
        old, new = chain_history(n, "endless")
        row = f"{len(old) + len(new):>15}"
        full_c = None
        for key, ex in exs.items():
            best = float("inf")
            for _ in range(repeats):
                res = ex.execute("i", old, new)
                session = res.session
                seq = n  # the activity the code waits for now
                ts = T0 + (n + 1) * 1000
                batches = []
                for k in range(episodes):
                    batches.append([h.OrchestratorStarted(-1, ts + k),
                                    h.TaskCompleted(-1, ts + k, seq + k, b"1")])
                t = time.process_time()
                for evs in batches:
                    session = session.execute(evs).session
                best = min(best, (time.process_time() - t) / episodes)
            row += f"{best * 1e6:>10.1f}"
            if key == "c":
                full_c = best_time(lambda ex=ex: ex.execute("i", old, new), 0.05, 2)
        row += f"{full_c * 1e6:>15.1f}" if full_c is not None else f"{'-':>15}"
        print(row)
        sys.stdout.flush()


# --- stored histories: durable_core.testing.replay beside Temporal's Replayer ---------------------

def _step(ctx: Any, x: int) -> int:
    return x * 2


def stored_registry() -> dc.Registry:
    reg = dc.Registry()
    reg.add_activity(_step, "step")
    reg.add_orchestrator(chain, "chain")
    return reg


def chain_changed(ctx: Any, n: int) -> Any:
    x = None
    for i in range(n):
        x = yield ctx.call_activity("other", input=i)  # was "step": breaks the stored histories
    return x


def changed_registry() -> dc.Registry:
    reg = dc.Registry()
    reg.add_activity(_step, "other")
    reg.add_orchestrator(chain_changed, "chain")
    return reg


def template_run(workdir: str, n_steps: int) -> tuple[list[int], list[bytes], bytes]:
    """Run ``chain(n_steps)`` for real (a Runtime on its own store): the stored history's
    chunk starts and chunks, and the output."""
    url = f"sqlite:///{os.path.join(workdir, 'template.db')}"
    with dc.Runtime(url, registry=stored_registry()) as rt:
        c = rt.client
        iid = c.schedule_new_orchestration("chain", input=n_steps, instance_id="template")
        st = c.wait_for_orchestration_completion(iid, timeout=120)
        assert st.runtime_status == dc.OrchestrationStatus.COMPLETED, st
    from durable_core.backends import open_backend

    b = open_backend(url)
    try:
        stored = b.load_history("template")
        row = b.get_instance("template")
    finally:
        b.close()
    assert stored is not None and row is not None and row.output is not None
    return stored.starts, stored.chunks, row.output


def seed_store(url: str, count: int, n_steps: int, workdir: str, batch: int = 250) -> dict[str, Any]:
    """Store ``count`` completed instances whose history rows are those of one real run.

    Instances are created through the store layer (each gets its own ExecutionStarted: id,
    execution id, time); a worker's turns then claim them and write, per instance, the steps
    the real run wrote (one history chunk each; the first chunk re-encoded with the
    instance's own ExecutionStarted), the last one completing it with the run's output.
    """
    from durable_core.backends import open_backend
    from durable_core.backends.base import StepWrite
    from durable_core.store import Store

    starts, chunks, output = template_run(workdir, n_steps)
    length = len(h.decode_records(b"".join(chunks)))
    head = h.decode_records(chunks[0])
    assert type(head[1]) is h.ExecutionStarted
    b = open_backend(url)
    store = Store(b)
    owner = "bench-seeder"
    written = 0
    try:
        for k in range(count):
            store.create(f"chain-{k:06d}", "chain", str(n_steps).encode())
        b.register_worker(owner)
        steps: list[StepWrite] = []
        done = 0
        while True:
            t = b.run_turn(owner, steps=steps, outcomes=[], instance_limit=batch, activity_limit=0)
            assert not t.refused
            done += len({s.instance_id for s in steps})
            steps = []
            if not t.instances:
                break
            for claim in t.instances:
                (start,) = h.decode_records(b"".join(m.event for m in claim.messages))
                first = h.encode_records([head[0], start] + list(head[2:]))
                iid = claim.instance_id
                for i, (base, chunk) in enumerate(zip(starts, chunks)):
                    data = first if i == 0 else chunk
                    nxt = starts[i + 1] if i + 1 < len(starts) else length
                    last = i == len(starts) - 1
                    steps.append(StepWrite(
                        iid, claim.fence,
                        dc.OrchestrationStatus.COMPLETED if last else dc.OrchestrationStatus.RUNNING,
                        consumed=[m.id for m in claim.messages] if i == 0 else (),
                        history=data, history_base=base, history_added=nxt - base,
                        set_result=last, output=output if last else None))
                    written += len(data)
        b.unregister_worker(owner)
        assert done == count, (done, count)
        # the seeded rows are the real run's rows
        got = b.load_history("chain-000000")
        assert got is not None and got.starts == starts and got.chunks[1:] == chunks[1:]
        assert len(store.history("chain-000000") or []) == length
    finally:
        b.close()
    return {"events": length, "bytes": written, "chunks": len(chunks)}


def stored_table(count: int, n_steps: int, temporal_count: int, repeats: int) -> None:
    from durable_core.testing import replay

    print()
    print(f"stored histories replayed per second: {n_steps}-step chain (durable_core.testing.replay "
          f"end to end; higher is better)")
    workdir = tempfile.mkdtemp(prefix="dc-replay-bench-")
    try:
        url = f"sqlite:///{os.path.join(workdir, 'histories.db')}"
        t = time.monotonic()
        seeded = seed_store(url, count, n_steps, workdir)
        seed_s = time.monotonic() - t
        db_bytes = sum(os.path.getsize(os.path.join(workdir, f)) for f in os.listdir(workdir)
                       if f.startswith("histories.db"))
        print(f"(store seeded in {seed_s:.1f}s: {count} instances x {seeded['events']} events in "
              f"{seeded['chunks']} chunks, {seeded['bytes'] / count:.0f} bytes of history each; "
              f"file {db_bytes / 1e6:.0f} MB)")
        reg = stored_registry()
        bad = replay(store=url, registry=changed_registry(), instance_ids=["chain-000000"])
        r0 = bad.results[0]
        assert r0.outcome == "nondeterministic" and r0.sequence_number == 0, str(bad)
        print(f"durable_core sanity check: ok: a changed orchestrator (another activity) is reported: "
              f"{r0.outcome} at sequence number {r0.sequence_number} "
              f"(history: {r0.expected}; code: {r0.actual})")
        try:
            import _temporal_replay as tr  # benchmarks/ is on sys.path when run as a script
        except ImportError as exc:
            tr, tr_missing = None, f"not measured: {exc}"
        else:
            ok, what = tr.check(n_steps)
            print(f"temporal sanity check: {'ok' if ok else 'FAILED'}: {what}")
            tr_missing = None if ok else "not measured: the sanity check failed"
        head = (f"{'replayer':<36}{'histories':>10}{'events/h':>9}{'bytes/h':>9}{'hist/s':>9}"
                f"{'events/s':>10}{'CPU s':>8}{'wall s':>8}")
        print(head)
        print("-" * len(head))
        rows: dict[str, float] = {}

        def row(label: str, n: int, events: int, nbytes: Optional[int], cpu: float, wall: float,
                key: str) -> None:
            rows[key] = n / cpu
            rate = f"{n / cpu:.0f}" if n / cpu >= 100 else f"{n / cpu:.1f}"
            print(f"{label:<36}{n:>10}{events:>9}{(str(nbytes) if nbytes else '-'):>9}{rate:>9}"
                  f"{fmt_rate(n * events, cpu):>10}{cpu:>8.2f}{wall:>8.2f}")
            sys.stdout.flush()

        def timed(fn: Callable[[], Any], repeats: int = repeats) -> tuple[Any, float, float]:
            """(result, CPU s, wall s) of the run with the least CPU time."""
            best: tuple[Any, float, float] = (None, float("inf"), float("inf"))
            for _ in range(repeats):
                w, c = time.perf_counter(), time.process_time()
                out = fn()
                c, w = time.process_time() - c, time.perf_counter() - w
                if c < best[1]:
                    best = (out, c, w)
            return best

        rep, cpu, wall = timed(lambda: replay(store=url, registry=reg))
        assert rep.ok and len(rep.results) == count, rep.summary()
        assert all(r.events == seeded["events"] and not r.notes for r in rep.results)
        row("durable_core replay(store=sqlite)", count, seeded["events"],
            seeded["bytes"] // count, cpu, wall, "store")

        # the same histories as event lists (decoded once, outside the timing)
        from durable_core.backends import open_backend
        from durable_core.store import Store

        b = open_backend(url, create=False)
        try:
            events = Store(b).history("chain-000000") or []
            lists = []
            for k in range(count):  # each its own ExecutionStarted; the other events shared
                got = b.load_history(f"chain-{k:06d}")
                assert got is not None
                lists.append([events[0], h.decode_records(got.chunks[0])[1]] + events[2:])
        finally:
            b.close()
        rep, cpu, wall = timed(lambda: replay(lists, registry=reg))
        assert rep.ok and len(rep.results) == count, rep.summary()
        assert len({r.instance_id for r in rep.results}) == count
        row("durable_core replay(event lists)", count, len(events), None, cpu, wall, "lists")
        del lists

        if tr is None or tr_missing:
            print(f"{'temporal Replayer':<36}  ({tr_missing})")
            return
        hs = tr.histories(n_steps, temporal_count)
        nb = len(tr.History(events=hs[0].events).SerializeToString())
        for sandboxed, label in ((True, "temporal Replayer (default sandbox)"),
                                 (False, "temporal Replayer (unsandboxed)")):
            rp = tr.replayer(sandboxed)
            fails, cpu, wall = timed(lambda: tr.replay_all(rp, hs), 1)
            assert not fails, next(iter(fails.values()))
            row(label, temporal_count, len(hs[0].events), nb, cpu, wall,
                "tsb" if sandboxed else "tun")
        if temporal_count < count:
            print(f"(Temporal on {temporal_count} histories, ours on {count}: rates are per history)")
        print("(CPU s: process CPU time, all threads; ours best of the runs, Temporal one "
              "replay_workflows call per row, its replay worker's start included)")
        for key, label in (("store", "replay(store=sqlite)"), ("lists", "replay(event lists)")):
            print(f"{label} vs Temporal Replayer: {rows[key] / rows['tsb']:.0f}x (default sandbox), "
                  f"{rows[key] / rows['tun']:.0f}x (unsandboxed) histories/s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--batch-seconds", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stored", type=int, default=10_000,
                    help="stored histories replayed by durable_core.testing.replay (0: skip)")
    ap.add_argument("--stored-steps", type=int, default=100, help="steps of each stored history")
    ap.add_argument("--temporal", type=int, default=200,
                    help="histories replayed by Temporal's Replayer (it is slow: a few per second)")
    ap.add_argument("--tables", default="engine,sticky,stored",
                    help="which tables to print (comma-separated)")
    ap.add_argument("--quick", action="store_true", help="small budget (smoke test)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tables = set(args.tables.split(","))
    if args.quick:
        args.batch_seconds, args.repeats = 0.01, 1
        args.stored, args.temporal = min(args.stored, 200), min(args.temporal, 5)
    print(f"durable_core replay benchmark (Python {sys.version.split()[0]}, "
          f"C extension: {'yes' if 'c' in executors() else 'no'}, {os.cpu_count()} CPUs, "
          f"{load_average()})")
    goals = replay_table(sizes, args.batch_seconds, args.repeats) if "engine" in tables else {}
    if "sticky" in tables:
        sticky_table(sizes, 200 if not args.quick else 20, args.repeats)
    if "stored" in tables and args.stored > 0:
        stored_table(args.stored, args.stored_steps, args.temporal, 1 if args.quick else 2)
    if goals.get("c"):
        print()
        for key, label in (("py", "the twin"), ("dt", "durabletask")):
            if goals.get(key):
                ratio = goals[key] / goals["c"]
                verdict = "met" if ratio >= 10 else "MISSED"
                print(f"goal: C >= 10x {label} on the 1,000-step chain: {ratio:.1f}x ({verdict})")
    print(f"at the end: {load_average()}")


if __name__ == "__main__":
    main()
