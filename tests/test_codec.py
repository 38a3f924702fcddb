"""History codec: round trips, the append property, C-vs-twin agreement, encode errors."""

from __future__ import annotations

import enum
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from codec_strategies import EVENT_LISTS, T0, activity_chain, sample_history  # noqa: E402
from conftest import both  # noqa: E402

from durable_core import _codec_py, _impl  # noqa: E402
from durable_core import history as h  # noqa: E402
from durable_core.errors import HistoryCorruptError  # noqa: E402
from durable_core.status import OrchestrationStatus  # noqa: E402

PY = "durable_core._codec_py"
NAMES = ("encode", "encode_records", "decode", "decode_records", "crc32c")


def _impls() -> list[Any]:
    out = []
    impls = {n: _impl.implementations(n, PY) for n in NAMES}
    for p in both("encode", PY):
        key = p.id
        if p.values[0] is None:
            out.append(pytest.param(None, id=key, marks=p.marks))
        else:
            out.append(pytest.param(
                SimpleNamespace(**{n: impls[n][key] for n in NAMES}), id=key))
    return out


codec = pytest.mark.parametrize("c", _impls())
C_IMPL = "c" in _impl.implementations("encode", PY)
needs_c = pytest.mark.skipif(not C_IMPL, reason="C extension not built")
CI = SimpleNamespace(**{n: _impl.implementations(n, PY).get("c") for n in NAMES})
PI = SimpleNamespace(**{n: _impl.implementations(n, PY)["py"] for n in NAMES})

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: list[Any], b: list[Any]) -> bool:
    """Equal events of equal classes (NamedTuple equality alone ignores the class)."""
    return a == b and [type(x) for x in a] == [type(x) for x in b] and all(
        _deep_types(x) == _deep_types(y) for x, y in zip(a, b)
    )


def _deep_types(x: Any) -> Any:
    if isinstance(x, tuple):
        return (type(x), tuple(_deep_types(v) for v in x))
    if isinstance(x, dict):
        return (dict, tuple((type(k), type(v)) for k, v in x.items()))
    return type(x)


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------


@codec
@FAST
@given(events=EVENT_LISTS)
def test_round_trip(c: Any, events: list[Any]) -> None:
    data = c.encode(events)
    assert data[:4] == b"DCH\x01"
    assert same(c.decode(data), events)
    assert same(c.decode_records(c.encode_records(events)), events)


@codec
@FEWER
@given(a=EVENT_LISTS, b=EVENT_LISTS, d=EVENT_LISTS)
def test_append_property(c: Any, a: list[Any], b: list[Any], d: list[Any]) -> None:
    """encode(a) + encode_records(b) + ... decodes as a + b + ...: appends never rewrite."""
    data = c.encode(a) + c.encode_records(b) + c.encode_records(d)
    assert same(c.decode(data), a + b + d)
    assert same(c.decode_records(c.encode_records(a) + c.encode_records(b)), a + b)
    # the first record of each call carries an absolute timestamp, the others deltas
    assert c.encode_records(b) == c.encode(b)[4:]
    if not b:
        assert c.encode(a) + c.encode_records(b) == c.encode(a + b)


@needs_c
@FAST
@given(events=EVENT_LISTS)
def test_c_and_twin_agree(events: list[Any]) -> None:
    data = PI.encode(events)
    assert CI.encode(events) == data
    assert CI.encode_records(events) == PI.encode_records(events)
    assert same(CI.decode(data), PI.decode(data))
    assert same(CI.decode(data), events)


@codec
def test_sample_history_round_trip(c: Any) -> None:
    events = sample_history()
    data = c.encode(events)
    assert same(c.decode(data), events)
    assert same(c.decode(bytearray(data)), events)
    assert same(c.decode(memoryview(data)), events)
    assert same(c.decode(memoryview(b"xx" + data)[2:]), events)
    chain = activity_chain(50)
    assert same(c.decode(c.encode(chain)), chain)


@codec
def test_empty(c: Any) -> None:
    assert c.encode([]) == b"DCH\x01"
    assert c.encode_records([]) == b""
    assert c.decode(b"DCH\x01") == []
    assert c.decode_records(b"") == []
    assert c.encode(()) == c.encode(iter([]))


def _masked(b: bytes) -> bytes:
    c = _codec_py.crc32c(b)
    m = ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    return m.to_bytes(4, "little")


@codec
def test_golden_bytes(c: Any) -> None:
    """Pin the wire format: a change here breaks every stored history."""
    data = c.encode([h.OrchestratorStarted(-1, 0), h.TaskScheduled(0, 2, "a", None)])
    rec1 = bytes([3, 0x87, 1, 0])  # len 3; type 7 | absolute; zigzag(-1); zigzag(0)
    rec2 = bytes([6, 9, 0, 4, 2, ord("a"), 0])  # type 9; 0; delta +2; "a"; None
    assert data == b"DCH\x01" + rec1 + _masked(rec1) + rec2 + _masked(rec2)
    assert _masked(rec1) == bytes.fromhex("3877ca35")


@codec
def test_crc32c_known_values(c: Any) -> None:
    assert c.crc32c(b"") == 0
    assert c.crc32c(b"123456789") == 0xE3069283
    assert c.crc32c(b"\x00" * 32) == 0x8A9136AA
    data = bytes(range(256)) * 3
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 100, 768):
        for split in (0, 1, 5, n // 2):
            split = min(split, n)
            assert c.crc32c(data[split:n], c.crc32c(data[:split])) == PI.crc32c(data[:n])


@codec
def test_int64_extremes_and_timestamp_wrap(c: Any) -> None:
    lo, hi = -(2**63), 2**63 - 1
    events = [
        h.TimerFired(hi, lo, hi, lo),
        h.TimerCreated(lo, hi, lo),
        h.OrchestratorStarted(0, lo),
        h.OrchestratorStarted(0, hi),
        h.ExecutionStarted(-1, 0, "", "", None, scheduled_start_time=lo),
        h.ExecutionStarted(-1, 0, "", "", None, scheduled_start_time=0, tags={}),
    ]
    assert same(c.decode(c.encode(events)), events)


@codec
def test_none_differs_from_empty(c: Any) -> None:
    a = h.ExecutionStarted(-1, T0, "", "", b"", "", "", -1, None, {}, "")
    b = h.ExecutionStarted(-1, T0, "", "", None, None, None, -1, None, None, None)
    out = c.decode(c.encode([a, b]))
    assert out == [a, b]
    assert out[0].input == b"" and out[1].input is None
    assert out[0].tags == {} and out[1].tags is None


@codec
def test_int_subclass_and_enum_accepted(c: Any) -> None:
    ev = h.ExecutionCompleted(-1, T0, OrchestrationStatus.FAILED, None, None)
    (out,) = c.decode(c.encode([ev]))
    assert out.status == 3 and type(out.status) is int


@codec
def test_unicode_strings(c: Any) -> None:
    ev = h.EventRaised(-1, T0, "名前 🎉 é", "\x00".encode())
    assert same(c.decode(c.encode([ev])), [ev])


@codec
def test_deepest_failure_allowed(c: Any) -> None:
    fd = None
    for i in range(_codec_py.MAX_FAILURE_DEPTH):
        fd = h.FailureDetails("E", str(i), None, fd)
    ev = h.TaskFailed(1, T0, 0, fd)
    assert same(c.decode(c.encode([ev])), [ev])


# --------------------------------------------------------------------------------------------
# encode errors (same exception class and message in both implementations)
# --------------------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = 1


def _deep_failure(n: int) -> h.FailureDetails:
    fd = None
    for i in range(n):
        fd = h.FailureDetails("E", str(i), None, fd)
    assert fd is not None
    return fd


class SubScheduled(h.TaskScheduled):
    __slots__ = ()


ENCODE_ERRORS = [
    ([1], TypeError, "encode: item 0: expected a history event, got int"),
    ([("a",)], TypeError, "encode: item 0: expected a history event, got tuple"),
    ([h.OrchestratorStarted(1, 2), SubScheduled(0, 1, "a", None)], TypeError,
     "encode: item 1: expected a history event, got SubScheduled"),
    ([tuple.__new__(h.TaskScheduled, (1, 2))], TypeError,
     "encode: item 0: TaskScheduled has 2 fields, expected 4"),
    ([h.TaskScheduled("1", T0, "a", None)], TypeError,
     "encode: item 0: TaskScheduled.event_id: expected int, got str"),
    ([h.TaskScheduled(True, T0, "a", None)], TypeError,
     "encode: item 0: TaskScheduled.event_id: expected int, got bool"),
    ([h.TaskScheduled(1, 1.5, "a", None)], TypeError,
     "encode: item 0: TaskScheduled.timestamp: expected int, got float"),
    ([h.TaskScheduled(2**63, T0, "a", None)], OverflowError,
     "encode: item 0: TaskScheduled.event_id: int out of range for int64"),
    ([h.TaskScheduled(1, -(2**63) - 1, "a", None)], OverflowError,
     "encode: item 0: TaskScheduled.timestamp: int out of range for int64"),
    ([h.TaskScheduled(1, T0, None, None)], TypeError,
     "encode: item 0: TaskScheduled.name: expected str, got NoneType"),
    ([h.TaskScheduled(1, T0, b"a", None)], TypeError,
     "encode: item 0: TaskScheduled.name: expected str, got bytes"),
    ([h.TaskScheduled(1, T0, "a\udc80", None)], ValueError,
     "encode: item 0: TaskScheduled.name: str is not encodable as UTF-8 (lone surrogate)"),
    ([h.TaskScheduled(1, T0, "a", "text")], TypeError,
     "encode: item 0: TaskScheduled.input: expected bytes or None, got str"),
    ([h.TaskScheduled(1, T0, "a", bytearray(b"x"))], TypeError,
     "encode: item 0: TaskScheduled.input: expected bytes or None, got bytearray"),
    ([h.ExecutionTerminated(1, T0, None, 1)], TypeError,
     "encode: item 0: ExecutionTerminated.recurse: expected bool, got int"),
    ([h.ExecutionStarted(1, T0, "n", "i", version=3)], TypeError,
     "encode: item 0: ExecutionStarted.version: expected str or None, got int"),
    ([h.ExecutionStarted(1, T0, "n", "i", version="\ud800")], ValueError,
     "encode: item 0: ExecutionStarted.version: str is not encodable as UTF-8 (lone surrogate)"),
    ([h.ExecutionStarted(1, T0, "n", "i", scheduled_start_time="x")], TypeError,
     "encode: item 0: ExecutionStarted.scheduled_start_time: expected int or None, got str"),
    ([h.ExecutionStarted(1, T0, "n", "i", scheduled_start_time=2**64)], OverflowError,
     "encode: item 0: ExecutionStarted.scheduled_start_time: int out of range for int64"),
    ([h.ExecutionStarted(1, T0, "n", "i", tags=[("a", "b")])], TypeError,
     "encode: item 0: ExecutionStarted.tags: expected dict[str, str] or None, got list"),
    ([h.ExecutionStarted(1, T0, "n", "i", tags={"a": 1})], TypeError,
     "encode: item 0: ExecutionStarted.tags: tag keys and values must be str, got int"),
    ([h.ExecutionStarted(1, T0, "n", "i", tags={2: "a"})], TypeError,
     "encode: item 0: ExecutionStarted.tags: tag keys and values must be str, got int"),
    ([h.ExecutionStarted(1, T0, "n", "i", tags={"k": "\udfff"})], ValueError,
     "encode: item 0: ExecutionStarted.tags: str is not encodable as UTF-8 (lone surrogate)"),
    ([h.TaskFailed(1, T0, 0, "boom")], TypeError,
     "encode: item 0: TaskFailed.failure_details: expected FailureDetails or None, got str"),
    ([h.TaskFailed(1, T0, 0, h.FailureDetails("E", 5))], TypeError,
     "encode: item 0: TaskFailed.failure_details.message: expected str, got int"),
    ([h.TaskFailed(1, T0, 0, h.FailureDetails("E", "m", None, None, 0))], TypeError,
     "encode: item 0: TaskFailed.failure_details.is_non_retriable: expected bool, got int"),
    ([h.TaskFailed(1, T0, 0, h.FailureDetails("E", "m", None, ("x",)))], TypeError,
     "encode: item 0: TaskFailed.failure_details.inner_failure: "
     "expected FailureDetails or None, got tuple"),
    ([h.TaskFailed(1, T0, 0, tuple.__new__(h.FailureDetails, ("E",)))], TypeError,
     "encode: item 0: TaskFailed.failure_details: FailureDetails has 1 fields, expected 5"),
    ([h.ExecutionCompleted(1, T0, 1, None, _deep_failure(33))], ValueError,
     "encode: item 0: ExecutionCompleted.failure_details" + ".inner_failure" * 32
     + ": FailureDetails nested more than 32 deep"),
    ([h.ExecutionCompleted(1, T0, Color.RED, None, None)], TypeError,
     "encode: item 0: ExecutionCompleted.status: expected int, got Color"),
    ([h.TimerFired(1, T0, T0, None)], TypeError,
     "encode: item 0: TimerFired.timer_id: expected int, got NoneType"),
    ([h.ExecutionStarted(1, T0, "n", "i", trace_context=5)], TypeError,
     "encode: item 0: ExecutionStarted.trace_context: expected str or None, got int"),
    ([h.ExecutionStarted(1, T0, "n", "i", trace_context="\udc00")], ValueError,
     "encode: item 0: ExecutionStarted.trace_context: str is not encodable as UTF-8 "
     "(lone surrogate)"),
    ([h.SubOrchestrationInstanceCreated(1, T0, "n", "i", None, b"2")], TypeError,
     "encode: item 0: SubOrchestrationInstanceCreated.version: expected str or None, got bytes"),
    ([h.PatchMarker(-1, T0, None)], TypeError,
     "encode: item 0: PatchMarker.patch_id: expected str, got NoneType"),
    ([tuple.__new__(h.ExecutionStarted, (1, T0, "n", "i", None, None, None, -1, None, None,
                                         None))], TypeError,
     "encode: item 0: ExecutionStarted has 11 fields, expected 12"),
]


@codec
@pytest.mark.parametrize("events,exc,message", ENCODE_ERRORS)
def test_encode_errors(c: Any, events: list[Any], exc: type, message: str) -> None:
    for fn in (c.encode, c.encode_records):
        with pytest.raises(exc) as info:
            fn(events)
        assert type(info.value) is exc
        assert str(info.value) == message


@codec
def test_encode_error_names_the_item(c: Any) -> None:
    events = sample_history() + [h.TaskScheduled(9, T0, 7, None)]
    with pytest.raises(TypeError, match=r"^encode: item 19: TaskScheduled\.name: expected str"):
        c.encode(events)


@codec
@pytest.mark.parametrize("arg", [None, 5, object()])
def test_encode_needs_an_iterable(c: Any, arg: Any) -> None:
    with pytest.raises(TypeError, match="encode: events must be an iterable of history events"):
        c.encode(arg)


@codec
def test_encode_accepts_iterables(c: Any) -> None:
    events = sample_history()
    assert c.encode(iter(events)) == c.encode(events) == c.encode(tuple(events))
    assert c.encode(e for e in events) == c.encode(events)


@codec
def test_encode_propagates_iterator_errors(c: Any) -> None:
    def gen() -> Any:
        yield h.OrchestratorStarted(-1, T0)
        raise KeyError("from the generator")

    with pytest.raises(KeyError):
        c.encode(gen())


@codec
@pytest.mark.parametrize("arg", ["text", 3, None, [1, 2]])
def test_decode_needs_bytes_like(c: Any, arg: Any) -> None:
    with pytest.raises(TypeError, match="decode: expected a bytes-like object"):
        c.decode(arg)
    with pytest.raises(TypeError, match="decode: expected a bytes-like object"):
        c.decode_records(arg)


@codec
def test_decode_rejects_non_contiguous_buffer(c: Any) -> None:
    data = c.encode(sample_history())
    with pytest.raises(TypeError, match="contiguous"):
        c.decode(memoryview(data)[::2])


@codec
def test_decode_lenient_is_keyword_only(c: Any) -> None:
    data = c.encode(sample_history())
    with pytest.raises(TypeError):
        c.decode(data, True)
    assert c.decode(data, lenient=True) == sample_history()


def test_history_module_binds_the_codec() -> None:
    """durable_core.history exposes the implementation that _impl picks."""
    want = "c" if _impl.USE_EXTENSIONS else "py"
    for name in ("encode", "encode_records", "decode", "decode_records"):
        assert getattr(h, name) is _impl.implementations(name, PY)[want]
    events = sample_history()
    assert same(h.decode(h.encode(events)), events)


@pytest.mark.parametrize("core", both("_codec_register", PY))
def test_register_validates_classes(core: Any) -> None:
    with pytest.raises(TypeError):
        core(h.EVENT_CLASSES[:-1], h.FailureDetails)
    with pytest.raises(TypeError):
        core(h.EVENT_CLASSES, h.TaskScheduled)
    swapped = (h.EVENT_CLASSES[1], h.EVENT_CLASSES[0]) + h.EVENT_CLASSES[2:]
    with pytest.raises(TypeError):
        core(swapped, h.FailureDetails)
    with pytest.raises(TypeError):
        core((int,) * len(h.EVENT_CLASSES), h.FailureDetails)
    # a failed registration leaves the previous one in place
    core(h.EVENT_CLASSES, h.FailureDetails)
    events = sample_history()
    for impl in (CI, PI) if C_IMPL else (PI,):
        assert same(impl.decode(impl.encode(events)), events)


def test_corrupt_error_is_a_value_error() -> None:
    assert issubclass(HistoryCorruptError, ValueError)


@needs_c
def test_software_and_hardware_crc_agree() -> None:
    """The C table-driven CRC32C and the CPU instruction path (when present) agree."""
    sw = _impl.implementations("_crc32c_sw", PY)
    assert sw["py"](b"123456789") == 0xE3069283
    data = bytes((i * 131 + 7) & 0xFF for i in range(1000))
    for start in range(0, 9):
        for n in (0, 1, 3, 8, 9, 63, 64, 65, 200, 991 - start):
            chunk = data[start : start + n]
            assert sw["c"](chunk) == CI.crc32c(chunk) == PI.crc32c(chunk)
    assert sw["c"](b"123456789") == 0xE3069283


@codec
def test_decoded_events_hash_like_the_originals(c: Any) -> None:
    """Decoded events are usable as dict keys and in sets, like the events they came from."""
    events = [e for e in sample_history() if not isinstance(e, h.ExecutionStarted)]  # tags dict
    out = c.decode(c.encode(events))
    assert [hash(e) for e in out] == [hash(e) for e in events]
    assert set(out) == set(events)
    fd = out[-1].failure_details
    assert hash(fd) == hash(events[-1].failure_details)


@codec
def test_trailing_fields_at_their_defaults_are_not_written(c: Any) -> None:
    """An event that leaves its later-added fields at None has the bytes it had before them."""
    plain = h.ExecutionStarted(-1, T0, "flow", "i", None, "1", execution_id="e")
    traced = plain._replace(trace_context="00-abc-def-01")
    a, b = c.encode([plain]), c.encode([traced])
    assert len(b) == len(a) + 1 + len("00-abc-def-01")  # one str field more, at the end
    assert same(c.decode(a), [plain]) and same(c.decode(b), [traced])
    sub = h.SubOrchestrationInstanceCreated(0, T0, "kid", "i:0000", b"1")
    assert c.encode([sub]) == c.encode([sub._replace(version=None)])
    assert same(c.decode(c.encode([sub._replace(version="")])), [sub._replace(version="")])
    assert c.encode([sub._replace(version="")]) != c.encode([sub])  # "" is not None


@codec
def test_a_trailing_field_written_as_none_decodes(c: Any) -> None:
    """A present-but-None trailing field (its 0 byte) is accepted; the encoder omits it."""
    sub = h.SubOrchestrationInstanceCreated(0, T0, "kid", "i", None)
    rec = c.encode_records([sub])
    body = rec[1:-4] + b"\x00"  # one more byte: version present, None
    framed = bytes([len(body)]) + body
    framed += _masked(framed)
    assert same(c.decode_records(framed), [sub])
    assert c.encode_records(c.decode_records(framed)) == rec


def test_trailing_fields_are_optional_with_default_none() -> None:
    """The rule the format relies on, checked for every trailing field the schema lists."""
    by_tag = {cls.EVENT_TYPE: cls for cls in h.EVENT_CLASSES}  # type: ignore[attr-defined]
    assert _codec_py._TRAILING == {1: 11, 12: 5}
    for tag, base in _codec_py._TRAILING.items():
        cls = by_tag[tag]
        for name in cls._fields[base:]:
            assert cls._field_defaults[name] is None
