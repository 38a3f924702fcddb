"""The SQL the PostgreSQL backend runs: set-based statements over ``unnest``-ed arrays, so a
dispatcher turn's writes are a fixed handful of statements whatever it carries.

Names are unqualified: every connection's ``search_path`` is the task hub's schema.
"""

from __future__ import annotations

from .schema import NOW

__all__ = [
    "INSTANCE_COLS", "SELECT_FULL", "SELECT_LEAN", "CREATE", "CREATE_NOTIFY", "ENQUEUE", "LOCK_STEPS",
    "CLEAR_INBOX", "DEFER", "RESET_HISTORY", "CANCEL_ACTIVITIES", "APPEND_HISTORY",
    "CONSUME", "QUEUE_ACTIVITIES", "INSERT_INBOX", "INSERT_TARGETED", "UPDATE_INSTANCES",
    "OUTCOMES", "CLAIM_INSTANCES", "CLAIM_ACTIVITIES", "NEXT_VISIBLE", "LOAD_HISTORY",
    "DELETE", "HEARTBEAT", "BACKLOG", "NOTIFY", "NOW_US",
]

INSTANCE_COLS = (
    "instance_id, execution_id, name, status, created_at, last_updated_at, parent_instance_id, "
    "parent_task_id, history_length, version, scheduled_start_at"
)
SELECT_FULL = f"SELECT {INSTANCE_COLS}, input, output, custom_status, failure, tags FROM instances"
SELECT_LEAN = f"SELECT {INSTANCE_COLS}, NULL, NULL, NULL, failure, NULL FROM instances"

NOW_US = f"SELECT {NOW}"
NOTIFY = "SELECT pg_notify(%s, %s)"

#: create_instance(...) with its 21 arguments
CREATE = "SELECT create_instance(" + ", ".join(["%s"] * 21) + ")"
#: the same, announcing a change in the same statement
CREATE_NOTIFY = CREATE + ", pg_notify(%s, %s)"

_MSG_ARRAYS = "%s::text[], %s::text[], %s::smallint[], %s::bigint[], %s::bytea[]"

# per message: whether its instance exists (rows for unknown ones are not written)
ENQUEUE = f"""
WITH m AS MATERIALIZED (
    SELECT u.*, EXISTS (SELECT 1 FROM instances i WHERE i.instance_id = u.iid) AS ok
    FROM unnest({_MSG_ARRAYS}) WITH ORDINALITY AS u(iid, eid, kind, vis, ev, ord)
), ins AS (
    INSERT INTO inbox (instance_id, execution_id, kind, visible_at, event)
    SELECT iid, eid, kind, vis, ev FROM m WHERE ok ORDER BY ord
)
SELECT ok FROM m ORDER BY ord
"""

# the fence check, read without locking (a row lock is a WAL record): UPDATE_INSTANCES, last
# in the turn, writes only rows whose lease is still the step's and fails the turn otherwise
LOCK_STEPS = (
    "SELECT instance_id, lock_owner, fence FROM instances WHERE instance_id = ANY(%s::text[])"
)
CLEAR_INBOX = "DELETE FROM inbox WHERE instance_id = ANY(%s::text[])"
DEFER = (
    "UPDATE inbox b SET visible_at = d.v "
    "FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS d(iid, id, v) "
    "WHERE b.instance_id = d.iid AND b.id = d.id"
)
RESET_HISTORY = "DELETE FROM history WHERE instance_id = ANY(%s::text[])"
CANCEL_ACTIVITIES = "DELETE FROM activities WHERE instance_id = ANY(%s::text[])"
APPEND_HISTORY = (
    "INSERT INTO history (instance_id, seq, data) "
    "SELECT * FROM unnest(%s::text[], %s::integer[], %s::bytea[])"
)
CONSUME = (
    "DELETE FROM inbox b USING unnest(%s::text[], %s::bigint[]) AS d(iid, id) "
    "WHERE b.instance_id = d.iid AND b.id = d.id"
)
QUEUE_ACTIVITIES = (
    "INSERT INTO activities (instance_id, execution_id, task_id, name, input, trace_context) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::text[], %s::bytea[], "
    "%s::text[])"
)
INSERT_INBOX = (
    "INSERT INTO inbox (instance_id, execution_id, kind, visible_at, event) "
    f"SELECT * FROM unnest({_MSG_ARRAYS})"
)
INSERT_TARGETED = (
    "INSERT INTO inbox (instance_id, execution_id, kind, visible_at, event) "
    f"SELECT m.* FROM unnest({_MSG_ARRAYS}) AS m(iid, eid, kind, vis, ev) "
    "WHERE EXISTS (SELECT 1 FROM instances i WHERE i.instance_id = m.iid)"
)
# every step's instance row in one statement, if its lease is still the step's (else the
# turn fails: check_fences); the lease is released
UPDATE_INSTANCES = """
WITH upd AS (UPDATE instances i SET
    status = CASE WHEN u.touch THEN u.status ELSE i.status END,
    history_length = CASE WHEN u.touch THEN u.hlen ELSE i.history_length END,
    last_updated_at = CASE WHEN u.touch THEN %s ELSE i.last_updated_at END,
    custom_status = CASE WHEN u.set_cs THEN u.cs ELSE i.custom_status END,
    output = CASE WHEN u.set_res THEN u.output ELSE i.output END,
    failure = CASE WHEN u.set_res THEN u.failure ELSE i.failure END,
    execution_id = coalesce(u.new_eid, i.execution_id),
    input = CASE WHEN u.new_eid IS NOT NULL THEN u.new_input ELSE i.input END,
    scheduled_start_at = CASE WHEN u.new_eid IS NOT NULL THEN NULL ELSE i.scheduled_start_at END,
    lock_owner = NULL, lock_expires = 0
FROM unnest(%s::text[], %s::boolean[], %s::smallint[], %s::integer[], %s::boolean[],
            %s::bytea[], %s::boolean[], %s::bytea[], %s::text[], %s::text[], %s::bytea[],
            %s::bigint[])
    AS u(iid, touch, status, hlen, set_cs, cs, set_res, output, failure, new_eid, new_input,
         fence)
WHERE i.instance_id = u.iid AND i.lock_owner = %s AND i.fence = u.fence
RETURNING 1)
SELECT check_fences((SELECT count(*) FROM upd), %s)
"""
# activity outcomes: delivered only for activities the owner still holds
OUTCOMES = f"""
WITH done AS (
    DELETE FROM activities WHERE id = ANY(%s::bigint[]) AND lock_owner = %s RETURNING id
)
INSERT INTO inbox (instance_id, execution_id, kind, visible_at, event)
SELECT m.iid, m.eid, m.kind, m.vis, m.ev
FROM unnest(%s::bigint[], {_MSG_ARRAYS}) AS m(aid, iid, eid, kind, vis, ev)
JOIN done ON done.id = m.aid
"""

# The claim, in one statement. ``cand``: the instances of the first ``scan`` visible inbox
# rows of instances nobody holds (by the inbox_visible index: only rows due now are read,
# however many finished instances the table holds; rows of leased instances are passed over
# with a key lookup each, so a busy instance's backlog cannot fill the window), the ``limit``
# oldest. ``locked``: those whose lease is still free, locked with SKIP LOCKED (a row another
# worker is claiming is passed over, never waited for). A row locked here may have been
# changed after this statement's snapshot was taken (another worker committed a step and
# released it meanwhile); its inbox rows as this snapshot sees them would then be stale, so
# only rows whose version (xmin) is the one in the snapshot are claimed -- the others wait for
# the next turn. ``upd`` takes the lease and increments the fence; the result is the claimed
# instances with their visible inbox rows, and whether each claim took over a lease that had
# expired in some owner's hands (``prev``: the owner the locked row still named).
CLAIM_INSTANCES = f"""
WITH cand AS (
    SELECT instance_id, min(visible_at) AS first, min(x::text)::xid AS x FROM (
        SELECT b.instance_id, b.visible_at, i.x
        FROM inbox b CROSS JOIN LATERAL (
            -- OFFSET 0 keeps this a per-row key lookup, so the scan stops at the limit
            SELECT i.xmin AS x FROM instances i
            WHERE i.instance_id = b.instance_id AND i.lock_expires < {NOW} OFFSET 0) AS i
        WHERE b.visible_at <= {NOW}
        ORDER BY b.visible_at LIMIT %(scan)s) AS s
    GROUP BY instance_id
    ORDER BY first, instance_id LIMIT %(limit)s
), locked AS MATERIALIZED (
    SELECT i.instance_id, i.xmin AS x, i.lock_owner AS prev FROM instances i
    WHERE i.instance_id = ANY (ARRAY(SELECT instance_id FROM cand)) AND i.lock_expires < {NOW}
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE instances i
    SET lock_owner = %(owner)s, lock_expires = {NOW} + %(lease)s, fence = i.fence + 1
    FROM locked l JOIN cand c ON c.instance_id = l.instance_id AND c.x = l.x
    WHERE i.instance_id = l.instance_id
    RETURNING i.instance_id, i.execution_id, i.name, i.status, i.history_length, i.fence,
        i.parent_instance_id, i.parent_task_id, i.parent_execution_id, i.version,
        i.scheduled_start_at, i.custom_status IS NOT NULL AS has_cs,
        l.prev IS NOT NULL AS taken_over, c.first
)
SELECT u.*, b.id, b.kind, b.visible_at, b.event, b.execution_id
FROM upd u JOIN inbox b ON b.instance_id = u.instance_id AND b.visible_at <= {NOW}
ORDER BY u.first, u.instance_id, b.id
"""
CLAIM_ACTIVITIES = f"""
WITH c AS (
    SELECT id FROM activities WHERE lock_expires < {NOW} ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE activities a
SET lock_owner = %(owner)s, lock_expires = {NOW} + %(lease)s, attempt = a.attempt + 1
FROM c WHERE a.id = c.id
RETURNING a.id, a.instance_id, a.execution_id, a.task_id, a.name, a.input, a.attempt,
    a.trace_context
"""
NEXT_VISIBLE = (
    f"SELECT DISTINCT visible_at FROM inbox WHERE visible_at > {NOW} AND visible_at <= %s "
    "ORDER BY visible_at LIMIT 10000"
)
LOAD_HISTORY = (
    "SELECT -1, NULL::bytea, history_length FROM instances WHERE instance_id = %s "
    "UNION ALL SELECT seq, data, NULL FROM history WHERE instance_id = %s ORDER BY 1"
)
DELETE = """
WITH d AS (
    DELETE FROM instances WHERE instance_id = ANY(%s::text[]) AND status = ANY(%s::smallint[])
    RETURNING instance_id
), h AS (
    DELETE FROM history WHERE instance_id IN (SELECT instance_id FROM d)
), b AS (
    DELETE FROM inbox WHERE instance_id IN (SELECT instance_id FROM d)
), a AS (
    DELETE FROM activities WHERE instance_id IN (SELECT instance_id FROM d)
)
SELECT instance_id FROM d ORDER BY instance_id
"""
HEARTBEAT = f"""
WITH w AS (UPDATE workers SET heartbeat = {NOW} WHERE owner = %(owner)s)
UPDATE activities SET lock_expires = {NOW} + %(lease)s
WHERE lock_owner = %(owner)s AND id = ANY(%(ids)s::bigint[])
RETURNING id
"""
BACKLOG = f"""
SELECT
    (SELECT count(DISTINCT b.instance_id) FROM inbox b
     JOIN instances i ON i.instance_id = b.instance_id
     WHERE b.visible_at <= {NOW} AND i.lock_expires < {NOW}),
    (SELECT count(*) FROM activities WHERE lock_expires < {NOW}),
    (SELECT min(b.visible_at) FROM inbox b
     JOIN instances i ON i.instance_id = b.instance_id
     WHERE b.visible_at <= {NOW} AND i.lock_expires < {NOW})
"""
