"""The SQL of a dispatcher turn on SQLite: creating instances, checking fences, writing steps
and activity outcomes, and claiming the next instances and activities.

Functions of an open transaction's connection; :class:`.backend.SqliteBackend` owns the
transaction, the clock and the notifications. ``claimed_flags`` is the backend's note of the
payloads each instance it has leased holds (see ``SqliteBackend.__init__``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Optional, Sequence

from ...status import OrchestrationStatus
from ..base import (
    ActivityOutcome,
    ClaimedActivity,
    ClaimedInstance,
    InboxMessage,
    NewInstance,
    StepWrite,
    failure_to_json,
)
from .rows import (
    ALL_FLAGS,
    DELETE_PAYLOAD,
    FLAG_CS,
    FLAG_FAIL,
    FLAG_IN,
    FLAG_OUT,
    FLAG_TAGS,
    INSERT_INBOX,
    UPSERT_PAYLOAD,
    json_ids,
)
from .schema import PAYLOAD_CUSTOM_STATUS, PAYLOAD_FAILURE, PAYLOAD_INPUT, PAYLOAD_OUTPUT, PAYLOAD_TAGS


def create_in_tx(c: sqlite3.Connection, new: NewInstance) -> Optional[OrchestrationStatus]:
    """Insert ``new`` with its start message (or replace the instance it may replace); the
    status of an instance that stood in the way, else None."""
    flags = (FLAG_IN if new.input is not None else 0) | (FLAG_TAGS if new.tags else 0)
    row = (
        new.execution_id, new.name, new.version, int(OrchestrationStatus.PENDING),
        new.parent_instance_id, new.parent_task_id, new.parent_execution_id, new.created_at,
        new.created_at, new.scheduled_start_at, flags,
    )
    cur = c.execute(
        "INSERT INTO instances(instance_id, execution_id, name, version, status, "
        "parent_instance_id, parent_task_id, parent_execution_id, created_at, "
        "last_updated_at, scheduled_start_at, payload_flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT DO NOTHING",
        (new.instance_id,) + row,
    )
    if cur.rowcount == 0:
        status = OrchestrationStatus(c.execute(
            "SELECT status FROM instances WHERE instance_id=?", (new.instance_id,)
        ).fetchone()[0])
        if status not in new.replace_statuses:
            if new.on_conflict is not None:
                m = new.on_conflict
                c.execute(INSERT_INBOX, (m.instance_id, m.execution_id, m.kind,
                                          m.visible_at, m.event))
            return status
        iid = (new.instance_id,)
        c.execute("DELETE FROM history WHERE instance_id=?", iid)
        c.execute("DELETE FROM inbox WHERE instance_id=?", iid)
        c.execute("DELETE FROM payloads WHERE instance_id=?", iid)
        c.execute("DELETE FROM activities WHERE instance_id=? AND lock_owner IS NULL", iid)
        c.execute(
            "UPDATE instances SET execution_id=?, name=?, version=?, status=?, "
            "parent_instance_id=?, parent_task_id=?, parent_execution_id=?, created_at=?, "
            "last_updated_at=?, scheduled_start_at=?, payload_flags=?, history_length=0 "
            "WHERE instance_id=?",
            row + iid,
        )
    if new.input is not None:
        c.execute(UPSERT_PAYLOAD, (new.instance_id, PAYLOAD_INPUT, new.input))
    if new.tags:
        c.execute(UPSERT_PAYLOAD, (new.instance_id, PAYLOAD_TAGS,
                                    json.dumps(new.tags, separators=(",", ":")).encode()))
    m = new.start
    c.execute(INSERT_INBOX, (m.instance_id, m.execution_id, m.kind, m.visible_at, m.event))
    return None

def check_fences(c: sqlite3.Connection, owner: str, steps: Sequence[StepWrite]) -> list[StepWrite]:
    held = {
        r[0]: (r[1], r[2])
        for r in c.execute(
            "SELECT instance_id, lock_owner, fence FROM instances WHERE instance_id IN "
            "(SELECT value FROM json_each(?))",
            (json_ids([s.instance_id for s in steps]),),
        )
    }
    return [s for s in steps if held.get(s.instance_id) != (owner, s.fence)]

def write_steps(
    c: sqlite3.Connection, steps: Sequence[StepWrite], now: int, claimed_flags: dict[str, int]
) -> tuple[bool, Optional[int]]:
    """Write ``steps`` (fences checked). Returns (work due now added, earliest later due)."""
    upd = []
    touch_less = []
    hist = []
    consumed: list[int] = []
    acts = []
    inbox = []
    upserts = []
    deletes = []
    work = False
    delayed: Optional[int] = None
    for s in steps:
        iid = s.instance_id
        consumed.extend(s.consumed)
        if s.clear_inbox:
            c.execute("DELETE FROM inbox WHERE instance_id=?", (iid,))
        for rid, vis in s.deferrals:
            c.execute("UPDATE inbox SET visible_at=? WHERE id=?", (vis, rid))
        if s.reset_history:
            c.execute("DELETE FROM history WHERE instance_id=?", (iid,))
        if s.history is not None and s.history_added:
            hist.append((iid, s.history_base, s.history))
        if s.cancel_activities:
            c.execute("DELETE FROM activities WHERE instance_id=?", (iid,))
        set_flags = clear_flags = 0
        present = claimed_flags.pop(iid, ALL_FLAGS)
        if s.set_custom_status:
            if s.custom_status is None:
                if present & FLAG_CS:
                    deletes.append((iid, PAYLOAD_CUSTOM_STATUS))
                clear_flags |= FLAG_CS
            else:
                upserts.append((iid, PAYLOAD_CUSTOM_STATUS, s.custom_status))
                set_flags |= FLAG_CS
        if s.set_result:
            for kind, flag, value in (
                (PAYLOAD_OUTPUT, FLAG_OUT, s.output),
                (PAYLOAD_FAILURE, FLAG_FAIL,
                 failure_to_json(s.failure).encode() if s.failure is not None else None),
            ):
                if value is None:
                    if present & flag:
                        deletes.append((iid, kind))
                    clear_flags |= flag
                else:
                    upserts.append((iid, kind, value))
                    set_flags |= flag
        if s.new_execution_id is not None:
            if s.new_input is None:
                if present & FLAG_IN:
                    deletes.append((iid, PAYLOAD_INPUT))
                clear_flags |= FLAG_IN
            else:
                upserts.append((iid, PAYLOAD_INPUT, s.new_input))
                set_flags |= FLAG_IN
            c.execute(
                "UPDATE instances SET execution_id=?, scheduled_start_at=NULL WHERE "
                "instance_id=?", (s.new_execution_id, iid))
        if s.touch:
            length = (0 if s.reset_history else s.history_base) + s.history_added
            upd.append((int(s.status), length, now, clear_flags, set_flags, iid))
        else:
            touch_less.append(iid)
        for a in s.activities:
            acts.append((a.instance_id, a.execution_id, a.task_id, a.name, a.input,
                         a.trace_context))
        for m in s.messages:
            inbox.append((m.instance_id, m.execution_id, m.kind, m.visible_at, m.event))
            if m.visible_at <= now:
                work = True
            elif delayed is None or m.visible_at < delayed:
                delayed = m.visible_at
        for m in s.targeted:
            cur = c.execute(
                "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) "
                "SELECT ?,?,?,?,? WHERE EXISTS (SELECT 1 FROM instances WHERE instance_id=?)",
                (m.instance_id, m.execution_id, m.kind, m.visible_at, m.event, m.instance_id),
            )
            work = work or cur.rowcount == 1
        for new in s.instances:
            create_in_tx(c, new)
            work = True
        if s.activities:
            work = True
    if upd:
        c.executemany(
            "UPDATE instances SET status=?, history_length=?, last_updated_at=?, "
            "payload_flags=(payload_flags & ~?) | ?, lock_owner=NULL, lock_expires=0 "
            "WHERE instance_id=?",
            upd,
        )
    if touch_less:
        c.execute(
            "UPDATE instances SET lock_owner=NULL, lock_expires=0 WHERE instance_id IN "
            "(SELECT value FROM json_each(?))", (json_ids(touch_less),))
    if deletes:
        c.executemany(DELETE_PAYLOAD, deletes)
    if upserts:
        c.executemany(UPSERT_PAYLOAD, upserts)
    if hist:
        c.executemany("INSERT INTO history(instance_id, seq, data) VALUES (?,?,?)", hist)
    if consumed:
        c.execute("DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?))",
                  (json_ids(consumed),))
    if acts:
        c.executemany(
            "INSERT INTO activities(instance_id, execution_id, task_id, name, input, "
            "trace_context) VALUES (?,?,?,?,?,?)",
            acts,
        )
    if inbox:
        c.executemany(INSERT_INBOX, inbox)
    return work, delayed

def write_outcomes(c: sqlite3.Connection, owner: str, outcomes: Sequence[ActivityOutcome]) -> bool:
    kept = {
        r[0]
        for r in c.execute(
            "DELETE FROM activities WHERE lock_owner=? AND id IN "
            "(SELECT value FROM json_each(?)) RETURNING id",
            (owner, json_ids([o.activity_id for o in outcomes])),
        ).fetchall()
    }
    rows = [
        (m.instance_id, m.execution_id, m.kind, m.visible_at, m.event)
        for o in outcomes if o.activity_id in kept for m in (o.message,)
    ]
    if rows:
        c.executemany(INSERT_INBOX, rows)
    return bool(rows)

def claim_instances(
    c: sqlite3.Connection, owner: str, now: int, limit: int, lease_us: int,
    claimed_flags: dict[str, int],
) -> list[ClaimedInstance]:
    # Visible inbox rows, oldest first, driven by the visible_at index (timers due far
    # ahead cost nothing), of instances nobody holds; the first ``limit`` distinct
    # instances are leased with the rows read here. Rows past the scan window wait for
    # the next turn. An instance whose expired lease still names an owner is taken over
    # (the write transaction is held from here to the lease: nobody changes it meanwhile).
    per: dict[str, list[InboxMessage]] = {}
    taken: set[str] = set()
    for rid, iid, eid, kind, vis, data, prev in c.execute(
        "SELECT b.id, b.instance_id, b.execution_id, b.kind, b.visible_at, b.event, "
        "i.lock_owner FROM inbox b INDEXED BY inbox_visible "
        "JOIN instances i ON i.instance_id=b.instance_id "
        "WHERE b.visible_at<=? AND i.lock_expires<? ORDER BY b.visible_at LIMIT ?",
        (now, now, max(limit * 4, 256)),
    ):
        lst = per.get(iid)
        if lst is None:
            if len(per) >= limit:
                continue
            lst = per[iid] = []
            if prev is not None:
                taken.add(iid)
        lst.append(InboxMessage(rid, kind, vis, data, eid))
    if not per:
        return []
    locked = c.execute(
        "UPDATE instances SET lock_owner=?, lock_expires=?, fence=fence+1 "
        "WHERE instance_id IN (SELECT value FROM json_each(?)) AND lock_expires<? "
        "RETURNING instance_id, execution_id, name, status, history_length, fence, "
        "parent_instance_id, parent_task_id, parent_execution_id, version, "
        "scheduled_start_at, payload_flags",
        (owner, now + lease_us, json_ids(list(per)), now),
    ).fetchall()
    out = []
    for iid, eid, name, status, hlen, fence, p_iid, p_tid, p_eid, ver, sched, flags in locked:
        claimed_flags[iid] = flags
        msgs = per[iid]
        if len(msgs) > 1:
            msgs.sort(key=_by_id)  # arrival order
        out.append(ClaimedInstance(
            iid, eid, name, OrchestrationStatus(status), hlen, fence, msgs, p_iid, p_tid,
            p_eid, ver, sched, bool(flags & FLAG_CS), iid in taken))
    return out

def claim_activities(
    c: sqlite3.Connection, owner: str, now: int, limit: int, lease_us: int
) -> list[ClaimedActivity]:
    rows = c.execute(
        "UPDATE activities SET lock_owner=?, lock_expires=?, attempt=attempt+1 "
        "WHERE id IN (SELECT id FROM activities WHERE lock_expires<? ORDER BY id LIMIT ?) "
        "RETURNING id, instance_id, execution_id, task_id, name, input, attempt, "
        "trace_context",
        (owner, now + lease_us, now, limit),
    ).fetchall()
    rows.sort()
    return [ClaimedActivity(*r) for r in rows]

def _by_id(m: InboxMessage) -> int:
    return m.id
