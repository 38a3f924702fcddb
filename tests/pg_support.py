"""PostgreSQL test helpers: the server from ``DURABLE_CORE_PG_DSN`` (skip with the reason when
none answers; ``DURABLE_CORE_REQUIRE_PG=1`` makes that a failure) and throw-away schemas."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from conformance.conftest import PG_DSN, REQUIRE_PG, _pg_unavailable

__all__ = ["PG_DSN", "require_pg", "pg_schema", "hub_url", "admin"]


def require_pg() -> str:
    """The DSN, or skip (fail under DURABLE_CORE_REQUIRE_PG=1) saying why there is none."""
    reason = _pg_unavailable()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here (DURABLE_CORE_REQUIRE_PG=1): {reason}")
        pytest.skip(reason)
    return PG_DSN


def hub_url(schema: str, **options: object) -> str:
    """The store URL of task hub ``schema`` on the test server."""
    sep = "&" if "?" in PG_DSN else "?"
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"{PG_DSN}{sep}schema={schema}{extra}"


def admin():  # noqa: ANN201 - a psycopg connection
    """An autocommit connection to the test database (for setup and inspection)."""
    import psycopg

    return psycopg.connect(PG_DSN, autocommit=True)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh task hub schema name, dropped (with everything in it) afterwards."""
    require_pg()
    schema = "dc_test_" + uuid.uuid4().hex[:12]
    try:
        yield schema
    finally:
        with admin() as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
