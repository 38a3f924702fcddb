"""The embedded SQLite store: :class:`SqliteBackend` (persistence), its schema and migrations
(:mod:`.schema`) and its background thread (:mod:`.background`)."""

from __future__ import annotations

from .backend import SqliteBackend
from .schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, path_from_url

__all__ = ["SqliteBackend", "path_from_url", "SCHEMA_VERSION", "MIGRATIONS", "APPLICATION_ID"]
