"""Binary history codec, pure-Python reference implementation (the C twin must match it).

This docstring is the specification of the format; ``csrc/codec.c`` implements the same
format, the same checks in the same order and the same error messages.

Layout
======

A *history* is a 4-byte header followed by zero or more *records*, one per event::

    history  = header record*
    header   = "DCH" version          (4 bytes; version = 0x01)
    record   = length body crc
    length   = varint                 (number of bytes in ``body``, 1 .. 2**31 - 1)
    body     = type field*
    crc      = 4 bytes, little-endian: masked CRC32C of ``length`` + ``body`` (the bytes as
               written, including the length varint)

``encode_records`` produces ``record*`` without the header, so that
``encode(a) + encode_records(b)`` is a valid history holding ``a + b``: a store appends new
events without rewriting (or even reading) the old ones.

Primitives
----------
- *varint*: unsigned LEB128, 7 bits per byte, least significant group first, high bit set on
  every byte but the last; at most 10 bytes, and the 10th byte must be 0 or 1 (values are
  below 2**64). Decoders accept non-minimal encodings; encoders always write minimal ones.
- *zigzag*: a signed 64-bit integer ``v`` is stored as the varint ``(v << 1) ^ (v >> 63)``
  (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...). Every integer field must fit in a signed 64 bits.
- *CRC32C*: the Castagnoli CRC (reflected polynomial 0x82F63B78, initial value and final xor
  0xFFFFFFFF), masked as in LevelDB: ``((crc >> 15) | (crc << 17)) + 0xA282EAD8`` mod 2**32.

Type byte
---------
Bits 0..6 hold the event's ``EVENT_TYPE`` (1 .. 19; anything else is an unknown type).
Bit 7 (0x80) is the *absolute timestamp* flag: set on the first record written by every
``encode`` / ``encode_records`` call and clear on the others.

Fields
------
Fields follow in the order of the event's NamedTuple fields (``event_id`` then
``timestamp`` first for every event). Each field is written according to its kind:

========== ====================================================================================
kind       encoding
========== ====================================================================================
int        zigzag varint.
timestamp  zigzag varint of the timestamp itself when the absolute flag is set, else of the
           difference ``timestamp - previous record's timestamp``, computed modulo 2**64 and
           taken as a signed 64-bit value (so any pair of int64 timestamps round-trips).
           A record without the flag and without a preceding record is corrupt.
time_rel   zigzag varint of ``value - this record's timestamp`` (modulo 2**64, as above);
           used for ``fire_at``, which is usually close to the record's own time.
str        varint ``n + 1`` then ``n`` bytes of UTF-8 (strict: no surrogates). ``0`` would
           mean None, which is corrupt for a required str.
opt_str    as str; varint ``0`` means None (so None and "" differ).
opt_bytes  varint ``n + 1`` then ``n`` raw bytes; ``0`` means None.
bool       one varint, 0 or 1.
opt_int    varint 0 for None; else varint 1 followed by a zigzag varint.
tags       varint 0 for None; else varint ``count + 1`` followed by ``count`` pairs of str
           (key, value), in the dict's iteration order.
opt_failure varint 0 for None; else varint 1 followed by the FailureDetails fields:
           error_type (str), message (str), stack_trace (opt_str), inner_failure
           (opt_failure), is_non_retriable (bool). At most 32 FailureDetails may be nested.
========== ====================================================================================

Field kinds per event (``EVENT_TYPE``: class: fields after event_id:int, timestamp:timestamp;
fields after a ``|`` are *trailing* fields, see below):

 1 ExecutionStarted: name:str, instance_id:str, input:opt_bytes, version:opt_str,
   parent_instance_id:opt_str, parent_task_id:int, scheduled_start_time:opt_int, tags:tags,
   execution_id:opt_str | trace_context:opt_str
 2 ExecutionCompleted: status:int, result:opt_bytes, failure_details:opt_failure
 3 ExecutionTerminated: input:opt_bytes, recurse:bool
 4 ExecutionSuspended, 5 ExecutionResumed, 6 ContinueAsNew: input:opt_bytes
 7 OrchestratorStarted, 8 OrchestratorCompleted: (none)
 9 TaskScheduled: name:str, input:opt_bytes
10 TaskCompleted: task_scheduled_id:int, result:opt_bytes
11 TaskFailed: task_scheduled_id:int, failure_details:opt_failure
12 SubOrchestrationInstanceCreated: name:str, instance_id:str, input:opt_bytes | version:opt_str
13 SubOrchestrationInstanceCompleted: task_scheduled_id:int, result:opt_bytes
14 SubOrchestrationInstanceFailed: task_scheduled_id:int, failure_details:opt_failure
15 TimerCreated: fire_at:time_rel
16 TimerFired: fire_at:time_rel, timer_id:int
17 EventRaised: name:str, input:opt_bytes
18 EventSent: instance_id:str, name:str, input:opt_bytes
19 PatchMarker: patch_id:str

The fields must consume the body exactly: bytes left over are corrupt.

Extending the format
--------------------
Records already stored must keep decoding, and to the same events. So an event never gets a
field anywhere but at its end, and a field added later (a *trailing* field) is optional: its kind
is one whose absent value is ``None`` (opt_str, opt_bytes, opt_int, tags, opt_failure) and its
default is ``None``. A record may end before its trailing fields (after any of them): those not
present decode as ``None``. So a record written before a field existed decodes with the field at
its default, exactly as before.

The encoder writes the trailing fields up to the last one that is not ``None`` and omits the
rest, so an event that leaves them at ``None`` is encoded to exactly the bytes it had before they
existed (a history that does not use them is byte-identical to one written by older versions).
A trailing field present with the value ``None`` (its ``0`` byte) is accepted and decodes as
``None``; the encoder never writes one at the end of a record.

Records written with a trailing field set cannot be read by versions older than that field:
they see bytes left over and report the record as corrupt, as they do for an event type they do
not know (19 for PatchMarker). The header's version stays 1: every history an older version
wrote is still valid.

Decoding and errors
===================
``decode(data)`` reads a whole history; ``decode_records(data)`` reads headerless records (what
``encode_records`` wrote). Both accept any contiguous bytes-like object and return a list of
events (a fresh ``dict`` for tags; ``int``/``str``/``bytes``/``bool``/``None`` values).

Anything wrong raises :class:`durable_core.errors.HistoryCorruptError` (a ``ValueError``) and
never returns a partial result. ``offset`` is the offset of the header (0) or of the start of
the record (its length varint) that failed. ``torn_tail`` is True when the buffer ends inside
the header or inside its last record (the length varint is cut, or the record's
``length + body + crc`` runs past the end): the signature of an interrupted append. Everything
else (bad magic or version, a length of 0 or above 2**31 - 1, a checksum mismatch, an unknown
type, a bad field) is damage, ``torn_tail=False``. Records are checked in order, the checksum
before the fields, the fields in order.

With ``lenient=True`` a torn tail is not an error: decoding stops before the torn record and
returns the events that precede it (for a buffer that ends inside the header, ``[]``). Damage
still raises. A buffer cut exactly at a record boundary is a valid, shorter history in both
modes. (A length varint damaged so that it points past the end is indistinguishable from a
torn tail; lenient mode then drops the records after it, strict mode raises.)

Encoding errors
===============
``encode(events)`` / ``encode_records(events)`` take an iterable of event NamedTuples (the
exact classes of :mod:`durable_core.history`). A wrong type raises ``TypeError`` naming the
item and field (for instance ``encode: item 3: TaskScheduled.name: expected str, got int``);
an int outside int64 raises ``OverflowError``; a str that is not encodable as UTF-8 (a lone
surrogate), FailureDetails nested more than 32 deep, or a record body of 2**31 bytes or more
raise ``ValueError``. Int fields accept ``int`` and its subclasses except ``bool``; bool fields
accept only ``bool``; str fields ``str``; payloads ``bytes``; tags a ``dict`` of str to str.
"""

from __future__ import annotations

from typing import Any, Iterable, List

from .errors import HistoryCorruptError
from .history import EVENT_CLASSES, FailureDetails

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER",
    "MAX_RECORD_SIZE",
    "MAX_FAILURE_DEPTH",
    "encode",
    "encode_records",
    "decode",
    "decode_records",
    "crc32c",
    "_codec_register",
]

MAGIC: bytes = b"DCH"
VERSION: int = 1
HEADER: bytes = MAGIC + bytes([VERSION])
#: Largest record body (type byte + fields) the format allows.
MAX_RECORD_SIZE: int = 2**31 - 1
#: Deepest chain of nested FailureDetails (the top-level one counts as 1).
MAX_FAILURE_DEPTH: int = 32

ABSOLUTE_FLAG = 0x80
_TYPE_MASK = 0x7F

# field kinds
INT, TS, TIME_REL, STR, OPT_STR, OPT_BYTES, BOOL, OPT_INT, TAGS, OPT_FAILURE = range(10)

_M64 = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

# (EVENT_TYPE, class name, ((field, kind), ...)); the C module holds the same table. Trailing
# fields (added later; see "Extending the format") are listed in _TRAILING.
_SCHEMA: tuple[tuple[int, str, tuple[tuple[str, int], ...]], ...] = (
    (1, "ExecutionStarted", (
        ("event_id", INT), ("timestamp", TS), ("name", STR), ("instance_id", STR),
        ("input", OPT_BYTES), ("version", OPT_STR), ("parent_instance_id", OPT_STR),
        ("parent_task_id", INT), ("scheduled_start_time", OPT_INT), ("tags", TAGS),
        ("execution_id", OPT_STR), ("trace_context", OPT_STR))),
    (2, "ExecutionCompleted", (
        ("event_id", INT), ("timestamp", TS), ("status", INT), ("result", OPT_BYTES),
        ("failure_details", OPT_FAILURE))),
    (3, "ExecutionTerminated", (
        ("event_id", INT), ("timestamp", TS), ("input", OPT_BYTES), ("recurse", BOOL))),
    (4, "ExecutionSuspended", (("event_id", INT), ("timestamp", TS), ("input", OPT_BYTES))),
    (5, "ExecutionResumed", (("event_id", INT), ("timestamp", TS), ("input", OPT_BYTES))),
    (6, "ContinueAsNew", (("event_id", INT), ("timestamp", TS), ("input", OPT_BYTES))),
    (7, "OrchestratorStarted", (("event_id", INT), ("timestamp", TS))),
    (8, "OrchestratorCompleted", (("event_id", INT), ("timestamp", TS))),
    (9, "TaskScheduled", (
        ("event_id", INT), ("timestamp", TS), ("name", STR), ("input", OPT_BYTES))),
    (10, "TaskCompleted", (
        ("event_id", INT), ("timestamp", TS), ("task_scheduled_id", INT),
        ("result", OPT_BYTES))),
    (11, "TaskFailed", (
        ("event_id", INT), ("timestamp", TS), ("task_scheduled_id", INT),
        ("failure_details", OPT_FAILURE))),
    (12, "SubOrchestrationInstanceCreated", (
        ("event_id", INT), ("timestamp", TS), ("name", STR), ("instance_id", STR),
        ("input", OPT_BYTES), ("version", OPT_STR))),
    (13, "SubOrchestrationInstanceCompleted", (
        ("event_id", INT), ("timestamp", TS), ("task_scheduled_id", INT),
        ("result", OPT_BYTES))),
    (14, "SubOrchestrationInstanceFailed", (
        ("event_id", INT), ("timestamp", TS), ("task_scheduled_id", INT),
        ("failure_details", OPT_FAILURE))),
    (15, "TimerCreated", (("event_id", INT), ("timestamp", TS), ("fire_at", TIME_REL))),
    (16, "TimerFired", (
        ("event_id", INT), ("timestamp", TS), ("fire_at", TIME_REL), ("timer_id", INT))),
    (17, "EventRaised", (
        ("event_id", INT), ("timestamp", TS), ("name", STR), ("input", OPT_BYTES))),
    (18, "EventSent", (
        ("event_id", INT), ("timestamp", TS), ("instance_id", STR), ("name", STR),
        ("input", OPT_BYTES))),
    (19, "PatchMarker", (("event_id", INT), ("timestamp", TS), ("patch_id", STR))),
)
#: EVENT_TYPE -> how many leading fields every record of that type holds (the rest are
#: trailing fields, added later); types not listed have no trailing fields.
_TRAILING: dict[int, int] = {1: 11, 12: 5}
_NULLABLE = frozenset({OPT_STR, OPT_BYTES, OPT_INT, TAGS, OPT_FAILURE})
_FAILURE_SCHEMA: tuple[tuple[str, int], ...] = (
    ("error_type", STR), ("message", STR), ("stack_trace", OPT_STR),
    ("inner_failure", OPT_FAILURE), ("is_non_retriable", BOOL),
)


def _check_schema() -> None:
    """Refuse to load if the event classes and the codec's table disagree (a renamed field)."""
    if len(EVENT_CLASSES) != len(_SCHEMA):
        raise ImportError("history codec: EVENT_CLASSES does not match the codec schema")
    for cls, (tag, name, fields) in zip(EVENT_CLASSES, _SCHEMA):
        if (cls.__name__, cls.EVENT_TYPE, cls._fields) != (  # type: ignore[attr-defined]
            name, tag, tuple(f for f, _ in fields)
        ):
            raise ImportError(f"history codec: {cls.__name__} does not match the codec schema")
    if FailureDetails._fields != tuple(f for f, _ in _FAILURE_SCHEMA):
        raise ImportError("history codec: FailureDetails does not match the codec schema")
    for cls, (tag, _name, fields) in zip(EVENT_CLASSES, _SCHEMA):
        for fname, kind in fields[_TRAILING.get(tag, len(fields)):]:
            if kind not in _NULLABLE or cls._field_defaults.get(fname, 0) is not None:  # type: ignore[attr-defined]
                raise ImportError(f"history codec: {cls.__name__}.{fname} is a trailing field: "
                                  "it must be optional with the default None")


_check_schema()


def _codec_register(classes: Any, failure_cls: Any) -> None:
    """Interface twin of the C registration hook: check the classes match the schema.

    The C codec keeps the classes it builds; this implementation uses those of
    :mod:`durable_core.history` directly, so it only validates (raising ``TypeError``).
    """
    classes = tuple(classes)
    if len(classes) != len(_SCHEMA):
        raise TypeError(f"_codec_register: expected {len(_SCHEMA)} event classes")
    specs = [(cls, name, tuple(f for f, _ in fields), tag)
             for cls, (tag, name, fields) in zip(classes, _SCHEMA)]
    specs.append((failure_cls, "FailureDetails", tuple(f for f, _ in _FAILURE_SCHEMA), 0))
    for cls, name, fields, tag in specs:
        if not (isinstance(cls, type) and issubclass(cls, tuple)):
            raise TypeError(f"_codec_register: {name} is not a tuple subclass")
        if (
            cls.__name__ != name
            or getattr(cls, "_fields", None) != fields
            or (tag and getattr(cls, "EVENT_TYPE", None) != tag)
        ):
            raise TypeError(f"_codec_register: {cls!r} does not match the codec schema of {name}")

# class -> (type tag, class name, fields, number of leading fields)
_BY_CLASS: dict[type, tuple[int, str, tuple[tuple[str, int], ...], int]] = {
    cls: (*spec, _TRAILING.get(spec[0], len(spec[2]))) for cls, spec in zip(EVENT_CLASSES, _SCHEMA)
}
# type tag -> (class, class name, fields, number of leading fields)
_BY_TAG: dict[int, tuple[type, str, tuple[tuple[str, int], ...], int]] = {
    spec[0]: (cls, spec[1], spec[2], _TRAILING.get(spec[0], len(spec[2])))
    for cls, spec in zip(EVENT_CLASSES, _SCHEMA)
}


# --------------------------------------------------------------------------------------------
# CRC32C
# --------------------------------------------------------------------------------------------


def _make_crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE: list[int] = _make_crc_table()


def _crc32c_sw(data: bytes, crc: int = 0) -> int:
    """Same as :func:`crc32c` (the C module has a second, CPU-instruction path)."""
    return crc32c(data, crc)


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``crc`` (unmasked)."""
    table = _CRC_TABLE
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------


def _put_varint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _wrap64(v: int) -> int:
    """``v`` modulo 2**64 as a signed 64-bit value."""
    return ((v - _I64_MIN) & _M64) + _I64_MIN


def _zigzag(v: int) -> int:
    return ((v << 1) ^ (v >> 63)) & _M64


def _tname(v: object) -> str:
    return type(v).__name__


class _Encoder:
    """State of one ``encode``/``encode_records`` call."""

    __slots__ = ("out", "prev_ts", "ts", "item")

    def __init__(self) -> None:
        self.out = bytearray()
        self.prev_ts: int | None = None
        self.ts = 0  # the current record's timestamp, once its field is read
        self.item = 0

    def _err(self, exc: type[Exception], path: str, msg: str) -> Exception:
        return exc(f"encode: item {self.item}: {path}: {msg}")

    def _int(self, v: Any, path: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._err(TypeError, path, f"expected int, got {_tname(v)}")
        if not _I64_MIN <= v <= _I64_MAX:
            raise self._err(OverflowError, path, "int out of range for int64")
        return int(v)

    def _str(self, body: bytearray, v: Any, path: str, optional: bool) -> None:
        if v is None and optional:
            body.append(0)
            return
        if not isinstance(v, str):
            want = "str or None" if optional else "str"
            raise self._err(TypeError, path, f"expected {want}, got {_tname(v)}")
        try:
            raw = v.encode("utf-8")
        except UnicodeEncodeError:
            raise self._err(
                ValueError, path, "str is not encodable as UTF-8 (lone surrogate)"
            ) from None
        _put_varint(body, len(raw) + 1)
        body += raw

    def _failure(self, body: bytearray, v: Any, path: str, depth: int) -> None:
        if v is None:
            body.append(0)
            return
        if type(v) is not FailureDetails:
            raise self._err(TypeError, path, f"expected FailureDetails or None, got {_tname(v)}")
        if len(v) != len(_FAILURE_SCHEMA):
            raise self._err(TypeError, path, f"FailureDetails has {len(v)} fields, expected 5")
        if depth > MAX_FAILURE_DEPTH:
            raise self._err(
                ValueError, path, f"FailureDetails nested more than {MAX_FAILURE_DEPTH} deep"
            )
        body.append(1)
        self._fields(body, v, _FAILURE_SCHEMA, path, depth)

    def _fields(
        self,
        body: bytearray,
        values: tuple,
        fields: tuple[tuple[str, int], ...],
        prefix: str,
        depth: int,
    ) -> None:
        for (fname, kind), v in zip(fields, values):
            path = f"{prefix}.{fname}"
            if kind == INT:
                _put_varint(body, _zigzag(self._int(v, path)))
            elif kind == TS:
                self.ts = v = self._int(v, path)
                if self.prev_ts is None:
                    _put_varint(body, _zigzag(v))
                else:
                    _put_varint(body, _zigzag(_wrap64(v - self.prev_ts)))
            elif kind == TIME_REL:
                _put_varint(body, _zigzag(_wrap64(self._int(v, path) - self.ts)))
            elif kind == STR:
                self._str(body, v, path, False)
            elif kind == OPT_STR:
                self._str(body, v, path, True)
            elif kind == OPT_BYTES:
                if v is None:
                    body.append(0)
                elif isinstance(v, bytes):
                    _put_varint(body, len(v) + 1)
                    body += v
                else:
                    raise self._err(TypeError, path, f"expected bytes or None, got {_tname(v)}")
            elif kind == BOOL:
                if not isinstance(v, bool):
                    raise self._err(TypeError, path, f"expected bool, got {_tname(v)}")
                body.append(1 if v else 0)
            elif kind == OPT_INT:
                if v is None:
                    body.append(0)
                else:
                    if not isinstance(v, int) or isinstance(v, bool):
                        raise self._err(TypeError, path, f"expected int or None, got {_tname(v)}")
                    v = self._int(v, path)
                    body.append(1)
                    _put_varint(body, _zigzag(v))
            elif kind == TAGS:
                if v is None:
                    body.append(0)
                    continue
                if not isinstance(v, dict):
                    raise self._err(
                        TypeError, path, f"expected dict[str, str] or None, got {_tname(v)}"
                    )
                _put_varint(body, len(v) + 1)
                for k, val in dict.items(v):
                    for x in (k, val):
                        if not isinstance(x, str):
                            raise self._err(
                                TypeError, path, f"tag keys and values must be str, got {_tname(x)}"
                            )
                        self._str(body, x, path, False)
            else:  # OPT_FAILURE
                self._failure(body, v, path, depth + 1)

    def event(self, ev: Any) -> None:
        spec = _BY_CLASS.get(type(ev))
        if spec is None:
            raise TypeError(f"encode: item {self.item}: expected a history event, got {_tname(ev)}")
        tag, name, fields, nbase = spec
        if len(ev) != len(fields):
            raise TypeError(
                f"encode: item {self.item}: {name} has {len(ev)} fields, expected {len(fields)}"
            )
        n = len(fields)  # trailing fields left at None are not written
        while n > nbase and ev[n - 1] is None:
            n -= 1
        body = bytearray((tag | (ABSOLUTE_FLAG if self.prev_ts is None else 0),))
        self._fields(body, ev[:n], fields[:n], name, 0)
        if len(body) > MAX_RECORD_SIZE:
            raise ValueError(
                f"encode: item {self.item}: {name} record is too large ({len(body)} bytes)"
            )
        rec = bytearray()
        _put_varint(rec, len(body))
        rec += body
        self.out += rec
        self.out += _masked_crc(rec).to_bytes(4, "little")
        self.prev_ts = self.ts
        self.item += 1


def _encode(events: Iterable[Any], out: bytearray) -> bytes:
    try:
        it = iter(events)
    except TypeError:
        raise TypeError(
            f"encode: events must be an iterable of history events, got {_tname(events)}"
        ) from None
    enc = _Encoder()
    enc.out = out
    for ev in it:
        enc.event(ev)
    return bytes(out)


def encode(events: Iterable[Any]) -> bytes:
    """Encode ``events`` as a complete history: the header, then one record per event."""
    return _encode(events, bytearray(HEADER))


def encode_records(events: Iterable[Any]) -> bytes:
    """Encode ``events`` as records without the header, to append to an existing history."""
    return _encode(events, bytearray())


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------


class _Torn(Exception):
    pass


class _Bad(Exception):
    pass


class _Reader:
    """Field reader over one record body ``data[pos:end]``."""

    __slots__ = ("data", "pos", "end", "ts")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.ts = 0

    def varint(self, what: str) -> int:
        data, pos, end = self.data, self.pos, self.end
        result = 0
        shift = 0
        for i in range(10):
            if pos >= end:
                raise _Bad(f"{what} runs past the end of the record")
            b = data[pos]
            pos += 1
            if i == 9 and b > 1:
                raise _Bad(f"bad varint in {what}")
            result |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos = pos
                return result
            shift += 7
        raise _Bad(f"bad varint in {what}")

    def zigzag(self, what: str) -> int:
        u = self.varint(what)
        return (u >> 1) ^ -(u & 1)

    def raw(self, n: int, what: str) -> bytes:
        if n > self.end - self.pos:
            raise _Bad(f"{what} runs past the end of the record")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self, what: str, optional: bool) -> str | None:
        n = self.varint(what)
        if n == 0:
            if optional:
                return None
            raise _Bad(f"missing required {what}")
        raw = self.raw(n - 1, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"invalid UTF-8 in {what}") from None

    def flag(self, what: str, kind: str) -> bool:
        v = self.varint(what)
        if v > 1:
            raise _Bad(f"bad {kind} in {what}")
        return v == 1

    def fields(
        self, cname: str, fields: tuple[tuple[str, int], ...], depth: int, nbase: int = -1
    ) -> list[Any]:
        """Read ``fields``; those from index ``nbase`` on may be cut off by the record's end
        (trailing fields: they are None then)."""
        vals: list[Any] = []
        for i, (fname, kind) in enumerate(fields):
            if 0 <= nbase <= i and self.pos == self.end:
                vals.append(None)
                continue
            what = f"{cname}.{fname}"
            if kind == INT:
                vals.append(self.zigzag(what))
            elif kind == TIME_REL:
                vals.append(_wrap64(self.ts + self.zigzag(what)))
            elif kind == STR:
                vals.append(self.string(what, False))
            elif kind == OPT_STR:
                vals.append(self.string(what, True))
            elif kind == OPT_BYTES:
                n = self.varint(what)
                vals.append(None if n == 0 else self.raw(n - 1, what))
            elif kind == BOOL:
                vals.append(self.flag(what, "bool"))
            elif kind == OPT_INT:
                vals.append(self.zigzag(what) if self.flag(what, "presence flag") else None)
            elif kind == TAGS:
                n = self.varint(what)
                if n == 0:
                    vals.append(None)
                else:
                    tags = {}
                    for _ in range(n - 1):
                        k = self.string(what, False)
                        tags[k] = self.string(what, False)
                    vals.append(tags)
            else:  # OPT_FAILURE
                if not self.flag(what, "presence flag"):
                    vals.append(None)
                elif depth >= MAX_FAILURE_DEPTH:
                    raise _Bad(f"FailureDetails nested more than {MAX_FAILURE_DEPTH} deep")
                else:
                    vals.append(
                        FailureDetails(*self.fields("FailureDetails", _FAILURE_SCHEMA, depth + 1))
                    )
        return vals


def _decode(data: bytes, pos: int, lenient: bool) -> list[Any]:
    events: List[Any] = []
    size = len(data)
    prev_ts: int | None = None
    while pos < size:
        start = pos
        try:
            # record length
            length = 0
            shift = 0
            for i in range(10):
                if pos >= size:
                    raise _Torn("truncated record length")
                b = data[pos]
                pos += 1
                if i == 9 and b > 1:
                    raise _Bad("bad record length varint")
                length |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
            else:
                raise _Bad("bad record length varint")
            if length == 0 or length > MAX_RECORD_SIZE:
                raise _Bad(f"bad record length {length}")
            body = pos
            end = body + length
            if end + 4 > size:
                raise _Torn(
                    f"truncated record (needs {end + 4 - start} bytes, {size - start} left)"
                )
            if _masked_crc(data[start:end]) != int.from_bytes(data[end : end + 4], "little"):
                raise _Bad("checksum mismatch")
            tbyte = data[body]
            tag = tbyte & _TYPE_MASK
            spec = _BY_TAG.get(tag)
            if spec is None:
                raise _Bad(f"unknown event type {tag}")
            cls, cname, fields, nbase = spec
            rd = _Reader(data, body + 1, end)
            # the timestamp is the second field of every event
            eid = rd.zigzag(f"{cname}.event_id")
            if tbyte & ABSOLUTE_FLAG:
                ts = rd.zigzag(f"{cname}.timestamp")
            else:
                delta = rd.zigzag(f"{cname}.timestamp")
                if prev_ts is None:
                    raise _Bad("relative timestamp without a preceding record")
                ts = _wrap64(prev_ts + delta)
            rd.ts = ts
            vals = rd.fields(cname, fields[2:], 0, nbase - 2)
            if rd.pos != end:
                raise _Bad(f"{end - rd.pos} trailing bytes in the record")
            events.append(cls(eid, ts, *vals))
            prev_ts = ts
            pos = end + 4
        except _Torn as exc:
            if lenient:
                return events
            raise HistoryCorruptError(f"record at offset {start}: {exc}", start, True) from None
        except _Bad as exc:
            raise HistoryCorruptError(f"record at offset {start}: {exc}", start, False) from None
    return events


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError(f"decode: expected a bytes-like object, got {_tname(data)}") from None
    with mv:
        if not mv.contiguous:
            raise TypeError("decode: expected a contiguous bytes-like object")
        return mv.tobytes()


def decode(data: Any, *, lenient: bool = False) -> list[Any]:
    """Decode a complete history (header + records) into a list of events.

    Raises :class:`~durable_core.errors.HistoryCorruptError` on any damage; with
    ``lenient=True`` a torn tail (the buffer ends inside its last record) is dropped instead.
    """
    buf = _as_bytes(data)
    if len(buf) < len(HEADER):
        if HEADER.startswith(buf):
            if lenient:
                return []
            raise HistoryCorruptError("header: truncated header", 0, True)
        raise HistoryCorruptError("header: not a durable_core history (bad magic)", 0, False)
    if buf[:3] != MAGIC:
        raise HistoryCorruptError("header: not a durable_core history (bad magic)", 0, False)
    if buf[3] != VERSION:
        raise HistoryCorruptError(
            f"header: unsupported history format version {buf[3]}", 0, False
        )
    return _decode(buf, len(HEADER), lenient)


def decode_records(data: Any, *, lenient: bool = False) -> list[Any]:
    """Decode headerless records (what :func:`encode_records` wrote); offsets are from 0."""
    return _decode(_as_bytes(data), 0, lenient)
