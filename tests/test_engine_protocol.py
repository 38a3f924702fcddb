"""The protocol constants: one module both engines import, checked by the C core when it
registers (an extension built from other sources refuses to load), and no import cycle."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import both

from durable_core import history as h
from durable_core import protocol
from durable_core.engine import OrchestrationExecutor
from durable_core.task import ScheduleTask

REGISTER = both("_replay_register", "durable_core._engine_py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _table(**changes: Any) -> dict[str, Any]:
    t = dict(protocol.CONSTANTS)
    for k, v in changes.items():
        if v is _DROP:
            del t[k]
        else:
            t[k] = v
    return t


_DROP = object()


def test_constants_are_distinct_and_complete() -> None:
    kinds = [v for k, v in protocol.CONSTANTS.items() if k.startswith("K_")]
    actions = [v for k, v in protocol.CONSTANTS.items() if k.startswith("A_")]
    roles = [v for k, v in protocol.CONSTANTS.items() if k.startswith("T_")]
    assert kinds == list(range(len(kinds))) and actions == list(range(len(actions)))
    assert roles == [None, "retry", "timeout"]
    for name, value in protocol.CONSTANTS.items():
        assert getattr(protocol, name) == value
    assert set(protocol.__all__) == set(protocol.CONSTANTS) | {"CONSTANTS"}


@pytest.mark.parametrize("register", REGISTER)
def test_register_accepts_its_own_table(register: Any) -> None:
    register(h.EVENT_CLASSES, ScheduleTask, dict(protocol.CONSTANTS))


@pytest.mark.parametrize("register", REGISTER)
@pytest.mark.parametrize("changes,named", [
    ({"K_TIMER": 9}, "K_TIMER"),
    ({"A_SEND": 0}, "A_SEND"),
    ({"K_ACTIVITY": True}, "K_ACTIVITY"),  # an int, not a bool
    ({"K_ALL": "4"}, "K_ALL"),
    ({"K_DONE": 2**70}, "K_DONE"),
    ({"T_RETRY": "again"}, "T_RETRY"),
    ({"T_USER": "user"}, "T_USER"),
    ({"T_TIMEOUT": None}, "T_TIMEOUT"),
    ({"K_EVENT": _DROP}, "K_EVENT"),
    ({"T_TIMEOUT": _DROP}, "T_TIMEOUT"),
    ({"K_NEW": 7}, "K_NEW"),
])
def test_register_refuses_a_wrong_table(register: Any, changes: dict[str, Any],
                                        named: str) -> None:
    with pytest.raises(ImportError, match=named):
        register(h.EVENT_CLASSES, ScheduleTask, _table(**changes))


@pytest.mark.parametrize("register", REGISTER)
def test_register_refuses_other_classes(register: Any) -> None:
    swapped = (h.EVENT_CLASSES[1], h.EVENT_CLASSES[0]) + h.EVENT_CLASSES[2:]
    with pytest.raises(ImportError):
        register(swapped, ScheduleTask, dict(protocol.CONSTANTS))
    with pytest.raises(ImportError):
        register(h.EVENT_CLASSES[:-1], ScheduleTask, dict(protocol.CONSTANTS))
    with pytest.raises((ImportError, TypeError)):
        register((int,) * len(h.EVENT_CLASSES), ScheduleTask, dict(protocol.CONSTANTS))
    with pytest.raises(TypeError):
        register(h.EVENT_CLASSES, ScheduleTask, list(protocol.CONSTANTS.items()))
    with pytest.raises(TypeError):
        register(h.EVENT_CLASSES, ScheduleTask)  # the table is required


@pytest.mark.parametrize("core", both("ContextCore", "durable_core._engine_py"))
def test_a_refused_registration_keeps_the_engine_working(core: Any) -> None:
    for register in both("_replay_register", "durable_core._engine_py"):
        with pytest.raises(ImportError):
            register.values[0](h.EVENT_CLASSES, ScheduleTask, _table(K_TIMER=5))
    import durable_core as dc

    reg = dc.Registry()

    def orch(ctx: Any) -> Any:
        return (yield ctx.call_activity("a", input=1))

    reg.add_orchestrator(orch)
    res = OrchestrationExecutor(reg, implementation=core).execute(
        "i", [], [h.OrchestratorStarted(-1, 0), h.ExecutionStarted(-1, 0, "orch", "i")])
    assert res.actions == [ScheduleTask(0, "a", b"1")]


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)


def test_engines_do_not_import_the_context() -> None:
    """task -> engine module -> context -> task was a cycle; the engines import protocol."""
    r = _fresh("import sys\n"
               "import durable_core._engine_py\n"
               "assert 'durable_core.context' not in sys.modules, 'context imported'\n"
               "from durable_core import task\n"
               "assert task.when_all([]).get_result() == []\n"
               "assert 'durable_core.context' not in sys.modules\n"
               "print('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
