"""docs/porting.md runs as written, and what it promises about ported code holds.

Every ```python block of the guide is executed, in order, in one namespace and in a fresh
directory (the blocks use ``sqlite:///durable.db``). Blocks in other languages (bash) are not
run.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import durable_core as dc

GUIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "porting.md")
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.M | re.S)


def python_blocks(text: str) -> list[str]:
    """The code of the guide's fenced blocks whose info string is exactly ``python``."""
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1).strip() == "python"]


def test_guide_has_code() -> None:
    with open(GUIDE, encoding="utf-8") as f:
        blocks = python_blocks(f.read())
    assert len(blocks) >= 5


def test_guide_code_runs(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(GUIDE, encoding="utf-8") as f:
        blocks = python_blocks(f.read())
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {"__name__": "porting_guide"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{GUIDE}:block{i}", "exec"), ns)  # noqa: S102
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"docs/porting.md python block {i} failed:\n{code}") from exc
    assert os.path.exists(tmp_path / "durable.db")


def test_block_extraction() -> None:
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python no-run\ny\n```\n"
    assert python_blocks(text) == ["x = 1\n"]


def test_sdk_task_module_names() -> None:
    from durable_core import context, errors, task

    assert task.OrchestrationContext is context.OrchestrationContext
    assert task.ActivityContext is context.ActivityContext
    assert task.TaskFailedError is errors.TaskFailedError
    assert task.NonDeterminismError is errors.NonDeterminismError
    assert task.TaskCancelledError is errors.TaskCancelledError
    with pytest.raises(AttributeError):
        task.NoSuchName  # noqa: B018


def test_client_datetimes_may_be_naive_or_aware(tmp_path: Any) -> None:
    """Every client API taking a datetime takes naive (UTC) and aware ones alike."""
    reg = dc.Registry()

    def hello(ctx: Any) -> Any:
        return ctx.current_utc_datetime.isoformat()

    reg.add_orchestrator(hello)
    url = f"sqlite:///{tmp_path / 'dt.db'}"
    with dc.Runtime(url, registry=reg) as rt:
        now = datetime.now(timezone.utc)
        ids = []
        for start in (now, now.replace(tzinfo=None), now.astimezone(timezone(timedelta(hours=-5)))):
            ids.append(rt.client.schedule_new_orchestration(hello, start_at=start))
        for iid in ids:
            st = rt.client.wait_for_orchestration_completion(iid, timeout=30)
            assert datetime.fromisoformat(st.output) >= now - timedelta(seconds=1)
        day = timedelta(days=1)
        for lo, hi in ((now - day, now + day),
                       ((now - day).replace(tzinfo=None), (now + day).replace(tzinfo=None))):
            found = rt.client.query_orchestrations(created_time_from=lo, created_time_to=hi)
            assert {s.instance_id for s in found.states} >= set(ids)
