"""A dispatcher turn on PostgreSQL: steps, activity outcomes and the next claims in one
transaction, in two round trips (one without steps).

The turn runs in psycopg's pipeline mode. Round trip one (only when there are steps) locks the
rows of the steps' instances and reads their lease (the fence check). Round trip two sends
every write -- each kind of row for all steps at once, as one statement over arrays -- the
claims, the change announcement if one is due, and ``COMMIT``, and reads the claimed work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from ...status import OrchestrationStatus
from ..base import (
    ActivityOutcome,
    ClaimedActivity,
    ClaimedInstance,
    InboxMessage,
    StepWrite,
    failure_to_json,
)
from . import sql

if TYPE_CHECKING:  # pragma: no cover
    from .backend import PostgresBackend

__all__ = ["write_steps", "write_outcomes", "claim_instances", "claimed_instances",
           "claim_activities", "claimed_activities", "create_args", "msg_arrays"]


def msg_arrays(msgs: Sequence[Any]) -> list[list[Any]]:
    """Five parallel arrays (instance, execution, kind, visible_at, event) of messages."""
    return [[m.instance_id for m in msgs], [m.execution_id for m in msgs],
            [m.kind for m in msgs], [m.visible_at for m in msgs], [m.event for m in msgs]]


def create_args(new: Any) -> tuple[Any, ...]:
    """The arguments of the ``create_instance`` function for a :class:`NewInstance`."""
    import json

    s = new.start
    c = new.on_conflict
    tags = json.dumps(new.tags, separators=(",", ":")) if new.tags else None
    return (
        new.instance_id, new.execution_id, new.name, new.version, new.parent_instance_id,
        new.parent_task_id, new.parent_execution_id, new.created_at, new.scheduled_start_at,
        new.input, tags, s.execution_id, s.kind, s.visible_at, s.event,
        [int(x) for x in new.replace_statuses],
        c.instance_id if c else None, c.execution_id if c else None, c.kind if c else None,
        c.visible_at if c else None, c.event if c else None,
    )


def write_steps(conn: Any, owner: str, steps: Sequence[StepWrite],
                now: int) -> tuple[bool, Optional[int]]:
    """Send the writes of ``steps`` (fences checked) down the pipeline.

    Returns (work due now added, earliest later due time)."""
    clear: list[str] = []
    defer_iids: list[str] = []
    defer_ids: list[int] = []
    defer_vis: list[int] = []
    reset: list[str] = []
    cancel: list[str] = []
    h_iid: list[str] = []
    h_seq: list[int] = []
    h_data: list[bytes] = []
    c_iids: list[str] = []
    consumed: list[int] = []
    acts: list[Any] = []
    msgs: list[Any] = []
    targeted: list[Any] = []
    news: list[Any] = []
    upd: list[list[Any]] = [[] for _ in range(12)]
    work = False
    delayed: Optional[int] = None
    for s in steps:
        iid = s.instance_id
        consumed.extend(s.consumed)
        c_iids.extend([iid] * len(s.consumed))
        if s.clear_inbox:
            clear.append(iid)
        for rid, vis in s.deferrals:
            defer_iids.append(iid)
            defer_ids.append(rid)
            defer_vis.append(vis)
        if s.reset_history:
            reset.append(iid)
        if s.history is not None and s.history_added:
            h_iid.append(iid)
            h_seq.append(s.history_base)
            h_data.append(s.history)
        if s.cancel_activities:
            cancel.append(iid)
        failure = None
        if s.set_result and s.failure is not None:
            failure = failure_to_json(s.failure)
        row = (iid, s.touch, int(s.status),
               (0 if s.reset_history else s.history_base) + s.history_added,
               s.set_custom_status, s.custom_status if s.set_custom_status else None,
               s.set_result, s.output if s.set_result else None, failure,
               s.new_execution_id, s.new_input if s.new_execution_id is not None else None,
               s.fence)
        for col, v in zip(upd, row):
            col.append(v)
        acts.extend(s.activities)
        for m in s.messages:
            msgs.append(m)
            if m.visible_at <= now:
                work = True
            elif delayed is None or m.visible_at < delayed:
                delayed = m.visible_at
        if s.targeted:
            targeted.extend(s.targeted)
            work = True
        if s.instances:
            news.extend(s.instances)
            work = True
        if s.activities:
            work = True
    ex = conn.execute
    if clear:
        ex(sql.CLEAR_INBOX, (clear,))
    if defer_ids:
        ex(sql.DEFER, (defer_iids, defer_ids, defer_vis))
    if reset:
        ex(sql.RESET_HISTORY, (reset,))
    if cancel:
        ex(sql.CANCEL_ACTIVITIES, (cancel,))
    if targeted:
        ex(sql.INSERT_TARGETED, msg_arrays(targeted))
    for new in news:
        ex(sql.CREATE, create_args(new))
    if h_iid:
        ex(sql.APPEND_HISTORY, (h_iid, h_seq, h_data))
    if consumed:
        ex(sql.CONSUME, (c_iids, consumed))
    if acts:
        ex(sql.QUEUE_ACTIVITIES, (
            [a.instance_id for a in acts], [a.execution_id for a in acts],
            [a.task_id for a in acts], [a.name for a in acts], [a.input for a in acts],
            [a.trace_context for a in acts]))
    if msgs:
        ex(sql.INSERT_INBOX, msg_arrays(msgs))
    # last: the rows are written while the lease is still visibly held
    ex(sql.UPDATE_INSTANCES, [now] + upd + [owner, len(set(upd[0]))])
    return work, delayed


def write_outcomes(conn: Any, owner: str, outcomes: Sequence[ActivityOutcome]) -> None:
    """Send the activity outcomes (for activities ``owner`` still holds) down the pipeline."""
    ms = [o.message for o in outcomes]
    conn.execute(sql.OUTCOMES, [[o.activity_id for o in outcomes], owner,
                                [o.activity_id for o in outcomes]] + msg_arrays(ms))


def claim_instances(conn: Any, b: "PostgresBackend", owner: str, limit: int) -> Any:
    """Send the instance claim; returns its cursor (read it with :func:`claimed_instances`)."""
    return conn.execute(sql.CLAIM_INSTANCES, {
        "scan": max(limit * 3, 64), "limit": limit, "owner": owner, "lease": b._lease_us})


def claimed_instances(cur: Any) -> list[ClaimedInstance]:
    """The claimed instances from a claim's cursor, each with its inbox rows in arrival order."""
    out: list[ClaimedInstance] = []
    last: Optional[ClaimedInstance] = None
    for (iid, eid, name, status, hlen, fence, p_iid, p_tid, p_eid, ver, sched, has_cs, taken,
         _first, rid, kind, vis, event, m_eid) in cur.fetchall():
        if last is None or last.instance_id != iid:
            last = ClaimedInstance(iid, eid, name, OrchestrationStatus(status), hlen, fence, [],
                                   p_iid, p_tid, p_eid, ver, sched, bool(has_cs), bool(taken))
            out.append(last)
        last.messages.append(InboxMessage(rid, kind, vis, bytes(event), m_eid))
    return out


def claim_activities(conn: Any, b: "PostgresBackend", owner: str, limit: int) -> Any:
    """Send the activity claim; returns its cursor."""
    return conn.execute(sql.CLAIM_ACTIVITIES, {"limit": limit, "owner": owner,
                                               "lease": b._lease_us})


def claimed_activities(cur: Any) -> list[ClaimedActivity]:
    """The claimed activities from a claim's cursor, in queue order."""
    rows = sorted(cur.fetchall())
    return [ClaimedActivity(r[0], r[1], r[2], r[3], r[4],
                            bytes(r[5]) if r[5] is not None else None, r[6], r[7]) for r in rows]

