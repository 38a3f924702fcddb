"""Fuzz target for the history codec: the C decoder and the pure-Python twin must agree.

For every input both implementations decode it (strict and lenient, with and without the
header); they must return the same events (same classes) or raise HistoryCorruptError with the
same message, offset and torn_tail. Any other exception, or a disagreement, is a finding.
When decoding succeeds the events are re-encoded by both, which must give the same bytes and
decode back to the same events.

Seeds cover every event type (PatchMarker too) and records with and without their trailing
fields (fields added to an event later, which a record may end before).

The first input byte picks a mode: even = the rest is decoded as it is; odd = the rest is cut
into chunks that are wrapped as records with a valid length and checksum, so the fuzzer reaches
the field parsers instead of stopping at the checksum.

Run with atheris (``pip install atheris``; libFuzzer flags pass through):
    python tests/fuzz/fuzz_codec.py -max_total_time=30
or, without atheris, as a plain random mutation loop:
    python tests/fuzz/fuzz_codec.py --seconds 30 [--seed N]
Exits non-zero on a finding (the plain loop prints the input as hex and writes it to
``fuzz-finding-*.bin``).
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

try:
    import atheris
except ImportError:  # pragma: no cover - optional
    atheris = None

if __name__ == "__main__" and atheris is not None and "--seconds" not in sys.argv:
    with atheris.instrument_imports(include=["durable_core"]):
        from durable_core import _codec_py, _impl
        from durable_core import history as h
        from durable_core.errors import HistoryCorruptError
else:
    from durable_core import _codec_py, _impl
    from durable_core import history as h
    from durable_core.errors import HistoryCorruptError

NAMES = ("encode", "encode_records", "decode", "decode_records")
IMPLS = {n: _impl.implementations(n, "durable_core._codec_py") for n in NAMES}
if "c" not in IMPLS["decode"]:
    sys.exit("fuzz_codec: the C extension is not built")
C = {n: IMPLS[n]["c"] for n in NAMES}
PY = {n: IMPLS[n]["py"] for n in NAMES}


class Finding(AssertionError):
    """C and the twin disagree, or something other than HistoryCorruptError escaped."""


def _shape(x: Any) -> Any:
    if isinstance(x, tuple):
        return (type(x), tuple(_shape(v) for v in x))
    if isinstance(x, dict):
        return (dict, tuple((_shape(k), _shape(v)) for k, v in x.items()))
    return (type(x), x)


def _run(fn: Callable[..., Any], data: bytes, **kw: Any) -> Any:
    try:
        return ("ok", _shape(fn(data, **kw)), fn(data, **kw))
    except HistoryCorruptError as exc:
        if not isinstance(exc.offset, int) or not 0 <= exc.offset <= max(len(data), 0):
            raise Finding(f"bad offset {exc.offset!r} for {len(data)} bytes") from exc
        return ("corrupt", str(exc), exc.offset, exc.torn_tail)


def frame(body: bytes) -> bytes:
    rec = bytearray()
    _codec_py._put_varint(rec, len(body))
    rec += body
    return bytes(rec) + _codec_py._masked_crc(bytes(rec)).to_bytes(4, "little")


def structured(data: bytes) -> bytes:
    """Cut ``data`` into record bodies (each preceded by a length byte) with valid checksums."""
    out = bytearray(_codec_py.HEADER)
    pos = 0
    while pos < len(data):
        n = data[pos] % 48 + 1
        body = data[pos + 1 : pos + 1 + n]
        pos += 1 + n
        if body:
            out += frame(body)
    return bytes(out)


def check(data: bytes) -> None:
    if data and data[0] & 1:
        data = structured(data[1:])
    elif data:
        data = data[1:]
    for name in ("decode", "decode_records"):
        for lenient in (False, True):
            a = _run(C[name], data, lenient=lenient)
            b = _run(PY[name], data, lenient=lenient)
            if a[:2] != b[:2]:
                raise Finding(f"{name}(lenient={lenient}) differs: C={a[:2]!r} twin={b[:2]!r}")
            if a[0] == "ok":
                events = a[2]
                enc_c, enc_py = C["encode"](events), PY["encode"](events)
                if enc_c != enc_py:
                    raise Finding("re-encoding differs between C and the twin")
                if _shape(C["decode"](enc_c)) != a[1]:
                    raise Finding("decode(encode(events)) != events")


def seeds() -> list[bytes]:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from codec_strategies import activity_chain, sample_history

    hist = sample_history()
    out = [b"\x00" + C["encode"](hist), b"\x00" + C["encode"](activity_chain(3)),
           b"\x00" + C["encode"](hist[:3]) + C["encode_records"](hist[3:])]
    # records with and without their trailing fields (added later), and a PatchMarker
    extra = [h.ExecutionStarted(-1, 1, "n", "i"), h.ExecutionStarted(-1, 1, "n", "i",
                                                                      trace_context="00-a-b-01"),
             h.SubOrchestrationInstanceCreated(0, 2, "kid", "i:0", None),
             h.SubOrchestrationInstanceCreated(0, 2, "kid", "i:0", b"1", "v2"),
             h.PatchMarker(-1, 3, "patch")]
    out.append(b"\x00" + C["encode"](extra))
    for ev in hist + extra:
        rec = C["encode_records"]([ev])
        out.append(b"\x01" + bytes([len(rec) - 5]) + rec[1:-4])
        # the same body with a present-but-None field appended
        out.append(b"\x01" + bytes([len(rec) - 4]) + rec[1:-4] + b"\x00")
    return out


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(7)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op == 3:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif op == 4 and len(buf) > 2:
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randrange(1, 8)]
        elif op == 5:
            other = rng.choice(pool)
            i, j = rng.randrange(len(buf) + 1), rng.randrange(len(other) + 1)
            buf = buf[:i] + other[j:]
        elif buf:
            i = rng.randrange(len(buf))
            buf[i] = (buf[i] + rng.choice((-1, 1))) & 0xFF
    return bytes(buf)


def plain_loop(seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    pool = seeds()
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = mutate(rng, rng.choice(pool), pool)
        try:
            check(data)
        except Exception as exc:  # a finding: report and keep the input
            path = f"fuzz-finding-{seed}-{runs}.bin"
            with open(path, "wb") as f:
                f.write(data)
            print(f"FINDING after {runs} runs: {type(exc).__name__}: {exc}", file=sys.stderr)
            print(f"input ({len(data)} bytes, saved to {path}): {data.hex()}", file=sys.stderr)
            return 1
        runs += 1
        if runs % 64 == 0 and len(pool) < 512:
            pool.append(data)
    print(f"fuzz_codec: {runs} inputs in {seconds:.0f}s, no finding (seed {seed})")
    return 0


def main() -> int:
    if "--seconds" in sys.argv or atheris is None:
        seconds = 30.0
        seed = int.from_bytes(os.urandom(4), "little")
        args = sys.argv[1:]
        if "--seconds" in args:
            seconds = float(args[args.index("--seconds") + 1])
        if "--seed" in args:
            seed = int(args[args.index("--seed") + 1])
        return plain_loop(seconds, seed)
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".fuzz-corpus")
    os.makedirs(corpus, exist_ok=True)
    for i, s in enumerate(seeds()):
        path = os.path.join(corpus, f"seed-{i}")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(s)
    argv = sys.argv + ([corpus] if not any(not a.startswith("-") for a in sys.argv[1:]) else [])
    atheris.Setup(argv, check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
