"""Registration of orchestrators and activities by name.

``@dc.orchestrator`` and ``@dc.activity`` return the function unchanged, mark it with
``__durable_name__`` / ``__durable_kind__`` and add it to :data:`default_registry`; a worker
looks functions up by the name recorded in history. Names are case-sensitive.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, Optional, TypeVar, Union, overload

__all__ = ["Registry", "default_registry", "orchestrator", "activity", "name_of"]

F = TypeVar("F", bound=Callable[..., Any])


def _takes_input(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` accepts a second positional argument (the input) after the context."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: pass the input
        return True
    count = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count >= 2


def name_of(fn_or_name: Union[str, Callable[..., Any]]) -> str:
    """The registered name of an orchestrator/activity function, or the string itself."""
    if isinstance(fn_or_name, str):
        return fn_or_name
    name = getattr(fn_or_name, "__durable_name__", None)
    if isinstance(name, str):
        return name
    name = getattr(fn_or_name, "__name__", None)
    if isinstance(name, str):
        return name
    raise TypeError(f"expected a function or a name, got {type(fn_or_name).__name__}")


class Registry:
    """Orchestrators and activities by name (thread-safe; names are case-sensitive)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orchestrators: dict[str, Callable[..., Any]] = {}
        self._activities: dict[str, Callable[..., Any]] = {}
        self._takes_input: dict[str, bool] = {}
        self._versions: dict[str, Optional[str]] = {}

    def _add(self, table: dict[str, Callable[..., Any]], kind: str, fn: Callable[..., Any],
             name: Optional[str]) -> str:
        if not callable(fn):
            raise TypeError(f"{kind} must be callable, got {type(fn).__name__}")
        if name is None:
            name = getattr(fn, "__durable_name__", None) or getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind} needs a non-empty name")
        with self._lock:
            old = table.get(name)
            if old is not None and old is not fn:
                raise ValueError(f"an {kind} named {name!r} is already registered")
            table[name] = fn
            self._takes_input[f"{kind}:{name}"] = _takes_input(fn)
        return name

    def add_orchestrator(self, fn: Callable[..., Any], name: Optional[str] = None, *,
                         version: Optional[str] = None) -> str:
        """Register orchestrator ``fn`` under ``name`` (default: its ``__name__``).

        ``version`` (default: the one ``@orchestrator(version=...)`` marked ``fn`` with) is the
        version new instances of it get unless they are scheduled with another one: see
        :meth:`orchestrator_version`.
        """
        if version is None:
            version = getattr(fn, "__durable_version__", None)
        if version is not None and not isinstance(version, str):
            raise TypeError("version must be a string or None")
        reg_name = self._add(self._orchestrators, "orchestrator", fn, name)
        with self._lock:
            self._versions[reg_name] = version
        return reg_name

    def orchestrator_version(self, name: str) -> Optional[str]:
        """The version registered for orchestrator ``name`` (None: unversioned, or unknown).

        What a worker or client records as ``ExecutionStarted.version`` (``ctx.version``) for
        a new instance scheduled without an explicit version.
        """
        return self._versions.get(name)

    def add_activity(self, fn: Callable[..., Any], name: Optional[str] = None) -> str:
        """Register activity ``fn`` under ``name`` (default: its ``__name__``)."""
        return self._add(self._activities, "activity", fn, name)

    def get_orchestrator(self, name: str) -> Optional[Callable[..., Any]]:
        """The orchestrator registered under ``name``, or None."""
        return self._orchestrators.get(name)

    def get_activity(self, name: str) -> Optional[Callable[..., Any]]:
        """The activity registered under ``name``, or None."""
        return self._activities.get(name)

    def orchestrator_takes_input(self, name: str) -> bool:
        """Whether the orchestrator ``name`` is called as ``fn(ctx, input)`` (else ``fn(ctx)``)."""
        return self._takes_input.get(f"orchestrator:{name}", True)

    def activity_takes_input(self, name: str) -> bool:
        """Whether the activity ``name`` is called as ``fn(ctx, input)`` (else ``fn(ctx)``)."""
        return self._takes_input.get(f"activity:{name}", True)

    def orchestrator_names(self) -> list[str]:
        """Registered orchestrator names, sorted."""
        return sorted(self._orchestrators)

    def activity_names(self) -> list[str]:
        """Registered activity names, sorted."""
        return sorted(self._activities)

    def name_of(self, fn_or_name: Union[str, Callable[..., Any]]) -> str:
        """The name of a registered function (or the string itself)."""
        if isinstance(fn_or_name, str):
            return fn_or_name
        for table in (self._orchestrators, self._activities):
            for name, fn in table.items():
                if fn is fn_or_name:
                    return name
        return name_of(fn_or_name)

    def __repr__(self) -> str:
        return (f"Registry(orchestrators={self.orchestrator_names()!r}, "
                f"activities={self.activity_names()!r})")


#: The registry the decorators add to, and the one the runtime uses by default.
default_registry = Registry()


def _decorator(kind: str, fn: Optional[F], name: Optional[str],
               version: Optional[str] = None) -> Any:
    if version is not None and not isinstance(version, str):
        raise TypeError("version must be a string or None")

    def mark(f: F) -> F:
        reg_name = name if name is not None else getattr(f, "__name__", None)
        if not isinstance(reg_name, str) or not reg_name:
            raise ValueError(f"{kind} needs a non-empty name")
        f.__durable_name__ = reg_name  # type: ignore[attr-defined]
        f.__durable_kind__ = kind  # type: ignore[attr-defined]
        if kind == "orchestrator":
            f.__durable_version__ = version  # type: ignore[attr-defined]
            default_registry.add_orchestrator(f, reg_name, version=version)
        else:
            default_registry.add_activity(f, reg_name)
        return f

    if fn is not None:
        return mark(fn)
    return mark


@overload
def orchestrator(fn: F) -> F: ...
@overload
def orchestrator(*, name: Optional[str] = None,
                 version: Optional[str] = None) -> Callable[[F], F]: ...
def orchestrator(fn: Optional[F] = None, *, name: Optional[str] = None,
                 version: Optional[str] = None) -> Any:
    """Mark ``fn`` as an orchestrator and register it (``@orchestrator`` or
    ``@orchestrator(name=..., version=...)``).

    The function receives an :class:`~durable_core.OrchestrationContext` (and the input when it
    takes a second argument); it may be a generator (``yield task``), ``async def``
    (``await task``) or a plain function. It must be deterministic: see the context's docs.

    ``version`` is the orchestration version new instances get (``ctx.version``, recorded in
    their ``ExecutionStarted``) unless scheduled with another; instances keep the version they
    started with, so code can branch on ``ctx.version`` to keep older instances on their path.
    """
    return _decorator("orchestrator", fn, name, version)


@overload
def activity(fn: F) -> F: ...
@overload
def activity(*, name: Optional[str] = None) -> Callable[[F], F]: ...
def activity(fn: Optional[F] = None, *, name: Optional[str] = None) -> Any:
    """Mark ``fn`` as an activity and register it (``@activity`` or ``@activity(name=...)``).

    Activities do the actual work (I/O, side effects); they run at least once per call and
    receive an :class:`~durable_core.ActivityContext` and the input. Plain or ``async def``.
    """
    return _decorator("activity", fn, name)
