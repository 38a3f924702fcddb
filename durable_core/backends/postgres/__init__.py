"""The PostgreSQL store (extra ``[postgres]``): :class:`PostgresBackend` (persistence), its
schema and migrations (:mod:`.schema`), statements (:mod:`.sql`), dispatcher turn
(:mod:`.turn`) and change notification (:mod:`.notify`)."""

from __future__ import annotations

from .backend import PostgresBackend
from .schema import DEFAULT_SCHEMA, MIGRATIONS, SCHEMA_VERSION

__all__ = ["PostgresBackend", "DEFAULT_SCHEMA", "SCHEMA_VERSION", "MIGRATIONS"]
