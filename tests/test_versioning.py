"""Orchestration versions: two workers of two versions share a store; each runs its own."""

from __future__ import annotations

import pytest

import durable_core as dc
from durable_core.status import OrchestrationStatus as S
from durable_core.versioning import compare_versions

pytestmark = pytest.mark.timeout(60)


def _registry(tag):
    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: tag, "who")

    def flow(ctx, _):
        return [ctx.version, (yield ctx.call_activity("who"))] if hasattr(ctx, "version") else \
            [None, (yield ctx.call_activity("who"))]

    reg.add_orchestrator(flow, "flow")
    return reg


def test_compare_versions():
    assert compare_versions("1.10", "1.9") == 1
    assert compare_versions("2", "2") == 0
    assert compare_versions(None, "0") == -1 and compare_versions("a", None) == 1
    assert compare_versions("1.0-beta", "1.0-alpha") == 1
    with pytest.raises(ValueError):
        dc.VersioningOptions(retry_after_seconds=0)
    with pytest.raises(TypeError):
        dc.VersioningOptions(match="strict")  # type: ignore[arg-type]


def test_two_workers_of_two_versions_each_run_their_own(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    strict = dc.VersionMatch.STRICT
    v1 = dc.Runtime(url, registry=_registry("old"),
                    versioning=dc.VersioningOptions(version="1", match=strict, retry_after_seconds=0.05))
    v2 = dc.Runtime(url, registry=_registry("new"),
                    versioning=dc.VersioningOptions(version="2", match=strict, retry_after_seconds=0.05))
    with v1, v2:
        c = v1.client
        ids = {c.schedule_new_orchestration("flow", version=v): v for v in ["1", "2"] * 5}
        for iid, v in ids.items():
            st = c.wait_for_orchestration_completion(iid, timeout=30)
            assert st.runtime_status == S.COMPLETED and st.version == v
            assert st.output[1] == ("old" if v == "1" else "new")
        assert v1.worker.stats["rejected"] + v2.worker.stats["rejected"] >= 0


def test_a_version_this_worker_does_not_run_fails_when_asked_to(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    opts = dc.VersioningOptions(version="1.2", match=dc.VersionMatch.CURRENT_OR_OLDER,
                                on_mismatch=dc.VersionFailure.FAIL)
    with dc.Runtime(url, registry=_registry("w"), versioning=opts) as rt:
        c = rt.client
        older = c.schedule_new_orchestration("flow", version="1.1")
        none = c.schedule_new_orchestration("flow")
        newer = c.schedule_new_orchestration("flow", version="1.10")
        assert c.wait_for_orchestration_completion(older, timeout=20).runtime_status == S.COMPLETED
        assert c.wait_for_orchestration_completion(none, timeout=20).runtime_status == S.COMPLETED
        st = c.wait_for_orchestration_completion(newer, timeout=20)
        assert st.runtime_status == S.FAILED
        assert st.failure_details.error_type == "VersionMismatchError"
        assert "'1.10'" in st.failure_details.message and "'1.2'" in st.failure_details.message


def test_a_rejected_instance_waits_for_a_worker_of_its_version(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    only1 = dc.VersioningOptions(version="1", match=dc.VersionMatch.STRICT, retry_after_seconds=0.05)
    with dc.Runtime(url, registry=_registry("old"), versioning=only1) as rt:
        iid = rt.client.schedule_new_orchestration("flow", version="2")
        with pytest.raises(TimeoutError):
            rt.client.wait_for_orchestration_start(iid, timeout=0.5)
        assert rt.worker.stats["rejected"] >= 2
    with dc.Runtime(url, registry=_registry("new")) as rt:  # any version
        assert rt.client.wait_for_orchestration_completion(iid, timeout=20).output[1] == "new"
