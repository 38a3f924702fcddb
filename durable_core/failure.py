"""Failure details from exceptions: the one place that turns any exception into history data.

Activities and orchestrators are user code, and user code can raise anything: an exception
whose ``__str__`` raises or returns a non-string, one whose type name is odd, a message with
lone surrogates (which UTF-8 cannot hold), cycles in ``__cause__`` / ``__context__``, or a
``TaskFailedError`` whose details are already nested deep. Building the
:class:`~durable_core.history.FailureDetails` that the history records must succeed for all of
them -- a failure here would leave the activity's result unrecorded and its instance waiting
forever -- so :func:`failure_details_of` never raises (except for ``MemoryError``-like
conditions the interpreter itself cannot survive) and always returns values the codec accepts.
"""

from __future__ import annotations

import traceback
from typing import Optional

from .history import FailureDetails

__all__ = ["failure_details_of", "MAX_MESSAGE_CHARS", "MAX_STACK_CHARS", "MAX_INNER_DEPTH"]

#: longer messages are cut (with a note) so one failure cannot bloat a history
MAX_MESSAGE_CHARS = 16_384
#: longer stack traces keep their head and their tail (the innermost frames)
MAX_STACK_CHARS = 65_536
#: FailureDetails nested deeper than this are cut (the codec accepts 32 levels)
MAX_INNER_DEPTH = 30


def _clean(text: str) -> str:
    """``text`` made encodable as strict UTF-8 (lone surrogates become escapes)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cut(text: str, limit: int, *, keep_tail: bool = False) -> str:
    if len(text) <= limit:
        return text
    note = f"\n... [{len(text) - limit} characters cut] ...\n"
    if keep_tail:
        half = limit // 2
        return text[:half] + note + text[-half:]
    return text[:limit] + note.rstrip()


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    try:
        name = type.__dict__["__name__"].__get__(cls, type)  # not a metaclass's override
    except Exception:  # noqa: BLE001 - pragma: no cover, a type always has a name
        name = "Exception"
    if not isinstance(name, str) or not name:
        name = "Exception"
    return _clean(name)


def _safe_repr(exc: BaseException, type_name: str) -> str:
    try:
        r = repr(exc)
        if isinstance(r, str):
            return r
    except Exception:  # noqa: BLE001
        pass
    return f"<{type_name} object at {id(exc):#x}>"


def _message(exc: BaseException, type_name: str) -> str:
    try:
        text = str(exc)
        if isinstance(text, str):  # str() raises TypeError for a non-str __str__ result
            return _clean(_cut(text, MAX_MESSAGE_CHARS))
    except Exception:  # noqa: BLE001 - any user __str__ failure falls back below
        pass
    return _clean(_cut(
        f"{_safe_repr(exc, type_name)} (the exception's message could not be rendered: "
        "its __str__ raised)", MAX_MESSAGE_CHARS))


def _stack(exc: BaseException) -> Optional[str]:
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 - e.g. a __str__ that raises inside the formatter
        try:
            text = "".join(traceback.format_tb(exc.__traceback__))
        except Exception:  # noqa: BLE001
            return None
    return _clean(_cut(text, MAX_STACK_CHARS, keep_tail=True))


def _trim(fd: Optional[FailureDetails], depth: int) -> Optional[FailureDetails]:
    """``fd`` with at most ``depth`` levels (deeper inner failures dropped)."""
    if fd is None:
        return None
    if depth <= 0:
        return None
    inner = _trim(fd.inner_failure, depth - 1)
    if inner is fd.inner_failure:
        return fd
    return fd._replace(inner_failure=inner)


def failure_details_of(exc: BaseException, *, non_retriable: bool = False) -> FailureDetails:
    """FailureDetails for ``exc``: its type name, message, formatted stack and inner failure.

    The inner failure is the details a :class:`~durable_core.errors.TaskFailedError` carries
    (the failed activity or sub-orchestration), else the direct ``__cause__``. Never raises:
    see the module docstring for what is handled and how.
    """
    from .errors import TaskFailedError

    name = _type_name(exc)
    inner: Optional[FailureDetails] = None
    try:
        if isinstance(exc, TaskFailedError) and isinstance(exc.details, FailureDetails):
            inner = _trim(exc.details, MAX_INNER_DEPTH)
        else:
            cause = exc.__cause__
            if cause is not None and cause is not exc:
                cname = _type_name(cause)
                inner = FailureDetails(cname, _message(cause, cname))
    except Exception:  # noqa: BLE001 - an exotic exception object: no inner failure
        inner = None
    return FailureDetails(name, _message(exc, name), _stack(exc), inner, bool(non_retriable))
