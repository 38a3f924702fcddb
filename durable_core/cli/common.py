"""What every command shares: the store option, opening a client, parsing JSON and times, and
the errors that end a command with one line on stderr.

Exit codes (the same for every command):

====  =========================================================================
0     done
1     the operation failed: unknown instance, wrong state, unknown orchestrator
2     bad usage: unknown option, malformed JSON, a time or status that does not parse
3     the store: cannot be opened, is corrupt or not a durable_core store, stayed busy
130   interrupted (Ctrl+C)
====  =========================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Optional

from ..backends import DEFAULT_URL
from ..status import OrchestrationStatus
from .views import parse_status

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_STORE",
    "CLIError",
    "add_store_option",
    "store_url",
    "open_client",
    "parse_json_arg",
    "parse_time",
    "parse_statuses",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STORE = 3

STORE_ENV = "DURABLE_CORE_STORE"
#: the older name, still read (README and scripts use it)
STORE_ENV_ALIAS = "DURABLE_CORE_DB"


class CLIError(Exception):
    """Ends the command: ``message`` goes to stderr as one line, ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """``--store URL`` (alias ``--db``), read from the environment when not given."""
    parser.add_argument(
        "--store",
        "--db",
        dest="store",
        metavar="URL",
        default=None,
        help=f"store URL or SQLite file path (default: ${STORE_ENV}, ${STORE_ENV_ALIAS}, "
        f"else {DEFAULT_URL})",
    )


def store_url(args: argparse.Namespace) -> str:
    """The store URL of this invocation: ``--store``, ``$DURABLE_CORE_STORE``,
    ``$DURABLE_CORE_DB``, or the default file of ``dc.Runtime()``. A bare path is an SQLite
    file."""
    raw = (
        getattr(args, "store", None)
        or os.environ.get(STORE_ENV)
        or os.environ.get(STORE_ENV_ALIAS)
        or DEFAULT_URL
    )
    if "://" in raw or raw.startswith("sqlite:"):
        return raw
    path = os.path.abspath(os.path.expanduser(raw))
    return "sqlite:///" + path  # an absolute path gives sqlite:////abs/path.db


@contextmanager
def open_client(args: argparse.Namespace, *, create: bool = False) -> Iterator[Any]:
    """A :class:`durable_core.Client` on the store, closed afterwards.

    Without ``create`` a missing SQLite file is an error (a mistyped path would otherwise
    become a new, empty store); commands that may create the store pass ``create=True``.
    """
    from ..backends import open_backend
    from ..client import Client

    backend = open_backend(store_url(args), create=create)
    try:
        yield Client(backend)
    finally:
        backend.close()


def parse_json_arg(text: Optional[str], what: str) -> Any:
    """A JSON value from an option: literal JSON, ``@file`` or ``-`` (standard input);
    ``None`` when the option was not given."""
    if text is None:
        return None
    source = what
    if text == "-":
        text = sys.stdin.read()
        source = f"{what} (standard input)"
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise CLIError(f"{what}: cannot read {path}: {why}", EXIT_USAGE) from None
        source = f"{what} (file {path})"
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise CLIError(f"{source} is not valid JSON: {e}", EXIT_USAGE) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: Optional[datetime] = None) -> datetime:
    """An aware UTC datetime from ISO 8601 (``2026-12-01``, ``2026-12-01T10:00:00Z``; naive
    means UTC) or a time ago (``90s``, ``30m``, ``2h``, ``7d``, ``1w``)."""
    t = text.strip()
    m = _RELATIVE.match(t)
    if m:
        now = now or datetime.now(timezone.utc)
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise CLIError(
            f"bad time {text!r}: expected ISO 8601 (2026-12-01T10:00:00Z) or an age (30m, 2h, 7d)",
            EXIT_USAGE,
        ) from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def parse_statuses(values: Optional[list[str]]) -> Optional[list[OrchestrationStatus]]:
    """``--status`` values (repeatable, comma-separated) as statuses; ``None`` when absent."""
    if not values:
        return None
    out: list[OrchestrationStatus] = []
    for v in values:
        for part in v.split(","):
            if not part.strip():
                continue
            try:
                st = parse_status(part)
            except ValueError as e:
                raise CLIError(str(e), EXIT_USAGE) from None
            if st not in out:
                out.append(st)
    return out or None
