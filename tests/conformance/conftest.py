"""Backends under test: one factory per backend, each opening a fresh, empty store.

SQLite always runs. PostgreSQL runs when ``DURABLE_CORE_PG_DSN`` names a reachable server
(each store gets its own schema, dropped afterwards); otherwise its tests skip with the
reason, and ``DURABLE_CORE_REQUIRE_PG=1`` (set by CI) turns that skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Iterator

import pytest

from durable_core.backends import open_backend
from durable_core.backends.base import Backend

REQUIRE_PG = os.environ.get("DURABLE_CORE_REQUIRE_PG", "") not in ("", "0")
PG_DSN = os.environ.get("DURABLE_CORE_PG_DSN", "")

Factory = Callable[..., Backend]


def _pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be tested here (None: it can)."""
    if not PG_DSN:
        return "DURABLE_CORE_PG_DSN is not set"
    try:
        import durable_core.backends.postgres  # noqa: F401
    except ImportError as exc:
        return f"the PostgreSQL backend cannot be imported: {exc}"
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure to connect
        return f"no PostgreSQL server answers at {PG_DSN}: {exc}"
    return None


def _sqlite_factory(tmp_path: Any, opened: list[Backend]) -> Factory:
    counter = [0]

    def make(*, shared: Backend | None = None, **options: Any) -> Backend:
        if shared is not None:  # a second connection (another process's view) of the same store
            b = open_backend(shared.url, **options)
        else:
            counter[0] += 1
            b = open_backend(f"sqlite:///{tmp_path / f'conf{counter[0]}.db'}", **options)
        opened.append(b)
        return b

    return make


def _pg_factory(opened: list[Backend], schemas: list[str]) -> Factory:
    def make(*, shared: Backend | None = None, **options: Any) -> Backend:
        if shared is not None:
            b = open_backend(shared.url, **options)
        else:
            schema = "dc_conf_" + uuid.uuid4().hex[:12]
            schemas.append(schema)
            sep = "&" if "?" in PG_DSN else "?"
            b = open_backend(f"{PG_DSN}{sep}schema={schema}", **options)
        opened.append(b)
        return b

    return make


PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=PARAMS)
def make_backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Factory]:
    opened: list[Backend] = []
    schemas: list[str] = []
    if request.param == "sqlite":
        factory = _sqlite_factory(tmp_path, opened)
    else:
        reason = _pg_unavailable()
        if reason is not None:
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL is required here (DURABLE_CORE_REQUIRE_PG=1): {reason}")
            pytest.skip(reason)
        factory = _pg_factory(opened, schemas)
    try:
        yield factory
    finally:
        for b in reversed(opened):
            try:
                b.close()
            except Exception:  # noqa: BLE001 - closing after a failed test
                pass
        if schemas:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as c:
                for s in schemas:
                    c.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


@pytest.fixture
def backend(make_backend: Factory) -> Backend:
    return make_backend(lease_seconds=30)
