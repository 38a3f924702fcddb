"""Hostile or careless user code and data never stall a worker or hide data.

Each test reproduces a way the runtime was broken (an orchestrator raising SystemExit, an
exception whose ``__str__`` raises, activities of terminated instances started again, a NUL in
an instance id) and checks the fixed behaviour.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_core as dc
from durable_core import history as h
from durable_core.failure import MAX_INNER_DEPTH, failure_details_of
from durable_core.status import OrchestrationStatus as S

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'hostile.db'}"


class Base(BaseException):
    """A BaseException subclass of the user's."""


def _registry():
    reg = dc.Registry()
    reg.add_activity(lambda ctx, x: x, "echo")

    def exits(ctx, code):
        yield ctx.call_activity("echo", input=1)
        sys.exit(code)

    def raises_base(ctx, _):
        yield ctx.call_activity("echo", input=1)
        raise Base("mine")

    def exits_at_once(ctx, _):
        raise SystemExit(3)

    def fine(ctx, x):
        return (yield ctx.call_activity("echo", input=x))

    for fn in (exits, raises_base, exits_at_once, fine):
        reg.add_orchestrator(fn, fn.__name__)
    return reg


def test_an_orchestrator_raising_base_exceptions_fails_only_itself(url):
    with dc.Runtime(url, registry=_registry()) as rt:
        c = rt.client
        bad = [c.schedule_new_orchestration("exits", input=5),
               c.schedule_new_orchestration("raises_base"),
               c.schedule_new_orchestration("exits_at_once")]
        good = [c.schedule_new_orchestration("fine", input=i) for i in range(5)]
        for iid, kind in zip(bad, ("SystemExit", "Base", "SystemExit")):
            st_ = c.wait_for_orchestration_completion(iid, timeout=20)
            assert st_.runtime_status == S.FAILED
            assert st_.failure_details.error_type == kind
        assert [c.wait_for_orchestration_completion(i, timeout=20).output for i in good] == list(range(5))
    # leaving the block stopped the worker cleanly (no "Event loop is closed")


WORKER_MODULE = '''
import sys
import durable_core as dc

@dc.activity
def echo(ctx, x):
    return x

@dc.orchestrator
def exits(ctx, code):
    yield ctx.call_activity(echo, input=1)
    sys.exit(code)

@dc.orchestrator
def fine(ctx, x):
    return (yield ctx.call_activity(echo, input=x))
'''


def test_the_cli_worker_survives_sys_exit_in_orchestrator_code(tmp_path):
    (tmp_path / "hostile_flows.py").write_text(textwrap.dedent(WORKER_MODULE))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with dc.Client(url) as c:
        first = c.schedule_new_orchestration("exits", input=5)
        later = c.schedule_new_orchestration("fine", input=7)
        p = subprocess.Popen([sys.executable, "-m", "durable_core", "worker", "hostile_flows",
                              "--db", url], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                             text=True)
        try:
            st1 = c.wait_for_orchestration_completion(first, timeout=30)
            assert st1.runtime_status == S.FAILED and st1.failure_details.error_type == "SystemExit"
            assert c.wait_for_orchestration_completion(later, timeout=30).output == 7
            assert p.poll() is None  # still serving
        finally:
            p.send_signal(signal.SIGTERM)  # only a signal stops it
            _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err


def test_activities_of_a_terminated_instance_never_start_again(url):
    reg = dc.Registry()
    started: list[int] = []
    release = threading.Event()

    def slow(ctx, x):
        started.append(x)
        release.wait(30)
        return x

    def fan(ctx, n):
        return (yield dc.when_all([ctx.call_activity("slow", input=i) for i in range(n)]))

    reg.add_activity(slow, "slow")
    reg.add_orchestrator(fan, "fan")
    reg.add_activity(lambda ctx, x: x, "echo")
    reg.add_orchestrator(lambda ctx, x: (yield ctx.call_activity("echo", input=x)), "quick")
    with dc.Runtime(url, registry=reg, max_concurrent_activities=2, lease_seconds=0.5) as rt:
        c = rt.client
        iid = c.schedule_new_orchestration("fan", input=6)
        deadline = time.monotonic() + 20
        while len(started) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        c.terminate_orchestration(iid)
        assert c.wait_for_orchestration_completion(iid, timeout=20).runtime_status == S.TERMINATED
        # the two running ones are abandoned: their slots are free for other work
        q = c.schedule_new_orchestration("quick", input=1)
        assert c.wait_for_orchestration_completion(q, timeout=20).output == 1
        time.sleep(1.2)  # past the lease: nothing of the terminated instance is leased again
        assert sorted(started) == [0, 1]
        assert rt.worker.stats["abandoned"] == 2
        release.set()
    with dc.Runtime(url, registry=reg, max_concurrent_activities=2) as rt:  # a restart
        q = rt.client.schedule_new_orchestration("quick", input=2)
        assert rt.client.wait_for_orchestration_completion(q, timeout=20).output == 2
        time.sleep(0.3)
        assert sorted(started) == [0, 1]


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")


class NotAStr(Exception):
    def __str__(self):
        return 42  # type: ignore[return-value]


class BadRepr(Exception):
    def __str__(self):
        raise ValueError("x")

    def __repr__(self):
        raise ValueError("y")


class Surrogate(Exception):
    pass


@pytest.mark.parametrize("exc", [BadStr(), NotAStr(), BadRepr(), Surrogate("bad \ud800 text")])
def test_an_activity_exception_that_cannot_be_rendered_still_fails_its_task(url, exc):
    reg = dc.Registry()

    def act(ctx, _):
        raise exc

    def flow(ctx, _):
        try:
            yield ctx.call_activity("act")
        except dc.TaskFailedError as e:
            return [e.details.error_type, e.details.message]

    reg.add_activity(act, "act")
    reg.add_orchestrator(flow, "flow")
    with dc.Runtime(url, registry=reg) as rt:
        iid = rt.client.schedule_new_orchestration("flow")
        out = rt.client.wait_for_orchestration_completion(iid, timeout=20).output
    assert out[0] == type(exc).__name__
    if not isinstance(exc, Surrogate):
        assert "could not be rendered" in out[1]
    else:
        assert "\\ud800" in out[1]


def _exceptions():
    text = st.text(max_size=50)
    simple = st.builds(lambda cls, m: cls(m), st.sampled_from(
        [ValueError, KeyError, RuntimeError, Exception, BadStr, NotAStr, BadRepr, SystemExit,
         KeyboardInterrupt, GeneratorExit]), text)
    args = st.builds(lambda a: Exception(*a), st.lists(
        st.one_of(text, st.integers(), st.none(), st.binary(max_size=10)), max_size=4))
    return st.one_of(simple, args)


@settings(max_examples=200, deadline=None)
@given(chain=st.lists(_exceptions(), min_size=1, max_size=5), cyclic=st.booleans(),
       use_context=st.booleans(), nested=st.integers(0, 40))
def test_failure_details_of_any_exception_never_fail_and_always_encode(chain, cyclic,
                                                                        use_context, nested):
    for a, b in zip(chain, chain[1:]):
        if use_context:
            a.__context__ = b
        else:
            a.__cause__ = b
    if cyclic and len(chain) > 1:
        chain[-1].__cause__ = chain[0]
    exc = chain[0]
    if nested:
        inner = None
        for i in range(nested):
            inner = h.FailureDetails("E", str(i), None, inner)
        exc = dc.TaskFailedError("outer", inner)
        exc.__cause__ = chain[0]
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        fd = failure_details_of(caught)
    assert isinstance(fd.error_type, str) and fd.error_type
    assert isinstance(fd.message, str)
    depth, f = 0, fd
    while f is not None:
        depth, f = depth + 1, f.inner_failure
    assert depth <= MAX_INNER_DEPTH + 1
    ev = h.TaskFailed(-1, 1, 0, fd)
    assert h.decode_records(h.encode_records([ev])) == [ev]


def test_ids_are_checked_before_anything_is_written(url):
    with dc.Client(url) as c:
        for bad in ("a\x00b", "", "x\ny", "x" * 5000):
            with pytest.raises(ValueError):
                c.schedule_new_orchestration("flow", instance_id=bad)
        with pytest.raises(TypeError):
            c.schedule_new_orchestration("flow", instance_id=12)  # type: ignore[arg-type]
        for call in (lambda: c.raise_orchestration_event("a\x00b", "e"),
                     lambda: c.terminate_orchestration("a\x00b"),
                     lambda: c.suspend_orchestration("a\x00b")):
            with pytest.raises(ValueError):
                call()
        assert c.query_orchestrations().states == []
        with pytest.raises(ValueError):
            c.raise_orchestration_event("ok", "bad\x00name")


def test_quickstart_prints_the_status_by_name(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, os.path.join(root, "examples", "quickstart.py"),
                        f"sqlite:///{tmp_path / 'q.db'}"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "OrchestrationStatus.COMPLETED ['A', 'B', 'C']"
    assert f"{S.FAILED}" == str(S.FAILED) == "OrchestrationStatus.FAILED"
    assert S.FAILED == 3 and int(S.FAILED) == 3  # still the stored number


def test_a_runtime_that_cannot_open_its_store_says_so_and_leaves_nothing_behind(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    code = (f"import durable_core as dc\n"
            f"try:\n    dc.Runtime('sqlite:///{d}')\nexcept dc.StoreError as e:\n    print('E', e)\n"
            f"ro = 'sqlite:///{tmp_path / 'ro.db'}'\n"
            f"dc.Client(ro).close()\n"
            f"try:\n    dc.Runtime(ro + '?mode=ro').start()\nexcept dc.StoreError as e:\n"
            f"    print('E', e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("E ") == 2 and "is a directory" in p.stdout and "read-only" in p.stdout
    assert p.stderr == ""  # no "Task was destroyed but it is pending", no traceback
