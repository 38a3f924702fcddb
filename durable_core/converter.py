"""Data converters: how user values become the opaque payload bytes stored in history.

One converter serializes every payload (orchestration and activity inputs and outputs, event
data, custom status). JSON is the default; dataclasses and pydantic models serialize to JSON
objects (they come back as plain dicts/lists). Replace it by passing ``converter=`` to the
runtime, client and worker -- all of them must use the same one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import uuid
from typing import Any, Callable, Optional, Protocol, runtime_checkable

from .errors import PayloadError

__all__ = ["DataConverter", "JsonDataConverter", "default_converter"]


@runtime_checkable
class DataConverter(Protocol):
    """Turns values into payload bytes and back. ``None`` maps to ``None`` (no payload)."""

    def serialize(self, value: Any) -> Optional[bytes]:
        """Value -> bytes; raise :class:`PayloadError` when it cannot be represented."""
        ...

    def deserialize(self, data: Optional[bytes]) -> Any:
        """Bytes -> value; raise :class:`PayloadError` on malformed data."""
        ...


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    dump = getattr(obj, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class JsonDataConverter:
    """JSON payloads (UTF-8, compact). Dataclasses and pydantic models are dumped as objects."""

    __slots__ = ("_encoder", "_decoder")

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            default=_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        self._decoder = json.JSONDecoder()

    def serialize(self, value: Any) -> Optional[bytes]:
        if value is None:
            return None
        try:
            return self._encoder.encode(value).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"cannot serialize {type(value).__name__} as JSON: {exc}") from exc

    def deserialize(self, data: Optional[bytes]) -> Any:
        if data is None:
            return None
        try:
            return self._decoder.decode(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError(f"payload is not valid JSON: {exc}") from exc

    def json_scanner(self) -> Callable[[str, int], tuple[Any, int]]:
        """The decoder's scanner: ``scan(text, 0) -> (value, end)`` (raises StopIteration).

        For the replay engine, which decodes many small payloads: a value is accepted when
        ``end == len(text)``; anything else goes through :meth:`deserialize`, which stays the
        reference (same values, and the errors).
        """
        return self._decoder.scan_once  # type: ignore[no-any-return, attr-defined]


_DEFAULT = JsonDataConverter()


def default_converter() -> DataConverter:
    """The process-wide default converter (JSON)."""
    return _DEFAULT
