"""The ``durable-core`` command line through its entry point: exit codes, ``--json`` parsed,
one-line errors on standard error.

Most tests call :func:`durable_core.cli.main` in process (what the ``durable-core`` script and
``python -m durable_core`` run); a few run the real script and module as subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import corrupt_store
import ops_flows
from durable_core.cli import main

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: Any) -> tuple[str, dict[str, str]]:
    """A store with finished, failed and waiting instances (ops_flows.populate)."""
    db = tmp_path_factory.mktemp("cli") / "ops.db"
    url = f"sqlite:///{db}"
    return url, ops_flows.populate(url)


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A store of its own, for tests that change it."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    return url, ops_flows.populate(url)


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: Any, *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("durable-core: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, err)


# -- reading ---------------------------------------------------------------------------------


def test_list_table_and_json(store: Any, capsys: Any) -> None:
    url, ids = store
    code, out, err = run(capsys, "list", "--store", url, "--color", "never")
    assert code == 0 and err == ""
    lines = out.strip().split("\n")
    assert lines[0].split()[:3] == ["INSTANCE", "ID", "NAME"]
    assert lines[-1] == "5 instances"
    col = lines[0].index("STATUS")
    statuses = {ln.split()[0]: ln[col:].split()[0] for ln in lines[1:-1]}
    assert statuses == {"showcase-1": "Completed", "failing-1": "Failed", "waiter-1": "Running",
                        "xss-1": "Running", ids["child"]: "Completed"}
    assert all(len(ln) < 200 for ln in lines)  # payloads truncated
    full = run(capsys, "list", "--store", url, "--full")[1]
    assert "window.__pwned=2" in full  # --full shows the whole payload
    doc = run_json(capsys, "list", "--store", url)
    assert doc["continuationToken"] is None
    by_id = {r["instanceId"]: r for r in doc["instances"]}
    assert by_id["showcase-1"]["output"]["retried"] == "ok after 3"
    assert by_id["failing-1"]["failure"]["errorType"] == "TaskFailedError"


def test_list_filters_and_paging(store: Any, capsys: Any) -> None:
    url, ids = store

    def ids_of(*args: str) -> list[str]:
        return [r["instanceId"] for r in run_json(capsys, "list", "--store", url, *args)["instances"]]

    assert sorted(ids_of("--status", "running")) == ["waiter-1", "xss-1"]
    assert sorted(ids_of("--status", "failed,Completed")) == sorted(["failing-1", "showcase-1", ids["child"]])
    assert ids_of("--name", "failing") == ["failing-1"]
    assert ids_of("--prefix", "xss") == ["xss-1"]
    assert ids_of("--parent", "showcase-1") == [ids["child"]]
    assert ids_of("--created-before", "2000-01-01") == []
    assert len(ids_of("--created-after", "1h")) == 5
    first = run_json(capsys, "list", "--store", url, "--page-size", "2")
    assert len(first["instances"]) == 2 and first["continuationToken"]
    second = run_json(capsys, "list", "--store", url, "--page-size", "2", "--page-token",
                      first["continuationToken"])
    assert {r["instanceId"] for r in first["instances"]}.isdisjoint(
        r["instanceId"] for r in second["instances"])
    assert len(ids_of("--page-size", "2", "--all")) == 5
    code, out, _ = run(capsys, "list", "--store", url, "--page-size", "2")
    assert "next page: --page-token " in out


def test_show(store: Any, capsys: Any) -> None:
    url, ids = store
    code, out, err = run(capsys, "show", "showcase-1", "--store", url)
    assert code == 0
    assert "Status:" in out and "Completed" in out and '"who": "ops"' in out
    assert ids["child"] in out  # its child is listed
    code, out, _ = run(capsys, "show", "failing-1", "--store", url)
    assert "Failure: TaskFailedError" in out and "Stack trace:" in out and "Traceback" in out
    assert "caused by ValueError: the activity exploded" in out
    doc = run_json(capsys, "show", "showcase-1", "--store", url)
    assert doc["runtimeStatus"] == "Completed" and doc["input"] == {"who": "ops"}
    assert doc["children"] == [{"instanceId": ids["child"], "name": "child", "runtimeStatus": "Completed"}]
    assert run_json(capsys, "show", ids["child"], "--store", url)["parentInstanceId"] == "showcase-1"
    assert "stackTrace" in run_json(capsys, "show", "failing-1", "--store", url)["failure"]


def test_history(store: Any, capsys: Any) -> None:
    url, _ = store
    code, out, _ = run(capsys, "history", "showcase-1", "--store", url)
    assert code == 0
    lines = out.strip().split("\n")
    assert lines[0].split() == ["SEQ", "TIME", "(UTC)", "EVENT", "DETAILS"]
    kinds = [ln.split()[3] for ln in lines[1:]]
    assert kinds.count("TaskScheduled") == 6 and kinds.count("TaskFailed") == 2
    assert "EventRaised" in kinds and "SubOrchestrationInstanceCreated" in kinds
    assert lines[1].split()[1].startswith("20")  # a date: every event has its time
    events = run_json(capsys, "history", "showcase-1", "--store", url)
    assert [e["seq"] for e in events] == list(range(len(events)))
    started = next(e for e in events if e["eventType"] == "ExecutionStarted")
    assert started["input"] == {"who": "ops"} and started["timestamp"].endswith("Z")


def test_color_marks_statuses(store: Any, capsys: Any) -> None:
    url, _ = store
    out = run(capsys, "list", "--store", url, "--color", "always")[1]
    assert "\x1b[31mFailed" in out and "\x1b[32mCompleted" in out
    assert "\x1b[" not in run(capsys, "list", "--store", url)[1]  # not a terminal: no colour


# -- errors: one line, non-zero ----------------------------------------------------------------


def test_unknown_id(store: Any, capsys: Any) -> None:
    url, _ = store
    for cmd in (["show", "nope"], ["history", "nope"], ["terminate", "nope"],
                ["suspend", "nope"], ["resume", "nope"], ["restart", "nope"],
                ["raise-event", "nope", "go"], ["purge", "nope"]):
        code, out, err = run(capsys, *cmd, "--store", url)
        assert code == 1, cmd
        one_line_error(err, "nope")
        assert out == ""


def test_missing_unreadable_and_corrupt_stores(tmp_path: Path, capsys: Any) -> None:
    code, _, err = run(capsys, "list", "--store", str(tmp_path / "missing.db"))
    assert code == 3
    one_line_error(err, "missing.db")
    assert not (tmp_path / "missing.db").exists()  # a typo does not create a store
    garbage = corrupt_store.write_garbage_file(tmp_path / "garbage.db")
    for cmd in (["list"], ["show", "x"], ["migrate"]):
        code, _, err = run(capsys, *cmd, "--store", garbage)
        assert code == 3, (cmd, err)
        one_line_error(err, "store")
    code, _, err = run(capsys, "list", "--store", "postgresql://nobody@127.0.0.1:1/x")
    assert code == 3
    one_line_error(err)
    code, _, err = run(capsys, "list", "--store", "mysql://x")
    assert code == 3
    one_line_error(err, "mysql://x")


def test_corrupt_history_and_payloads(fresh: Any, capsys: Any) -> None:
    url, ids = fresh
    path = corrupt_store.db_path_of(url)
    corrupt_store.truncate_history(path, "showcase-1")
    code, _, err = run(capsys, "history", "showcase-1", "--store", url)
    assert code == 3
    one_line_error(err, "showcase-1", "cannot be decoded")
    corrupt_store.set_raw_output(path, "showcase-1")
    code, out, _ = run(capsys, "show", "showcase-1", "--store", url)
    assert code == 0 and "<cannot be decoded:" in out
    doc = run_json(capsys, "show", "showcase-1", "--store", url)
    assert "$undecodable" in doc["output"] and doc["output"]["error"]
    code, out, _ = run(capsys, "list", "--store", url)
    assert code == 0 and "<undecodable" in out


def test_bad_json_and_bad_arguments(store: Any, capsys: Any, tmp_path: Path) -> None:
    url, _ = store
    code, _, err = run(capsys, "start", "showcase", "--input", "{nope", "--store", url)
    assert code == 2
    one_line_error(err, "--input", "not valid JSON")
    code, _, err = run(capsys, "raise-event", "waiter-1", "go", "--data", "[1,", "--store", url)
    assert code == 2
    one_line_error(err, "--data")
    code, _, err = run(capsys, "start", "showcase", "--input", "NaN", "--store", url)
    assert code == 2
    code, _, err = run(capsys, "start", "showcase", "--input", f"@{tmp_path / 'no.json'}",
                       "--store", url)
    assert code == 2
    one_line_error(err, "cannot read")
    code, _, err = run(capsys, "list", "--status", "sleeping", "--store", url)
    assert code == 2
    one_line_error(err, "sleeping")
    code, _, err = run(capsys, "list", "--created-after", "yesterday-ish", "--store", url)
    assert code == 2
    one_line_error(err, "yesterday-ish")
    with pytest.raises(SystemExit) as e:
        main(["list", "--no-such-option"])
    assert e.value.code == 2
    capsys.readouterr()


def test_unknown_orchestrator_name(store: Any, capsys: Any) -> None:
    url, _ = store
    code, _, err = run(capsys, "start", "no_such_flow", "--store", url)
    assert code == 1
    one_line_error(err, "unknown orchestrator", "no_such_flow")
    code, _, err = run(capsys, "start", "no_such_flow", "--module", "ops_flows:registry",
                       "--store", url)
    assert code == 1
    one_line_error(err, "unknown orchestrator", "showcase")  # lists what the module registers
    total = sum(len(run_json(capsys, "list", "--store", url)["instances"]) for _ in [0])
    assert total == 5  # nothing was started


# -- changing ----------------------------------------------------------------------------------


def test_start_raise_terminate_suspend_resume_restart(fresh: Any, capsys: Any) -> None:
    import durable_core as dc

    url, ids = fresh
    iid = run_json(capsys, "start", "waiter", "--input", '{"n": 2}', "--id", "cli-1",
                   "--store", url)["instanceId"]
    assert iid == "cli-1"
    code, _, err = run(capsys, "start", "waiter", "--id", "cli-1", "--store", url)
    assert code == 1
    one_line_error(err, "already exists")
    mod = run_json(capsys, "start", "waiter", "--module", "ops_flows:registry", "--store", url)
    assert mod["instanceId"]
    forced = run_json(capsys, "start", "brand_new_flow", "--force", "--store", url)
    assert forced["instanceId"]
    with dc.Runtime(url, registry=ops_flows.registry) as rt:
        c = rt.client
        c.wait_for_orchestration_start("cli-1", timeout=30)
        assert run(capsys, "suspend", "cli-1", "--reason", "pause", "--store", url)[0] == 0
        st = c.get_orchestration_state("cli-1")
        while st.runtime_status != dc.OrchestrationStatus.SUSPENDED:
            st = c.wait_for_orchestration_change("cli-1", since=st, timeout=10)
        code, _, err = run(capsys, "suspend", "cli-1", "--store", url)
        assert code == 1
        one_line_error(err, "Suspended")
        assert run(capsys, "resume", "cli-1", "--store", url)[0] == 0
        code, out, _ = run(capsys, "raise-event", "cli-1", "go", "--data", '{"ok": 1}', "--store", url)
        assert code == 0 and "go" in out
        assert c.wait_for_orchestration_completion("cli-1", timeout=30).output == {"ok": 1}
        code, _, err = run(capsys, "resume", "cli-1", "--store", url)
        assert code == 1
        code, _, err = run(capsys, "terminate", "cli-1", "--store", url)
        assert code == 1
        one_line_error(err, "already Completed")
        code, _, err = run(capsys, "raise-event", "cli-1", "go", "--store", url)
        assert code == 1
        # terminate the waiting one
        assert run_json(capsys, "terminate", "waiter-1", "--reason", "enough", "--store", url)
        st = c.wait_for_orchestration_completion("waiter-1", timeout=30)
        assert st.runtime_status == dc.OrchestrationStatus.TERMINATED and st.output == "enough"
        # restart in place and as a new instance
        again = run_json(capsys, "restart", "cli-1", "--store", url)
        assert again["instanceId"] == "cli-1"
        code, _, err = run(capsys, "restart", "cli-1", "--store", url)
        assert code == 1
        one_line_error(err, "still running")
        new = run_json(capsys, "restart", "cli-1", "--new-id", "--store", url)["instanceId"]
        assert new != "cli-1"
        c.raise_orchestration_event("cli-1", "go", data=2)
        c.raise_orchestration_event(new, "go", data=3)
        assert c.wait_for_orchestration_completion(new, timeout=30).output == 3
        # start --wait prints the output
        code, out, _ = run(capsys, "start", "many", "--input", "2", "--wait", "30",
                           "--module", "ops_flows:registry", "--store", url)
        assert code == 0 and "Completed: 2" in out


def test_purge_one_and_by_filter(fresh: Any, capsys: Any) -> None:
    url, ids = fresh
    code, _, err = run(capsys, "purge", "waiter-1", "--store", url)
    assert code == 1
    one_line_error(err, "Running", "terminate it first")
    assert run_json(capsys, "purge", "failing-1", "--store", url) == {"matched": 1, "purged": 1}
    code, _, err = run(capsys, "show", "failing-1", "--store", url)
    assert code == 1
    code, _, err = run(capsys, "purge", "--store", url)
    assert code == 2
    one_line_error(err, "purge what")
    code, _, err = run(capsys, "purge", "--status", "running", "--store", url)
    assert code == 2
    one_line_error(err, "Running")
    dry = run_json(capsys, "purge", "--status", "completed", "--dry-run", "--store", url)
    assert dry == {"matched": 2, "purged": 0, "dryRun": True}
    code, _, err = run(capsys, "purge", "--status", "completed", "--store", url)
    assert code == 2  # no terminal to ask, no --yes
    one_line_error(err, "--yes")
    code, out, err = run(capsys, "purge", "--all-finished", "--yes", "--store", url)
    assert code == 0 and out.strip() == "purged 2 instances"  # showcase and its child
    left = {r["instanceId"] for r in run_json(capsys, "list", "--store", url)["instances"]}
    assert left == {"waiter-1", "xss-1"}


def test_purge_progress_bar_on_a_terminal(fresh: Any, capsys: Any, monkeypatch: Any) -> None:
    import io

    from durable_core.cli import output

    url, _ = fresh

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr(output.sys, "stderr", err)
    code = main(["purge", "--status", "completed,failed", "--yes", "--store", url])
    assert code == 0
    drawn = err.getvalue()
    assert "purging [" in drawn and "3/3" in drawn and drawn.endswith("\n")
    assert capsys.readouterr().out.strip() == "purged 3 instances"


def test_migrate(tmp_path: Path, capsys: Any) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    first = run_json(capsys, "migrate", "--store", url)
    assert first["versionNow"] >= 1
    again = run_json(capsys, "migrate", "--store", url)
    assert again["versionBefore"] == again["versionNow"] == first["versionNow"]
    code, out, _ = run(capsys, "migrate", "--store", url)
    assert code == 0 and "nothing to do" in out


def test_store_from_environment(store: Any, capsys: Any, monkeypatch: Any) -> None:
    url, _ = store
    monkeypatch.setenv("DURABLE_CORE_STORE", url)
    assert len(run_json(capsys, "list")["instances"]) == 5
    monkeypatch.delenv("DURABLE_CORE_STORE")
    monkeypatch.setenv("DURABLE_CORE_DB", url)  # the older name still works
    assert len(run_json(capsys, "list")["instances"]) == 5
    path = corrupt_store.db_path_of(url)
    assert len(run_json(capsys, "list", "--db", path)["instances"]) == 5  # a bare path, --db


def test_dashboard_refuses_an_open_network_address(store: Any, capsys: Any) -> None:
    url, _ = store
    code, _, err = run(capsys, "dashboard", "--host", "0.0.0.0", "--port", "0", "--store", url)
    assert code == 2
    one_line_error(err, "refusing", "--api-key", "--allow-unauthenticated")


def test_completion_scripts(capsys: Any) -> None:
    code, out, _ = run(capsys, "completion", "bash")
    assert code == 0 and "complete -o default -F _durable_core durable-core" in out
    assert "purge)" in out and "--all-finished" in out and "--store" in out
    code, out, _ = run(capsys, "completion", "zsh")
    assert code == 0 and out.startswith("#compdef durable-core")


# -- the real entry points -------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("DURABLE_CORE_STORE", None)
    env.pop("DURABLE_CORE_DB", None)
    return env


def test_script_and_module_entry_points(store: Any) -> None:
    url, _ = store
    script = Path(sys.executable).with_name("durable-core")
    cmds = [[sys.executable, "-m", "durable_core"]]
    if script.exists():
        cmds.append([str(script)])
    for cmd in cmds:
        p = subprocess.run([*cmd, "list", "--store", url, "--json"], capture_output=True,
                           text=True, env=_env(), timeout=60)
        assert p.returncode == 0, p.stderr
        assert len(json.loads(p.stdout)["instances"]) == 5
        p = subprocess.run([*cmd, "show", "nope", "--store", url], capture_output=True, text=True,
                           env=_env(), timeout=60)
        assert p.returncode == 1 and p.stdout == ""
        one_line_error(p.stderr, "nope")


def test_cli_works_without_fastapi(store: Any, tmp_path: Path) -> None:
    """With fastapi unimportable the CLI still works; only `dashboard` says what it needs."""
    url, _ = store
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fastapi', 'starlette', 'uvicorn', 'pydantic'):\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env["PYTHONPATH"]])
    p = subprocess.run([sys.executable, "-m", "durable_core", "list", "--store", url, "--json"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "-m", "durable_core", "dashboard", "--store", url],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2
    one_line_error(p.stderr, "pip install 'durable_core[fastapi]'")
