"""Orchestration versions: which worker runs an instance of which version.

An instance's version is recorded in its ``ExecutionStarted`` (``ctx.version``): the one given
to ``schedule_new_orchestration(version=...)``, else the one its orchestrator was registered
with (``@dc.orchestrator(version="2")``); sub-orchestrations inherit their parent's unless
told otherwise. During a rolling deploy two workers with two versions of the code share a
store; :class:`VersioningOptions` tells a worker which instances it may run (as the Durable
Task SDK's version-match and version-failure strategies do):

- ``match=VersionMatch.NONE`` (the default): run every instance, whatever its version;
- ``VersionMatch.STRICT``: only instances of exactly the worker's version;
- ``VersionMatch.CURRENT_OR_OLDER``: instances of the worker's version or older ones (the
  code still understands them -- e.g. through ``ctx.is_patched`` or ``if ctx.version < ...``).

The worker's version is the orchestrator's registered version, else ``VersioningOptions
.version``. An instance it may not run is, with ``on_mismatch=VersionFailure.REJECT`` (the
default), left for another worker: its messages become visible again after
``retry_after_seconds``, to every worker; with ``VersionFailure.FAIL`` it fails with a
``VersionMismatchError`` saying which versions met.

Versions compare piece by piece after splitting on ``.``/``-``: numbers as numbers (``"10" >
"9"``), anything else as text; an instance without a version counts as the oldest.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["VersionMatch", "VersionFailure", "VersioningOptions", "compare_versions"]


class VersionMatch(enum.Enum):
    """Which instance versions a worker runs (see the module docstring)."""

    NONE = "none"
    STRICT = "strict"
    CURRENT_OR_OLDER = "current_or_older"


class VersionFailure(enum.Enum):
    """What a worker does with an instance whose version it does not run."""

    REJECT = "reject"
    FAIL = "fail"


_PART = re.compile(r"[.\-+_]")


def _key(version: str) -> tuple[tuple[int, object], ...]:
    out: list[tuple[int, object]] = []
    for p in _PART.split(version):
        out.append((0, int(p)) if p.isdigit() else (1, p))
    return tuple(out)


def compare_versions(a: Optional[str], b: Optional[str]) -> int:
    """-1, 0 or 1 as version ``a`` is older than, the same as, or newer than ``b``
    (``None`` is older than any version)."""
    if a == b:
        return 0
    if a is None:
        return -1
    if b is None:
        return 1
    ka, kb = _key(a), _key(b)
    return (ka > kb) - (ka < kb)


@dataclass(frozen=True)
class VersioningOptions:
    """A worker's version policy (see the module docstring)."""

    version: Optional[str] = None
    match: VersionMatch = VersionMatch.NONE
    on_mismatch: VersionFailure = VersionFailure.REJECT
    retry_after_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.match, VersionMatch):
            raise TypeError("match must be a VersionMatch")
        if not isinstance(self.on_mismatch, VersionFailure):
            raise TypeError("on_mismatch must be a VersionFailure")
        if self.version is not None and not isinstance(self.version, str):
            raise TypeError("version must be a str")
        if not self.retry_after_seconds > 0:
            raise ValueError("retry_after_seconds must be positive")

    def accepts(self, instance_version: Optional[str], worker_version: Optional[str]) -> bool:
        """Whether an instance of ``instance_version`` may run on code of ``worker_version``."""
        if self.match is VersionMatch.NONE:
            return True
        c = compare_versions(instance_version, worker_version)
        if self.match is VersionMatch.STRICT:
            return c == 0
        return c <= 0
