"""Storage backends: one module per store behind the :class:`~.base.Backend` interface.

:func:`open_backend` turns a URL into a backend: ``sqlite:///relative.db``,
``sqlite:////absolute/path.db``. ``postgresql://`` is recognised but not built yet.
"""

from __future__ import annotations

from ..errors import DurableError
from .base import Backend, ReuseIdPolicy

__all__ = ["Backend", "ReuseIdPolicy", "BackendNotAvailableError", "open_backend", "DEFAULT_URL"]

#: ``Runtime()`` without a URL: a file in the working directory.
DEFAULT_URL = "sqlite:///durable.db"


class BackendNotAvailableError(DurableError, ValueError):
    """The URL names a store this installation cannot open (unknown scheme, not built yet)."""


def open_backend(url: str = DEFAULT_URL, *, lease_seconds: float | None = None) -> Backend:
    """Open the store named by ``url`` (creating and migrating an SQLite file as needed).

    ``lease_seconds``: how long a worker's claim on an instance or activity lasts without a
    heartbeat (after a crash on another host, work is taken over after this long).
    """
    if not isinstance(url, str):
        raise TypeError(f"store URL must be a str, not {type(url).__name__}")
    if url.startswith("sqlite:"):
        from .sqlite import SqliteBackend, path_from_url

        if lease_seconds is None:
            return SqliteBackend(path_from_url(url))
        return SqliteBackend(path_from_url(url), lease_us=int(lease_seconds * 1_000_000))
    if url.startswith(("postgresql:", "postgres:")):
        raise BackendNotAvailableError(
            "the PostgreSQL backend is not available in this version; use sqlite:///file.db"
        )
    raise BackendNotAvailableError(
        f"unknown store URL {url!r}: expected sqlite:///relative.db or sqlite:////abs/path.db"
    )
