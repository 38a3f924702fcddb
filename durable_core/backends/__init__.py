"""Storage backends, found by URL scheme.

:func:`open_backend` turns a store URL into a :class:`~.base.Backend`:

========================================= ========================================================
``sqlite:///relative/path.db``            an SQLite file (created and migrated as needed)
``sqlite:////absolute/path.db``
``postgresql://user@host:5432/db``        a PostgreSQL database (extra ``[postgres]``)
========================================= ========================================================

Options go in the URL's query string (``sqlite:///durable.db?lease_seconds=10&mode=ro``) or
as keyword arguments of :func:`open_backend` (which win); each backend documents its own in its
``options`` table, and an unknown option is an error, not silently ignored. Options every
backend takes:

- ``lease_seconds`` -- how long a worker's claim on an instance or activity lasts without a
  heartbeat (after a crash elsewhere, work is taken over after this long; default 30).

Backends are looked up by scheme: the built-in ones first, then the entry point group
``durable_core.backends`` (name: the scheme, value: ``module:BackendClass``), so a third-party
package adds a store by declaring an entry point -- nothing here has to change.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

from ..errors import BackendNotAvailableError
from .base import Backend, ReuseIdPolicy

__all__ = [
    "Backend",
    "ReuseIdPolicy",
    "BackendNotAvailableError",
    "open_backend",
    "backend_class",
    "split_options",
    "redact",
    "DEFAULT_URL",
]

#: ``Runtime()`` without a URL: a file in the working directory.
DEFAULT_URL = "sqlite:///durable.db"

#: scheme -> "module:Class" of the backends that ship with durable_core
_BUILTIN = {
    "sqlite": "durable_core.backends.sqlite:SqliteBackend",
    "postgresql": "durable_core.backends.postgres:PostgresBackend",
    "postgres": "durable_core.backends.postgres:PostgresBackend",
}
ENTRY_POINT_GROUP = "durable_core.backends"


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def split_options(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its query string, and the query's options (last one of a name wins)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    return base, dict(parse_qsl(query, keep_blank_values=True))


def _load(spec: str) -> type:
    mod_name, _, attr = spec.partition(":")
    module = importlib.import_module(mod_name)
    return getattr(module, attr)  # type: ignore[no-any-return]


def backend_class(url: str) -> type[Backend]:
    """The backend class for ``url``'s scheme (built-in, else from the entry point group)."""
    if not isinstance(url, str):
        raise TypeError(f"store URL must be a str, not {type(url).__name__}")
    scheme, sep, _ = url.partition(":")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise BackendNotAvailableError(
            f"{redact(url)!r} is not a store URL: expected e.g. sqlite:///durable.db or "
            "postgresql://user@host/db"
        )
    spec = _BUILTIN.get(scheme)
    if spec is None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name.lower() == scheme:
                cls = ep.load()
                if not (isinstance(cls, type) and issubclass(cls, Backend)):
                    raise BackendNotAvailableError(
                        f"entry point {ep.value!r} for scheme {scheme!r} is not a Backend class"
                    )
                return cls
        raise BackendNotAvailableError(
            f"unknown store URL scheme {scheme!r} in {redact(url)!r}: expected "
            "sqlite:///relative.db, sqlite:////abs/path.db or postgresql://user@host/db "
            f"(or a backend installed under the {ENTRY_POINT_GROUP!r} entry point group)"
        )
    try:
        return _load(spec)  # type: ignore[return-value]
    except ImportError as exc:
        if scheme.startswith("postgres"):
            raise BackendNotAvailableError(
                f"the PostgreSQL backend needs psycopg 3 and psycopg_pool: pip install "
                "'durable_core[postgres]' "
                f"({exc})"
            ) from exc
        raise


def open_backend(
    url: str = DEFAULT_URL,
    *,
    migrate: bool = True,
    create: bool = True,
    lease_seconds: Optional[float] = None,
    **options: Any,
) -> Backend:
    """Open the store named by ``url`` (see the module docstring for URLs and options).

    ``migrate``: upgrade the schema as needed (the default). ``create=False``: refuse to
    create a store that does not exist yet. Keyword options override the URL's query
    options; ``None`` values are ignored.
    """
    cls = backend_class(url)
    base, opts = split_options(url)
    if lease_seconds is not None:
        options["lease_seconds"] = lease_seconds
    for k, v in options.items():
        if v is not None:
            opts[k] = str(v)
    return cls.from_url(base, opts, migrate=migrate, create=create)
