"""History codec: damaged input always raises HistoryCorruptError (never a crash or a
partial result), torn tails are told apart from damage, lenient mode keeps the intact prefix."""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from codec_strategies import T0, activity_chain, sample_history  # noqa: E402
from test_codec import CI, C_IMPL, PI, codec, needs_c, same  # noqa: E402

from durable_core import _codec_py  # noqa: E402
from durable_core import history as h  # noqa: E402
from durable_core.errors import HistoryCorruptError  # noqa: E402


def outcome(fn: Any, data: bytes, **kw: Any) -> Any:
    try:
        return ("ok", fn(data, **kw))
    except HistoryCorruptError as exc:
        return ("corrupt", str(exc), exc.offset, exc.torn_tail)


def boundaries(c: Any, events: list[Any]) -> list[int]:
    """Offsets where each record ends, i.e. the lengths of the valid prefixes."""
    data = c.encode(events)
    out = [4]
    pos = 4
    while pos < len(data):
        length, shift, start = 0, 0, pos
        while True:
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        pos += length + 4
        assert pos > start
        out.append(pos)
    assert len(out) == len(events) + 1
    return out


SAMPLES = {
    "sample": sample_history(),
    "chain": activity_chain(3, b'{"k": "v"}'),
}


@codec
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_bit_flip_is_detected(c: Any, name: str) -> None:
    data = c.encode(SAMPLES[name])
    for bit in range(len(data) * 8):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(HistoryCorruptError) as info:
            c.decode(bytes(bad))
        exc = info.value
        assert 0 <= exc.offset < len(data)
        assert f"offset {exc.offset}" in str(exc) or exc.offset == 0
        if bit >= 32 and not exc.torn_tail:
            assert exc.offset >= 4


@codec
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation(c: Any, name: str) -> None:
    events = SAMPLES[name]
    data = c.encode(events)
    ends = boundaries(c, events)
    assert ends[-1] == len(data)
    for n in range(len(data)):
        cut = data[:n]
        if n in ends:
            # a cut at a record boundary is a valid, shorter history
            k = ends.index(n)
            assert same(c.decode(cut), events[:k])
            assert same(c.decode(cut, lenient=True), events[:k])
            continue
        with pytest.raises(HistoryCorruptError) as info:
            c.decode(cut)
        assert info.value.torn_tail is True
        k = max(i for i, e in enumerate(ends) if e <= n) if n >= 4 else 0
        assert info.value.offset == (ends[k] if n >= 4 else 0)
        assert same(c.decode(cut, lenient=True), events[:k])


@codec
def test_torn_append_keeps_the_old_events(c: Any) -> None:
    old = sample_history()
    new = activity_chain(2)
    data = c.encode(old) + c.encode_records(new)[:-3]
    assert same(c.decode(data, lenient=True), old + new[:-1])
    with pytest.raises(HistoryCorruptError) as info:
        c.decode(data)
    assert info.value.torn_tail
    recs = c.encode_records(new)
    assert same(c.decode_records(recs[:-1], lenient=True), new[:-1])


@codec
def test_damage_in_the_middle_is_not_a_torn_tail(c: Any) -> None:
    events = sample_history()
    data = bytearray(c.encode(events))
    ends = boundaries(c, events)
    data[ends[3] + 2] ^= 0x40  # inside the 4th record's body
    for lenient in (False, True):
        with pytest.raises(HistoryCorruptError) as info:
            c.decode(bytes(data), lenient=lenient)
        assert info.value.torn_tail is False
        assert info.value.offset == ends[3]
        assert str(info.value) == f"record at offset {ends[3]}: checksum mismatch"


@codec
@pytest.mark.parametrize(
    "data,message,torn",
    [
        (b"", "header: truncated header", True),
        (b"DC", "header: truncated header", True),
        (b"XYZ", "header: not a durable_core history (bad magic)", False),
        (b"XYZ\x01", "header: not a durable_core history (bad magic)", False),
        (b"DCH\x02", "header: unsupported history format version 2", False),
        (b'{"events": []}', "header: not a durable_core history (bad magic)", False),
    ],
)
def test_bad_header(c: Any, data: bytes, message: str, torn: bool) -> None:
    with pytest.raises(HistoryCorruptError) as info:
        c.decode(data)
    assert (str(info.value), info.value.offset, info.value.torn_tail) == (message, 0, torn)
    if torn:
        assert c.decode(data, lenient=True) == []
    else:
        with pytest.raises(HistoryCorruptError):
            c.decode(data, lenient=True)


def varint(v: int) -> bytes:
    out = bytearray()
    _codec_py._put_varint(out, v)
    return bytes(out)


def frame(body: bytes) -> bytes:
    """A record around ``body`` with a correct length and checksum (to reach field checks)."""
    rec = varint(len(body)) + body
    return rec + _codec_py._masked_crc(rec).to_bytes(4, "little")


GOOD = frame(bytes([0x87, 1, 0]))  # OrchestratorStarted(-1, 0), absolute
# ExecutionStarted(-1, 0, "a", "b") up to execution_id, as records were before trace_context
STARTED = bytes([0x81, 1, 0, 2, 0x61, 2, 0x62, 0, 0, 0, 1, 0, 0, 0])
E = "record at offset 4: "
S = "record at offset 12: "  # after GOOD (8 bytes)

FIELD_CASES = [
    (frame(bytes([0x80, 0, 0])), E + "unknown event type 0"),
    (frame(bytes([0x94, 0, 0])), E + "unknown event type 20"),
    (frame(bytes([0xC7, 0, 0])), E + "unknown event type 71"),
    (frame(bytes([0x07, 0, 0])), E + "relative timestamp without a preceding record"),
    (frame(bytes([0x87, 1, 0, 0])), E + "1 trailing bytes in the record"),
    (frame(bytes([0x87, 1])), E + "OrchestratorStarted.timestamp runs past the end of the record"),
    (frame(bytes([0x87])), E + "OrchestratorStarted.event_id runs past the end of the record"),
    (frame(bytes([0x87, 1, 0x80])),
     E + "OrchestratorStarted.timestamp runs past the end of the record"),
    (frame(bytes([0x87]) + b"\xff" * 10 + b"\x00" + b"\x00"),
     E + "bad varint in OrchestratorStarted.event_id"),
    (frame(bytes([0x87]) + b"\xff" * 9 + b"\x02" + b"\x00"),
     E + "bad varint in OrchestratorStarted.event_id"),
    (frame(bytes([0x87]) + b"\xff" * 9 + b"\x01" + b"\x00"), None),  # 2**64 - 1 is fine
    (frame(bytes([0x89, 1, 0, 5, 0x61])), E + "TaskScheduled.name runs past the end of the record"),
    (frame(bytes([0x89, 1, 0, 0, 0])), E + "missing required TaskScheduled.name"),
    (frame(bytes([0x89, 1, 0, 3, 0xC3, 0x28, 0])), E + "invalid UTF-8 in TaskScheduled.name"),
    (frame(bytes([0x89, 1, 0, 4, 0xED, 0xA0, 0x80, 0])), E + "invalid UTF-8 in TaskScheduled.name"),
    (frame(bytes([0x89, 1, 0, 2, 0x61, 9, 0x61])),
     E + "TaskScheduled.input runs past the end of the record"),
    (frame(bytes([0x83, 1, 0, 0, 2])), E + "bad bool in ExecutionTerminated.recurse"),
    (frame(bytes([0x8B, 1, 0, 0, 2])), E + "bad presence flag in TaskFailed.failure_details"),
    (frame(bytes([0x8B, 1, 0, 0, 1, 2, 0x45, 1, 0, 0, 2])),
     E + "bad bool in FailureDetails.is_non_retriable"),
    (frame(bytes([0x8B, 1, 0, 0, 1, 2, 0x45, 0, 0, 0, 0])),
     E + "missing required FailureDetails.message"),
    (frame(bytes([0x8B, 1, 0, 0, 1, 2, 0x45, 1, 0, 0, 0])), None),
    (frame(bytes([0x8B, 1, 0, 0]) + bytes([1, 1, 1, 0]) * 33 + bytes([0]) + bytes([0]) * 33),
     E + "FailureDetails nested more than 32 deep"),
    (frame(bytes([0x81, 1, 0, 2, 0x61, 2, 0x62, 0, 0, 0, 1, 0, 2, 5, 0x61])),
     E + "ExecutionStarted.tags runs past the end of the record"),
    (frame(bytes([0x81, 1, 0, 2, 0x61, 2, 0x62, 0, 0, 0, 1, 0, 2, 0, 1, 0])),
     E + "missing required ExecutionStarted.tags"),
    (frame(bytes([0x81, 1, 0, 2, 0x61, 2, 0x62, 0, 0, 0, 1, 0, 2, 1, 1, 0])), None),
    (frame(bytes([0x81, 1, 0, 2, 0x61, 2, 0x62, 0, 0, 0, 1, 2, 0, 0])),
     E + "bad presence flag in ExecutionStarted.scheduled_start_time"),
    # trailing fields: a record may end before them, not inside them or before the others
    (frame(STARTED), None),
    (frame(STARTED + bytes([2, 0x74])), None),
    (frame(STARTED + bytes([0])), None),  # present as None
    (frame(STARTED + bytes([5, 0x74])),
     E + "ExecutionStarted.trace_context runs past the end of the record"),
    (frame(STARTED + bytes([2, 0xFF])), E + "invalid UTF-8 in ExecutionStarted.trace_context"),
    (frame(STARTED + bytes([2, 0x74, 0])), E + "1 trailing bytes in the record"),
    (frame(STARTED[:-1]), E + "ExecutionStarted.execution_id runs past the end of the record"),
    (frame(bytes([0x8C, 1, 0, 2, 0x61, 2, 0x62, 0])), None),
    (frame(bytes([0x8C, 1, 0, 2, 0x61, 2, 0x62, 0, 2, 0x32])), None),
    (frame(bytes([0x8C, 1, 0, 2, 0x61, 2, 0x62, 0, 1, 0x32])), E + "1 trailing bytes in the record"),
    (frame(bytes([0x8C, 1, 0, 2, 0x61, 2, 0x62])),
     E + "SubOrchestrationInstanceCreated.input runs past the end of the record"),
    (frame(bytes([0x93, 1, 0, 2, 0x70])), None),
    (frame(bytes([0x93, 1, 0])), E + "PatchMarker.patch_id runs past the end of the record"),
    (frame(bytes([0x93, 1, 0, 0])), E + "missing required PatchMarker.patch_id"),
    (b"\x00" + b"\x00" * 8, E + "bad record length 0"),
    (varint(2**31) + b"\x00" * 8, E + "bad record length 2147483648"),
    (b"\xff" * 10 + b"\x00", E + "bad record length varint"),
    (b"\xff" * 9 + b"\x02", E + "bad record length varint"),
    (GOOD + frame(bytes([0x07, 1, 0]))[:-1] + b"\x00", S + "checksum mismatch"),
    (GOOD + frame(bytes([0x08, 1, 3])), None),
    (GOOD + frame(bytes([0x99, 1, 0])), S + "unknown event type 25"),
]


@codec
@pytest.mark.parametrize("records,message", FIELD_CASES)
def test_field_level_damage(c: Any, records: bytes, message: str | None) -> None:
    data = b"DCH\x01" + records
    if message is None:
        assert len(c.decode(data)) >= 1
        return
    for lenient in (False, True):
        with pytest.raises(HistoryCorruptError) as info:
            c.decode(data, lenient=lenient)
        assert str(info.value) == message
        assert info.value.torn_tail is False
        assert info.value.offset == int(message.split()[3].rstrip(":"))
    # the same records without the header: offsets move by 4
    with pytest.raises(HistoryCorruptError) as info:
        c.decode_records(records)
    assert info.value.offset == int(message.split()[3].rstrip(":")) - 4


@codec
def test_huge_length_at_the_tail_is_torn(c: Any) -> None:
    data = b"DCH\x01" + GOOD + varint(2**31 - 1) + b"\x09"
    with pytest.raises(HistoryCorruptError) as info:
        c.decode(data)
    assert info.value.torn_tail and info.value.offset == 12
    assert str(info.value) == "record at offset 12: truncated record (needs 2147483656 bytes, 6 left)"
    assert c.decode(data, lenient=True) == [h.OrchestratorStarted(-1, 0)]


@codec
def test_garbage(c: Any) -> None:
    rng = random.Random(1234)
    for i in range(300):
        n = rng.randrange(0, 64)
        junk = bytes(rng.randrange(256) for _ in range(n))
        for data in (junk, b"DCH\x01" + junk):
            try:
                out = c.decode(data)
            except HistoryCorruptError:
                continue
            assert isinstance(out, list)  # only possible for an empty tail
            assert data in (b"DCH\x01",) or out


@needs_c
def test_c_and_twin_agree_on_damage() -> None:
    rng = random.Random(99)
    base = CI.encode(sample_history() + activity_chain(2))
    for _ in range(600):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1:
                del data[rng.randrange(len(data)) :]
            else:
                pos = rng.randrange(len(data) + 1)
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        data = bytes(data)
        for lenient in (False, True):
            a = outcome(CI.decode, data, lenient=lenient)
            b = outcome(PI.decode, data, lenient=lenient)
            if a[0] == "ok":
                assert b[0] == "ok" and same(a[1], b[1])
            else:
                assert a == b


@needs_c
@pytest.mark.parametrize("records,message", FIELD_CASES)
def test_c_and_twin_agree_on_field_damage(records: bytes, message: str | None) -> None:
    data = b"DCH\x01" + records
    a, b = outcome(CI.decode, data), outcome(PI.decode, data)
    assert a[0] == b[0]
    if a[0] == "ok":
        assert same(a[1], b[1])
    else:
        assert a == b


def test_twin_is_checked() -> None:
    assert C_IMPL or PI.decode(PI.encode([h.OrchestratorStarted(-1, T0)]))


@needs_c
@settings(max_examples=150, deadline=None)
@given(bodies=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4),
       type_bytes=st.lists(st.one_of(st.integers(1, 19).map(lambda t: t | 0x80),
                                     st.integers(1, 19), st.integers(0, 255)),
                           min_size=4, max_size=4))
def test_c_and_twin_agree_on_checksummed_garbage(bodies: list[bytes], type_bytes: list[int]) -> None:
    """Records with a valid checksum but arbitrary fields reach the field parsers."""
    data = b"DCH\x01" + b"".join(
        frame(bytes([t]) + body) for t, body in zip(type_bytes, bodies)
    )
    for lenient in (False, True):
        a, b = outcome(CI.decode, data, lenient=lenient), outcome(PI.decode, data, lenient=lenient)
        if a[0] == "ok":
            assert b[0] == "ok" and same(a[1], b[1])
            assert CI.encode(a[1]) == PI.encode(a[1])
        else:
            assert a == b
