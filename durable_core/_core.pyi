# Type stub for the C extension durable_core._core.
# Each part keeps to its own section below.

# ---------------------------------------------------------------------------------------------
# codec
# ---------------------------------------------------------------------------------------------

# Binary history codec; the format is specified in durable_core/_codec_py.py.
from typing import Any, Iterable

from durable_core.history import HistoryEvent

def encode(events: Iterable[HistoryEvent], /) -> bytes: ...
def encode_records(events: Iterable[HistoryEvent], /) -> bytes: ...
def decode(data: Any, *, lenient: bool = ...) -> list[HistoryEvent]: ...
def decode_records(data: Any, *, lenient: bool = ...) -> list[HistoryEvent]: ...
def crc32c(data: Any, crc: int = ..., /) -> int: ...
def _crc32c_sw(data: Any, crc: int = ..., /) -> int: ...
def _codec_register(event_classes: Any, failure_details: type, /) -> None: ...

_CODEC_HW_CRC: int

# ---------------------------------------------------------------------------------------------
# timer wheel
# ---------------------------------------------------------------------------------------------



# ---------------------------------------------------------------------------------------------
# replay engine
# ---------------------------------------------------------------------------------------------

