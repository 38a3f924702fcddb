"""Replay stored histories against the current code, before it is deployed.

An orchestration's code may change while instances of it are running (for hours or months);
the changed code then meets the old histories in production, as a
:class:`~durable_core.errors.NonDeterminismError` that fails the instance. :func:`replay`
finds that break first: it runs each history through the replay engine with the registry you
are about to deploy -- no activity runs, nothing is written -- and reports, per instance,
whether it replays cleanly or where the code departs from the history (the sequence number,
what the history recorded, what the code did).

::

    from durable_core.testing import replay

    report = replay(store="sqlite:///durable.db", registry=my_registry,
                    statuses=[dc.OrchestrationStatus.RUNNING])
    print(report)
    assert report.ok, report.summary()

``durable-core replay MODULE --store URL [--status RUNNING] [--name flow]`` prints the same
report and exits non-zero on any break: a CI step before a deploy. Histories can also come
from files written by ``durable-core export ID`` (:func:`read_history_file`), or from any
iterable of event lists.

What counts as a break: a non-determinism error during the replay; an orchestrator name the
registry does not have; a history that records the instance's completion where the code does
not complete (or completes with another status); code that completes where the history goes
on; a corrupt history. A different *output* for the same completion is reported as a note,
not a break (the history's output was already delivered).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from .. import history as h
from ..errors import HistoryCorruptError, NonDeterminismError
from ..status import OrchestrationStatus

__all__ = [
    "replay",
    "ReplayReport",
    "ReplayResult",
    "read_history_file",
    "write_history_file",
    "HISTORY_FILE_SUFFIX",
]

#: the suffix ``durable-core export`` gives history files
HISTORY_FILE_SUFFIX = ".history"

OK = "ok"
NONDETERMINISTIC = "nondeterministic"
UNKNOWN = "unknown-orchestrator"
DIVERGED = "diverged"
CORRUPT = "corrupt"


@dataclass
class ReplayResult:
    """How one history replayed. ``outcome`` is ``"ok"`` or the kind of break."""

    instance_id: str
    name: str
    outcome: str
    version: Optional[str] = None
    events: int = 0
    #: where it broke: the sequence number of the history event, when there is one
    sequence_number: Optional[int] = None
    #: what the history recorded there / what the code did instead
    expected: Optional[str] = None
    actual: Optional[str] = None
    message: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == OK


@dataclass
class ReplayReport:
    """The results of :func:`replay`, in the order the histories came."""

    results: list[ReplayResult]

    @property
    def ok(self) -> bool:
        """True when every history replayed cleanly."""
        return all(r.ok for r in self.results)

    @property
    def broken(self) -> list[ReplayResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        """One line: how many replayed, how many broke and how."""
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        parts = [f"{n} {k}" for k, n in sorted(counts.items())]
        return f"{len(self.results)} histories replayed: " + (", ".join(parts) or "none")

    def __str__(self) -> str:
        lines = [self.summary()]
        for r in self.broken:
            where = f" at sequence number {r.sequence_number}" if r.sequence_number is not None else ""
            lines.append(f"  {r.instance_id} ({r.name}): {r.outcome}{where}: {r.message}")
            if r.expected is not None or r.actual is not None:
                lines.append(f"      history: {r.expected}")
                lines.append(f"      code:    {r.actual}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``--json``)."""
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "results": [
                {"instanceId": r.instance_id, "name": r.name, "version": r.version,
                 "outcome": r.outcome, "events": r.events, "sequenceNumber": r.sequence_number,
                 "expected": r.expected, "actual": r.actual, "message": r.message,
                 "notes": r.notes}
                for r in self.results
            ],
        }


def write_history_file(path: Union[str, os.PathLike[str]], events: Sequence[Any]) -> None:
    """Write ``events`` as a history file (the codec's self-describing binary form)."""
    data = h.encode(list(events))
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_history_file(path: Union[str, os.PathLike[str]]) -> list[Any]:
    """The events of a history file (HistoryCorruptError if it is not one)."""
    with open(path, "rb") as f:
        return list(h.decode(f.read()))


class _Recorder:
    """Mixed into the replay context: keeps the error that failed the instance."""

    __slots__ = ()

    def _on_error(self, exc: BaseException) -> None:
        if "_replay_error" not in self.__dict__:  # type: ignore[attr-defined]
            self.__dict__["_replay_error"] = exc  # type: ignore[attr-defined]
        super()._on_error(exc)  # type: ignore[misc]


def _executor(registry: Any, converter: Any) -> Any:
    """An engine executor whose contexts keep the error that failed the instance."""
    from ..engine import OrchestrationExecutor

    class ReplayExecutor(OrchestrationExecutor):
        last: Any = None

        def __init__(self) -> None:
            super().__init__(registry, converter)
            self._ctx_cls = type("ReplayContext", (_Recorder, self._ctx_cls),
                                 {"__module__": __name__, "__slots__": ()})

        def new_context(self, instance_id: str) -> Any:
            ctx = super().new_context(instance_id)
            self.last = ctx
            return ctx

    return ReplayExecutor()


def _replay_one(ex: Any, events: Sequence[Any], instance_id: Optional[str] = None) -> ReplayResult:
    start = next((e for e in events if type(e) is h.ExecutionStarted), None)
    iid = instance_id or (start.instance_id if start is not None else "?")
    name = start.name if start is not None else "?"
    version = start.version if start is not None else None
    res = ReplayResult(iid, name, OK, version, len(events))
    if start is None:
        res.outcome, res.message = CORRUPT, "the history has no ExecutionStarted event"
        return res
    if ex.registry.get_orchestrator(name) is None:
        res.outcome = UNKNOWN
        res.message = (f"no orchestrator named {name!r} is registered "
                       f"(known: {', '.join(ex.registry.orchestrator_names()) or 'none'})")
        return res
    recorded = next((e for e in reversed(events) if type(e) is h.ExecutionCompleted), None)
    ex.last = None
    out = ex.execute(iid, list(events), [])
    ctx, ex.last = ex.last, None
    err = ctx.__dict__.get("_replay_error") if ctx is not None else None
    comp = out.completion
    if isinstance(err, NonDeterminismError):
        if recorded is not None and recorded.failure_details is not None and \
                recorded.failure_details.error_type == "NonDeterminismError":
            res.notes.append("the instance already failed with a non-determinism error")
            return res
        res.outcome = NONDETERMINISTIC
        res.sequence_number = err.sequence_number
        res.expected, res.actual = err.expected, err.actual
        res.message = str(err)
        return res
    code_status = OrchestrationStatus(comp.status) if comp is not None else None
    if recorded is None:
        if code_status is not None:
            res.outcome = DIVERGED
            res.expected = "the instance is still running"
            res.actual = f"the code completed with status {code_status.name}"
            if err is not None:
                res.actual += f" ({type(err).__name__}: {err})"
            res.message = "the code completes where the history goes on"
        return res
    want = OrchestrationStatus(recorded.status)
    if code_status != want:
        res.outcome = DIVERGED
        res.sequence_number = recorded.event_id
        res.expected = f"completed with status {want.name}"
        res.actual = ("did not complete (it still waits for something)" if code_status is None
                      else f"completed with status {code_status.name}")
        if err is not None:
            res.actual += f" ({type(err).__name__}: {err})"
        res.message = "the completion the history records differs from the code's"
        return res
    if want == OrchestrationStatus.COMPLETED and comp is not None and comp.result != recorded.result:
        res.notes.append("the code returns a different output than the one recorded")
    return res


def _from_store(url: Any, statuses: Optional[Sequence[OrchestrationStatus]], name: Optional[str],
                instance_ids: Optional[Sequence[str]], page_size: int
                ) -> Iterator[tuple[str, Union[list[Any], HistoryCorruptError]]]:
    from ..backends import open_backend
    from ..backends.base import Backend, InstanceFilter
    from ..store import Store

    backend = url if isinstance(url, Backend) else open_backend(url, create=False, migrate=False)
    store = Store(backend)
    try:
        def load(iid: str) -> Union[list[Any], HistoryCorruptError, None]:
            try:
                return store.history(iid)
            except HistoryCorruptError as exc:
                return exc

        if instance_ids is not None:
            for iid in instance_ids:
                got = load(iid)
                if got is not None:
                    yield iid, got
            return
        flt = InstanceFilter(statuses=frozenset(statuses) if statuses else None, name=name)
        token: Optional[str] = None
        while True:
            page = store.query(flt, page_size=page_size, continuation_token=token, payloads=False)
            for row in page.rows:
                got = load(row.instance_id)
                if got is not None:
                    yield row.instance_id, got
            token = page.continuation_token
            if token is None:
                return
    finally:
        if backend is not url:
            backend.close()


def replay(
    histories: Optional[Iterable[Sequence[Any]]] = None,
    *,
    store: Any = None,
    files: Optional[Iterable[Union[str, os.PathLike[str]]]] = None,
    registry: Any = None,
    statuses: Optional[Sequence[OrchestrationStatus]] = None,
    name: Optional[str] = None,
    instance_ids: Optional[Sequence[str]] = None,
    converter: Any = None,
    page_size: int = 500,
) -> ReplayReport:
    """Replay histories through the engine with ``registry`` (default: the decorators'
    registry) and report how each went (see the module docstring).

    The histories come from ``histories`` (event lists), ``files`` (history files), and/or
    ``store`` (a URL or an open backend; ``statuses``, ``name`` and ``instance_ids`` filter
    which instances are read). Nothing is written and no activity runs.
    """
    if registry is None:
        from ..registry import default_registry

        registry = default_registry
    ex = _executor(registry, converter)
    results: list[ReplayResult] = []
    for events in histories or ():
        results.append(_replay_one(ex, list(events)))
    for path in files or ():
        try:
            events = read_history_file(path)
        except (OSError, HistoryCorruptError) as exc:
            results.append(ReplayResult(os.fspath(path), "?", CORRUPT, message=str(exc)))
            continue
        results.append(_replay_one(ex, events))
    if store is not None:
        for iid, got in _from_store(store, statuses, name, instance_ids, page_size):
            if isinstance(got, HistoryCorruptError):
                results.append(ReplayResult(iid, "?", CORRUPT, message=str(got)))
            else:
                results.append(_replay_one(ex, got, iid))
    return ReplayReport(results)
