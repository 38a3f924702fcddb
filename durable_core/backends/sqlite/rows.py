"""How the SQLite backend lays rows out: payload kinds as flag bits on the instance row, the
instance SELECT with its payloads joined in, the statements several writers share, the backlog
read, and the conversion of a selected row to the contract's :class:`~durable_core.backends.base.InstanceRow`.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from ...status import OrchestrationStatus
from ..base import InstanceRow, failure_from_json
from .schema import (
    PAYLOAD_CUSTOM_STATUS,
    PAYLOAD_FAILURE,
    PAYLOAD_INPUT,
    PAYLOAD_OUTPUT,
    PAYLOAD_TAGS,
)

FLAG_CS = 1 << PAYLOAD_CUSTOM_STATUS
FLAG_OUT = 1 << PAYLOAD_OUTPUT
FLAG_FAIL = 1 << PAYLOAD_FAILURE
FLAG_IN = 1 << PAYLOAD_INPUT
FLAG_TAGS = 1 << PAYLOAD_TAGS
ALL_FLAGS = FLAG_CS | FLAG_OUT | FLAG_FAIL | FLAG_IN | FLAG_TAGS

INSTANCE_COLS = (
    "i.instance_id, i.execution_id, i.name, i.status, i.created_at, i.last_updated_at, "
    "i.parent_instance_id, i.parent_task_id, i.history_length, i.version, "
    "i.scheduled_start_at, i.payload_flags"
)
PAYLOAD_KINDS = (PAYLOAD_INPUT, PAYLOAD_OUTPUT, PAYLOAD_CUSTOM_STATUS, PAYLOAD_FAILURE,
                 PAYLOAD_TAGS)


def select_instances(payloads: bool) -> str:
    """``SELECT ... FROM instances i`` with the payloads joined in (one statement: one
    snapshot); without ``payloads`` only the failure is read."""
    kinds = PAYLOAD_KINDS if payloads else (PAYLOAD_FAILURE,)
    cols = ", ".join(f"p{k}.data" if k in kinds else "NULL" for k in PAYLOAD_KINDS)
    joins = " ".join(
        f"LEFT JOIN payloads p{k} ON p{k}.instance_id=i.instance_id AND p{k}.kind={k}"
        for k in kinds)
    return f"SELECT {INSTANCE_COLS}, {cols} FROM instances i {joins}"


SELECT_FULL = select_instances(True)
SELECT_LEAN = select_instances(False)
INSERT_INBOX = (
    "INSERT INTO inbox(instance_id, execution_id, kind, visible_at, event) VALUES (?,?,?,?,?)"
)
UPSERT_PAYLOAD = (
    "INSERT INTO payloads(instance_id, kind, data) VALUES (?,?,?) "
    "ON CONFLICT(instance_id, kind) DO UPDATE SET data=excluded.data"
)
DELETE_PAYLOAD = "DELETE FROM payloads WHERE instance_id=? AND kind=?"
# Backend.backlog() in one statement (one snapshot), all three terms judged at ``?1`` (now):
# the due inbox rows by the visible_at index (timers due later and finished instances, which
# hold no inbox rows, are never read) with a key lookup of each one's instance, as the claim
# reads them; the activities table holds only unfinished activities (a finished instance's are
# deleted), so counting it costs the live queue, not the store's history
BACKLOG = (
    "SELECT count(DISTINCT b.instance_id), min(b.visible_at), "
    "(SELECT count(*) FROM activities WHERE lock_expires<?1) "
    "FROM inbox b INDEXED BY inbox_visible "
    "JOIN instances i ON i.instance_id=b.instance_id "
    "WHERE b.visible_at<=?1 AND i.lock_expires<?1"
)


def json_ids(values: Sequence[Any]) -> str:
    return json.dumps(list(values))


def instance_row(r: Sequence[Any]) -> InstanceRow:
    """An InstanceRow from a ``select`` row (instance columns, then the five payloads)."""
    tags = r[12 + PAYLOAD_TAGS]
    fail = r[12 + PAYLOAD_FAILURE]
    return InstanceRow(
        instance_id=r[0],
        execution_id=r[1],
        name=r[2],
        status=OrchestrationStatus(r[3]),
        created_at=r[4],
        last_updated_at=r[5],
        parent_instance_id=r[6],
        parent_task_id=r[7],
        history_length=r[8],
        version=r[9],
        scheduled_start_at=r[10],
        input=r[12 + PAYLOAD_INPUT],
        output=r[12 + PAYLOAD_OUTPUT],
        custom_status=r[12 + PAYLOAD_CUSTOM_STATUS],
        failure=failure_from_json(bytes(fail).decode("utf-8", "replace"))
        if fail is not None else None,
        tags=parse_tags(tags),
    )


def parse_tags(data: Optional[bytes]) -> Optional[dict[str, str]]:
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
