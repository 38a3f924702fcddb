"""Benchmark the history codec against the pure-Python twin, stdlib json and protobuf.

The history is a realistic one: an orchestration that runs a chain of 1,000 activities with
100-byte JSON payloads (per step TaskScheduled + TaskCompleted inside OrchestratorStarted /
OrchestratorCompleted episodes, plus ExecutionStarted / ExecutionCompleted): 4,004 events.

Rows:
  C codec          durable_core._core encode / decode (events <-> bytes).
  Python twin      durable_core._codec_py, the same format in pure Python.
  json             stdlib json.dumps / json.loads of the events as dicts (payloads as text);
                   decode yields dicts, not event objects.
  protobuf         the durabletask package's HistoryEvent messages (pip install durabletask):
                   SerializeToString / FromString of an OrchestratorRequest holding the
                   events in pastEvents. Encode starts from messages already built; decode
                   only parses (upb builds Python objects lazily, on field access).
  protobuf+access  FromString, then reading every field of every event into Python values,
                   which is what a replay needs and what the other rows' decode includes.

Run: python benchmarks/codec.py [--steps 1000] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

from durable_core import _impl
from durable_core import history as h

T0 = 1_700_000_000_000_000


def payload(i: int) -> bytes:
    """A 100-byte JSON document."""
    doc = json.dumps({"order": i, "status": "ok", "items": [1, 2, 3], "note": ""})
    pad = 100 - len(doc)
    return json.dumps(
        {"order": i, "status": "ok", "items": [1, 2, 3], "note": "x" * pad}
    ).encode()


def build_history(steps: int) -> list[Any]:
    t = T0
    evs: list[Any] = [
        h.OrchestratorStarted(-1, t),
        h.ExecutionStarted(-1, t + 1, "process_orders", "8f2c1e0a4b7d4c1e9a0b3c5d7e9f1a2b",
                           payload(-1)),
    ]
    for i in range(steps):
        evs.append(h.TaskScheduled(i, t + 120, "process_order", payload(i)))
        evs.append(h.OrchestratorCompleted(-1, t + 180))
        t += 35_000 + (i * 7919) % 20_000  # activity latency, a few tens of ms
        evs.append(h.OrchestratorStarted(-1, t))
        evs.append(h.TaskCompleted(-1, t + 15, i, payload(i)))
    evs.append(h.ExecutionCompleted(-1, t + 200, 1, payload(steps), None))
    evs.append(h.OrchestratorCompleted(-1, t + 230))
    return evs


def as_dict(ev: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"type": type(ev).__name__}
    for k, v in zip(ev._fields, ev):
        d[k] = v.decode() if isinstance(v, bytes) else v
    return d


def bench(fn: Callable[[], Any], seconds: float) -> float:
    """Best time of one call over repeated batches lasting about ``seconds`` in total."""
    fn()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt > 0.05:
            break
        n *= 2
    best = dt / n
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def protobuf_rows(events: list[Any], seconds: float) -> list[tuple[str, float, float, int]]:
    try:
        from durabletask.internal import orchestrator_service_pb2 as pb
        from google.protobuf import timestamp_pb2, wrappers_pb2
    except ImportError:
        return []

    def ts(us: int) -> Any:
        return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)

    def sv(b: bytes | None) -> Any:
        return None if b is None else wrappers_pb2.StringValue(value=b.decode())

    msgs = []
    for ev in events:
        m = pb.HistoryEvent(eventId=ev.event_id, timestamp=ts(ev.timestamp))
        if isinstance(ev, h.ExecutionStarted):
            m.executionStarted.CopyFrom(pb.ExecutionStartedEvent(
                name=ev.name, input=sv(ev.input),
                orchestrationInstance=pb.OrchestrationInstance(instanceId=ev.instance_id)))
        elif isinstance(ev, h.ExecutionCompleted):
            m.executionCompleted.CopyFrom(pb.ExecutionCompletedEvent(
                orchestrationStatus=ev.status, result=sv(ev.result)))
        elif isinstance(ev, h.TaskScheduled):
            m.taskScheduled.CopyFrom(pb.TaskScheduledEvent(name=ev.name, input=sv(ev.input)))
        elif isinstance(ev, h.TaskCompleted):
            m.taskCompleted.CopyFrom(pb.TaskCompletedEvent(
                taskScheduledId=ev.task_scheduled_id, result=sv(ev.result)))
        elif isinstance(ev, h.OrchestratorStarted):
            m.orchestratorStarted.SetInParent()
        elif isinstance(ev, h.OrchestratorCompleted):
            m.orchestratorCompleted.SetInParent()
        msgs.append(m)
    req = pb.OrchestratorRequest(instanceId="8f2c1e0a4b7d4c1e9a0b3c5d7e9f1a2b", pastEvents=msgs)
    data = req.SerializeToString()
    parsed = pb.OrchestratorRequest.FromString(data)
    assert len(parsed.pastEvents) == len(events)

    def access() -> list[Any]:
        out = []
        for e in pb.OrchestratorRequest.FromString(data).pastEvents:
            kind = e.WhichOneof("eventType")
            sub = getattr(e, kind)
            row = [e.eventId, e.timestamp.seconds * 1_000_000 + e.timestamp.nanos // 1000]
            for fd, v in sub.ListFields():
                if fd.message_type is not None and fd.message_type.name == "StringValue":
                    v = v.value.encode()
                row.append(v)
            out.append(row)
        return out

    enc = bench(req.SerializeToString, seconds)
    dec = bench(lambda: pb.OrchestratorRequest.FromString(data), seconds)
    acc = bench(access, seconds)
    return [("protobuf (upb)", enc, dec, len(data)), ("protobuf+access", enc, acc, len(data))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=0.5, help="timing budget per measurement")
    args = ap.parse_args()
    events = build_history(args.steps)
    n = len(events)

    rows: list[tuple[str, float, float, int]] = []
    impls = {k: _impl.implementations(k, "durable_core._codec_py") for k in ("encode", "decode")}
    for key, label in (("c", "C codec"), ("py", "Python twin")):
        if key not in impls["encode"]:
            continue
        enc, dec = impls["encode"][key], impls["decode"][key]
        data = enc(events)
        assert dec(data) == events
        budget = args.seconds if key == "c" else min(args.seconds, 0.3)
        rows.append((label, bench(lambda: enc(events), budget),
                     bench(lambda: dec(data), budget), len(data)))

    dicts = [as_dict(e) for e in events]
    jdata = json.dumps(dicts).encode()
    rows.append(("json (dicts)", bench(lambda: json.dumps(dicts).encode(), args.seconds),
                 bench(lambda: json.loads(jdata), args.seconds), len(jdata)))
    rows.extend(protobuf_rows(events, args.seconds))

    print(f"history: {n} events ({args.steps}-step activity chain, 100-byte JSON payloads); "
          f"implementation in use: {_impl.IMPLEMENTATION}")
    print(f"{'format':<18}{'encode ev/s':>14}{'decode ev/s':>14}{'bytes/event':>13}"
          f"{'encode ms':>11}{'decode ms':>11}")
    for label, enc_t, dec_t, size in rows:
        print(f"{label:<18}{n / enc_t:>14,.0f}{n / dec_t:>14,.0f}{size / n:>13.1f}"
              f"{enc_t * 1e3:>11.3f}{dec_t * 1e3:>11.3f}")
    by = {r[0]: r for r in rows}
    if "C codec" in by and "Python twin" in by:
        print(f"C decode vs twin: {by['Python twin'][2] / by['C codec'][2]:.1f}x; "
              f"encode: {by['Python twin'][1] / by['C codec'][1]:.1f}x")
    if "C codec" in by and "protobuf (upb)" in by:
        c, p, pa = by["C codec"], by["protobuf (upb)"], by["protobuf+access"]
        print(f"C decode vs protobuf parse: {p[2] / c[2]:.2f}x; vs parse+access: "
              f"{pa[2] / c[2]:.2f}x; encode vs protobuf serialize: {p[1] / c[1]:.2f}x; "
              f"size vs protobuf: {c[3] / p[3]:.3f}")


if __name__ == "__main__":
    main()
