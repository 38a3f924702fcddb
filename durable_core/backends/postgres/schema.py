"""The PostgreSQL store's schema (one "task hub" per PostgreSQL schema), its migrations, and
turning URLs and connection failures into messages that say what to do.

Tables, all in the task hub's schema (its name comes from the URL's ``?schema=``, default
``durable_core``; several applications share one database through several schemas):

- ``meta`` -- ``schema_version`` (upgraded by :data:`MIGRATIONS`) and ``application``
  (``durable_core``: any other table in a schema without it means another application's).
- ``instances`` -- one row per orchestration instance with its lease (``lock_owner``,
  ``lock_expires``, ``fence``) and payloads (PostgreSQL moves big values out of line into
  TOAST, and an update that leaves them alone does not copy them). Only columns that never
  change after creation are indexed (id, creation time, parent), so the per-step updates are
  HOT updates (no index writes) in the spare room ``fillfactor`` leaves in each page.
- ``history`` -- appended codec-record chunks, keyed by (instance, index of the first event).
- ``inbox`` -- new events with ``visible_at``; the claim walks ``inbox_visible`` (only rows
  due now, however many finished instances the store holds), then each claimed instance's rows
  by ``inbox_instance`` (instance, id), which also finds rows to consume (no primary key: one
  index fewer to write per event).
- ``activities`` -- the activity queue, leased like instances; ``queued_at`` for backlog age.
- ``workers`` -- live workers (host, pid, heartbeat), so a restarted worker releases a dead
  one's leases at once.
- ``create_instance(...)`` -- a function: create, replace (statuses given) or report the
  instance in the way, in one round trip and one statement inside a turn's pipeline.

Timestamps are microseconds since the epoch by the *server's* clock (:data:`NOW`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from ...status import OrchestrationStatus
from ...errors import (
    BackendNotAvailableError,
    StoreError,
    StoreIncompatibleError,
    StoreUnavailableError,
)

__all__ = [
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "DEFAULT_SCHEMA",
    "NOW",
    "LIBPQ_OPTIONS",
    "parse_url",
    "connect_error",
]

DEFAULT_SCHEMA = "durable_core"
#: the server's clock in microseconds, fixed for the statement
NOW_EXPR = "(extract(epoch from statement_timestamp()) * 1000000)::bigint"
#: the same as a scalar subquery: computed once per statement (an InitPlan), not once per row
NOW = f"(SELECT {NOW_EXPR})"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: connection parameters passed through to libpq from the URL's query string
LIBPQ_OPTIONS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "application_name",
    "target_session_attrs", "passfile", "channel_binding", "gssencmode",
})

_PENDING = int(OrchestrationStatus.PENDING)

_V1 = f"""
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE instances (
    instance_id text PRIMARY KEY,
    execution_id text NOT NULL,
    name text NOT NULL,
    version text,
    status smallint NOT NULL,
    parent_instance_id text,
    parent_task_id integer NOT NULL DEFAULT -1,
    parent_execution_id text,
    created_at bigint NOT NULL,
    last_updated_at bigint NOT NULL,
    scheduled_start_at bigint,
    history_length integer NOT NULL DEFAULT 0,
    input bytea,
    output bytea,
    custom_status bytea,
    failure text,
    tags text,
    lock_owner text,
    lock_expires bigint NOT NULL DEFAULT 0,
    fence bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
CREATE INDEX instances_created ON instances (created_at, instance_id);
CREATE INDEX instances_parent ON instances (parent_instance_id)
    WHERE parent_instance_id IS NOT NULL;
CREATE TABLE history (
    instance_id text NOT NULL,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE inbox (
    id bigint GENERATED ALWAYS AS IDENTITY,
    instance_id text NOT NULL,
    execution_id text,
    kind smallint NOT NULL,
    visible_at bigint NOT NULL,
    event bytea NOT NULL
);
CREATE INDEX inbox_visible ON inbox (visible_at);
CREATE INDEX inbox_instance ON inbox (instance_id, id);
CREATE TABLE activities (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id text NOT NULL,
    execution_id text NOT NULL,
    task_id integer NOT NULL,
    name text NOT NULL,
    input bytea,
    trace_context text,
    queued_at bigint NOT NULL DEFAULT {NOW_EXPR},
    lock_owner text,
    lock_expires bigint NOT NULL DEFAULT 0,
    attempt integer NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
CREATE INDEX activities_instance ON activities (instance_id);
CREATE TABLE workers (
    owner text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at bigint NOT NULL,
    heartbeat bigint NOT NULL
);
CREATE FUNCTION create_instance(
    p_id text, p_eid text, p_name text, p_version text, p_parent text, p_parent_task integer,
    p_parent_eid text, p_created bigint, p_sched bigint, p_input bytea, p_tags text,
    p_start_eid text, p_start_kind smallint, p_start_vis bigint, p_start_ev bytea,
    p_replace smallint[], p_conf_iid text, p_conf_eid text, p_conf_kind smallint,
    p_conf_vis bigint, p_conf_ev bytea
) RETURNS smallint LANGUAGE plpgsql AS $$
DECLARE
    st smallint;
BEGIN
    -- a plain insert when the id is free (ON CONFLICT would log a speculative insertion);
    -- two creators racing for one id: the loser gets unique_violation and tries again
    PERFORM 1 FROM instances WHERE instance_id = p_id;
    IF NOT FOUND THEN
        INSERT INTO instances (instance_id, execution_id, name, version, status,
            parent_instance_id, parent_task_id, parent_execution_id, created_at,
            last_updated_at, scheduled_start_at, input, tags)
        VALUES (p_id, p_eid, p_name, p_version, {_PENDING}, p_parent, p_parent_task,
            p_parent_eid, p_created, p_created, p_sched, p_input, p_tags);
    ELSE
        SELECT status INTO st FROM instances WHERE instance_id = p_id FOR UPDATE;
        IF st IS NULL OR NOT (st = ANY (p_replace)) THEN
            IF p_conf_iid IS NOT NULL THEN
                INSERT INTO inbox (instance_id, execution_id, kind, visible_at, event)
                VALUES (p_conf_iid, p_conf_eid, p_conf_kind, p_conf_vis, p_conf_ev);
            END IF;
            RETURN coalesce(st, {_PENDING});
        END IF;
        DELETE FROM history WHERE instance_id = p_id;
        DELETE FROM inbox WHERE instance_id = p_id;
        DELETE FROM activities WHERE instance_id = p_id AND lock_owner IS NULL;
        -- a new fence: a worker still holding a lease on the old instance cannot commit into it
        UPDATE instances SET execution_id = p_eid, name = p_name, version = p_version,
            status = {_PENDING}, parent_instance_id = p_parent, parent_task_id = p_parent_task,
            parent_execution_id = p_parent_eid, created_at = p_created,
            last_updated_at = p_created, scheduled_start_at = p_sched, history_length = 0,
            input = p_input, output = NULL, custom_status = NULL, failure = NULL,
            tags = p_tags, lock_owner = NULL, lock_expires = 0, fence = fence + 1
        WHERE instance_id = p_id;
    END IF;
    INSERT INTO inbox (instance_id, execution_id, kind, visible_at, event)
    VALUES (p_id, p_start_eid, p_start_kind, p_start_vis, p_start_ev);
    RETURN NULL;
END
$$;
-- the end of a turn's step writes: every step's lease was still held when its instance row
-- was written, or the whole turn is rolled back (and tried again, refusing that step)
CREATE FUNCTION check_fences(written bigint, expected integer) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF written <> expected THEN
        RAISE EXCEPTION 'a lease was lost while its step was being committed'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN written;
END
$$;
"""

#: schema migrations: MIGRATIONS[i] upgrades schema_version i -> i + 1 (run in one
#: transaction under an advisory lock, so workers starting together migrate once)
MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


def parse_url(url: str, options: Mapping[str, str]) -> tuple[str, dict[str, Any], str]:
    """``postgresql://user:pw@host:port/db`` (query split off) and the options ->
    (the URL without a password, libpq keyword arguments, the task hub's schema name)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BackendNotAvailableError(
            f"malformed PostgreSQL URL ({exc}): expected postgresql://user@host:5432/database"
        ) from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise BackendNotAvailableError(
            f"a PostgreSQL store URL starts with postgresql:// (got {parts.scheme!r})")
    db = unquote(parts.path.lstrip("/"))
    if not db or "/" in db:
        raise BackendNotAvailableError(
            "the PostgreSQL URL names no database: expected postgresql://user@host:5432/database"
        )
    kw: dict[str, Any] = {"dbname": db}
    if parts.hostname:
        kw["host"] = unquote(parts.hostname)
    if port is not None:
        kw["port"] = port
    if parts.username:
        kw["user"] = unquote(parts.username)
    if parts.password is not None:
        kw["password"] = unquote(parts.password)
    for k in LIBPQ_OPTIONS & set(options):
        kw[k] = options[k]
    schema = options.get("schema", DEFAULT_SCHEMA)
    if not _SCHEMA_RE.match(schema):
        raise BackendNotAvailableError(
            f"store option schema={schema!r}: a task hub name is lower-case letters, digits and "
            "underscores, starting with a letter or underscore (at most 63)")
    shown = url
    if parts.password is not None:
        shown = url.replace(f":{parts.password}@", ":***@", 1)
    return shown, kw, schema


def connect_error(where: str, exc: BaseException) -> StoreError:
    """The durable_core error (one line saying what to do) for a failure to connect."""
    msg = " ".join(str(exc).split())
    low = msg.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return StoreUnavailableError(
            f"{where}: the server refused the user name or password; put the right ones in the "
            "URL (postgresql://user:password@host/db) or in ~/.pgpass")
    if "does not exist" in low and "database" in low:
        return StoreUnavailableError(
            f"{where}: the database does not exist; create it first (createdb, or CREATE "
            "DATABASE) -- durable_core creates its schema, not the database")
    if "role" in low and "does not exist" in low:
        return StoreUnavailableError(f"{where}: no such user on the server ({msg})")
    if "could not translate host name" in low or "name or service not known" in low:
        return StoreUnavailableError(f"{where}: unknown host name; check the URL's host")
    if "connection refused" in low or "timeout" in low or "timed out" in low:
        return StoreUnavailableError(
            f"{where}: no PostgreSQL server answers there; start it or fix the host and port "
            f"in the URL ({msg})")
    if "no pg_hba.conf entry" in low:
        return StoreUnavailableError(
            f"{where}: the server does not allow this connection (pg_hba.conf); ask its "
            "administrator to admit this host and user")
    return StoreUnavailableError(f"{where}: cannot connect ({msg})")


def incompatible(where: str, schema: str, why: str) -> StoreIncompatibleError:
    """A schema that is not (or not yet) a task hub of this version."""
    return StoreIncompatibleError(f"{where} schema {schema!r}: {why}")
