"""Orchestrator code that raises a BaseException (SystemExit, KeyboardInterrupt, GeneratorExit,
asyncio.CancelledError, custom subclasses) or hostile exception objects: the instance fails with
the exception's type and message, on both engines, and ``execute()`` never raises it."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import timedelta
from typing import Any

import pytest
from conftest import both
from engine_driver import T0, Driver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_core as dc
from durable_core import _impl
from durable_core import history as h
from durable_core.engine import OrchestrationExecutor
from durable_core.status import OrchestrationStatus as S

CORES = both("ContextCore", "durable_core._engine_py")
CODECS = [(k, _impl.implementations("encode", "durable_core._codec_py")[k],
           _impl.implementations("decode", "durable_core._codec_py")[k])
          for k in _impl.implementations("encode", "durable_core._codec_py")]


class Custom(BaseException):
    """Neither an Exception nor one of the interpreter's."""


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest) -> Any:
    return request.param


def double(ctx: Any, x: Any) -> Any:
    return x * 2


def run(core: Any, fn: Any, input: Any = None, converter: Any = None,
        acts: Any = None, check_sticky: bool = True) -> Driver:
    reg = dc.Registry()
    reg.add_orchestrator(fn, name="orch")
    d = Driver(OrchestrationExecutor(reg, converter, implementation=core),
               acts if acts is not None else {"double": double}, check_sticky=check_sticky)
    d.start("orch", input)
    d.run()
    return d


def failed_with(d: Driver) -> tuple[str, str]:
    assert d.status == S.FAILED, d.completion
    fd = d.completion.failure_details
    for _, encode, decode in CODECS:  # every failure is history data
        assert decode(encode(d.history)) == d.history
    return fd.error_type, fd.message


def _after_first_yield(make: Any) -> Any:
    def orch(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        raise make()  # a fresh exception per run: a raised one keeps its traceback

    return orch


@pytest.mark.parametrize("make,expected", [
    (lambda: SystemExit(5), ("SystemExit", "5")),
    (KeyboardInterrupt, ("KeyboardInterrupt", "")),
    (lambda: GeneratorExit("explicit"), ("GeneratorExit", "explicit")),
    (lambda: asyncio.CancelledError("cancelled"), ("CancelledError", "cancelled")),
    (lambda: Custom("mine"), ("Custom", "mine")),
    (lambda: BaseException("base"), ("BaseException", "base")),
])
def test_base_exception_after_first_yield_fails_the_instance(core: Any, make: Any,
                                                             expected: tuple[str, str]) -> None:
    d = run(core, _after_first_yield(make))
    assert failed_with(d) == expected
    assert "orch" in d.completion.failure_details.stack_trace


def test_sys_exit_in_a_plain_function(core: Any) -> None:
    def orch(ctx: Any, x: Any) -> Any:
        sys.exit(f"exit {x}")

    assert failed_with(run(core, orch, 3)) == ("SystemExit", "exit 3")


def test_keyboard_interrupt_before_the_first_yield(core: Any) -> None:
    def orch(ctx: Any) -> Any:
        raise KeyboardInterrupt("at start")
        yield  # noqa: B901 - a generator

    assert failed_with(run(core, orch)) == ("KeyboardInterrupt", "at start")


def test_cancelled_error_from_async_orchestrator(core: Any) -> None:
    async def orch(ctx: Any) -> Any:
        await ctx.call_activity("double", input=1)
        raise asyncio.CancelledError()

    assert failed_with(run(core, orch)) == ("CancelledError", "")


def test_system_exit_thrown_by_an_awaited_failure_handler(core: Any) -> None:
    def orch(ctx: Any) -> Any:
        try:
            yield ctx.call_activity("missing")
        except dc.TaskFailedError:
            sys.exit(7)

    assert failed_with(run(core, orch)) == ("SystemExit", "7")


class _Converter(dc.JsonDataConverter):
    """A converter whose deserialize/serialize call sys.exit for marked payloads."""

    def deserialize(self, data: Any) -> Any:
        if data is not None and b"exit" in data:
            sys.exit("deserialize")
        return super().deserialize(data)

    def serialize(self, value: Any) -> Any:
        if value == "exit on serialize":
            raise KeyboardInterrupt("serialize")
        return super().serialize(value)


def test_converter_system_exit_on_input(core: Any) -> None:
    def orch(ctx: Any, x: Any) -> Any:
        return x

    assert failed_with(run(core, orch, "exit", _Converter())) == ("SystemExit", "deserialize")


def test_converter_system_exit_on_a_result_reaches_the_code(core: Any) -> None:
    seen: list[str] = []

    def orch(ctx: Any) -> Any:
        try:
            yield ctx.call_activity("exit")
        except SystemExit as e:  # thrown in where the code waits, as if the call raised it
            seen.append(str(e))
        yield ctx.call_activity("exit")

    d = run(core, orch, None, _Converter(), {"exit": lambda ctx: "exit"})
    assert failed_with(d) == ("SystemExit", "deserialize")
    assert seen[-1] == "deserialize"


def test_converter_interrupt_on_the_result(core: Any) -> None:
    def orch(ctx: Any) -> Any:
        return "exit on serialize"

    assert failed_with(run(core, orch, None, _Converter())) == ("KeyboardInterrupt", "serialize")


def test_retry_policy_subclass_raising_base_exception(core: Any) -> None:
    class Policy(dc.RetryPolicy):
        def next_delay_us(self, attempts: int, first: int, now: int) -> Any:
            raise Custom("no delay for you")

    policy = Policy(timedelta(seconds=1), 3)

    def orch(ctx: Any) -> Any:
        return (yield ctx.call_activity("missing", retry_policy=policy))

    assert failed_with(run(core, orch)) == ("Custom", "no delay for you")


def test_str_calling_sys_exit(core: Any) -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            sys.exit("from __str__")

    def orch(ctx: Any) -> Any:
        yield ctx.call_activity("double", input=1)
        raise Weird()

    err_type, message = failed_with(run(core, orch))
    assert err_type == "Weird" and "could not be rendered" in message


def test_yielded_object_whose_repr_exits(core: Any) -> None:
    class Odd:
        def __repr__(self) -> str:
            raise SystemExit("repr")

    def orch(ctx: Any) -> Any:
        yield Odd()

    assert failed_with(run(core, orch)) == ("SystemExit", "repr")


def test_finally_raising_when_the_completed_code_is_closed(core: Any) -> None:
    def orch(ctx: Any) -> Any:
        try:
            ctx.send_event("x", "y")
            yield ctx.wait_for_external_event("go")
        finally:
            raise SystemExit("in finally")

    reg = dc.Registry()
    reg.add_orchestrator(orch)
    ex = OrchestrationExecutor(reg, implementation=core)
    res = ex.execute("i", [], [h.OrchestratorStarted(-1, T0),
                               h.ExecutionStarted(-1, T0, "orch", "i"),
                               h.ExecutionTerminated(-1, T0, b'"stop"')])
    assert res.completion is not None and res.completion.status == S.TERMINATED
    assert res.session is None and res.actions[-1] == res.completion


def test_session_close_swallows_base_exceptions(core: Any) -> None:
    def orch(ctx: Any) -> Any:
        try:
            yield ctx.wait_for_external_event("go")
        finally:
            raise KeyboardInterrupt("closing")

    reg = dc.Registry()
    reg.add_orchestrator(orch)
    res = OrchestrationExecutor(reg, implementation=core).execute(
        "i", [], [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, "orch", "i")])
    assert res.session is not None
    res.session.close()


class Name(str):
    """An activity name whose comparison exits (user code reached while matching history)."""

    def __eq__(self, other: object) -> bool:
        raise SystemExit("compare")

    __hash__ = str.__hash__


def test_name_comparison_raising_during_replay(core: Any) -> None:
    def orch(ctx: Any) -> Any:
        yield ctx.call_activity(Name("double"), input=1)
        yield ctx.wait_for_external_event("never")

    reg = dc.Registry()
    reg.add_orchestrator(orch)
    ex = OrchestrationExecutor(reg, implementation=core)
    old = [h.OrchestratorStarted(-1, T0), h.ExecutionStarted(-1, T0, "orch", "i"),
           h.TaskScheduled(0, T0, "double", b"1"), h.OrchestratorCompleted(-1, T0)]
    res = ex.execute("i", old, [h.OrchestratorStarted(-1, T0 + 1)])
    c = res.completion
    assert c is not None and c.status == S.FAILED
    assert (c.failure_details.error_type, c.failure_details.message) == ("SystemExit", "compare")


# --- hypothesis: arbitrary exception objects -----------------------------------------------------

_ADDRESS = re.compile(r"0x[0-9a-f]+")
BASES = [Exception, ValueError, KeyError, SystemExit, KeyboardInterrupt, GeneratorExit,
         asyncio.CancelledError, BaseException, Custom, dc.TaskFailedError]
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=30)
ARG = st.recursive(st.one_of(st.none(), st.integers(), TEXT, st.binary(max_size=8)),
                   lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3),
                   max_leaves=6)


def _behaviour(kind: str, text: str) -> Any:
    def method(self: Any) -> Any:
        if kind == "raises":
            raise RuntimeError("no text for you")
        if kind == "exits":
            raise SystemExit("from a dunder")
        if kind == "not-str":
            return 42
        if kind == "huge":
            return text * 5000
        return text

    return method


@st.composite
def exceptions(draw: Any) -> Any:
    """A factory of equal exceptions (each run raises a fresh one)."""
    base = draw(st.sampled_from(BASES))
    ns: dict[str, Any] = {}
    for dunder in ("__str__", "__repr__"):
        kind = draw(st.sampled_from(["default", "text", "raises", "exits", "not-str", "huge"]))
        if kind != "default":
            ns[dunder] = _behaviour(kind, draw(TEXT))
    name = draw(st.sampled_from(["Boom", "名前", "x" * 300, "_"]))
    cls = type(name, (base,), ns)
    args = draw(st.lists(ARG, max_size=3))
    inner = (draw(TEXT), h.FailureDetails("Inner", "inner failure"))
    shape = draw(st.sampled_from(["none", "cause", "context", "cycle", "self"]))
    other_text = draw(TEXT)

    def make() -> BaseException:
        exc = cls(*inner) if base is dc.TaskFailedError else cls(*args)
        other = ValueError(other_text)
        if shape == "cause":
            exc.__cause__ = other
        elif shape == "context":
            exc.__context__ = other
        elif shape == "cycle":
            exc.__cause__ = other
            other.__cause__ = exc
            other.__context__ = exc
        elif shape == "self":
            exc.__cause__ = exc
            exc.__context__ = exc
        return exc

    return make


def _orch_raising(make: Any, where: str) -> Any:
    if where == "start":
        def plain(ctx: Any) -> Any:
            raise make()
        return plain
    if where == "async":
        async def coro(ctx: Any) -> Any:
            await ctx.call_activity("double", input=1)
            raise make()
        return coro
    return _after_first_yield(make)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exc=exceptions(), where=st.sampled_from(["start", "after-yield", "async"]))
def test_any_exception_fails_the_instance_with_encodable_details(exc: BaseException,
                                                                 where: str) -> None:
    outcomes = []
    for p in CORES:
        if p.values[0] is None:
            continue
        # not comparing sticky and full replays: when both __str__ and __repr__ raise, the
        # message failure_details_of makes holds the object's address (differs per run)
        d = run(p.values[0], _orch_raising(exc, where), check_sticky=False)
        assert d.status == S.FAILED
        fd = d.completion.failure_details
        assert isinstance(fd, h.FailureDetails) and fd.error_type
        failed_with(d)  # encodes and decodes back with both codecs
        outcomes.append((fd.error_type, _ADDRESS.sub("0x?", fd.message), fd.inner_failure))
    assert all(o == outcomes[0] for o in outcomes)
