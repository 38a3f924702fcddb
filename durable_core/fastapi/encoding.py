"""JSON encoding of response bodies: compact UTF-8, never failing on a user's payload.

Payloads are user data: a value the strict encoder refuses (NaN or Infinity, a lone surrogate
in a string, an object JSON has no spelling for) is still answered -- as a string, an escaped
string or its ``repr`` -- rather than turning a read into a server error.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime
from typing import Any, Optional

__all__ = ["dumps", "iso"]


def _json_default(obj: Any) -> Any:
    """What ``json.dumps`` cannot encode by itself: bytes (base64), datetimes, sets, models."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    return repr(obj)


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (non-finite floats become strings, lone surrogates are
    escaped)."""
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        ).encode("utf-8")
    except ValueError:
        # NaN / Infinity from a user payload: encode them as strings rather than fail the read.
        value = _sanitize_floats(value)
    except UnicodeEncodeError:
        pass  # a lone surrogate: the ASCII form below escapes it (\udXXX is valid JSON)
    return json.dumps(
        _sanitize_floats(value), separators=(",", ":"), ensure_ascii=True, default=_json_default
    ).encode("ascii")


def _sanitize_floats(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _sanitize_floats(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_sanitize_floats(x) for x in v]
    return v


def iso(dt: Optional[datetime]) -> Optional[str]:
    """ISO 8601 with ``Z`` for UTC (``None`` stays ``None``)."""
    if dt is None:
        return None
    s = dt.isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s
