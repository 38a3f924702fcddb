"""Orchestration status and the state snapshot that clients return."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from .errors import OrchestrationFailedError
from .history import FailureDetails

__all__ = ["OrchestrationStatus", "OrchestrationState", "TERMINAL_STATUSES"]


class OrchestrationStatus(enum.IntEnum):
    """Runtime status of an orchestration instance (values are stored: never renumber)."""

    RUNNING = 0
    COMPLETED = 1
    CONTINUED_AS_NEW = 2
    FAILED = 3
    CANCELED = 4
    TERMINATED = 5
    PENDING = 6
    SUSPENDED = 7

    @property
    def is_terminal(self) -> bool:
        """True for statuses an instance never leaves by itself (completed, failed, terminated)."""
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        # IntEnum prints as its number since Python 3.11; a status reads as what it is
        return f"{type(self).__name__}.{self.name}"

    def __format__(self, spec: str) -> str:
        # f"{status}" follows __str__ (and takes str format specs), not int formatting
        return format(str(self), spec)


TERMINAL_STATUSES = frozenset(
    {
        OrchestrationStatus.COMPLETED,
        OrchestrationStatus.FAILED,
        OrchestrationStatus.TERMINATED,
        OrchestrationStatus.CANCELED,
    }
)


@dataclass(frozen=True)
class OrchestrationState:
    """A snapshot of one orchestration instance, as a client sees it.

    ``input``, ``output`` and ``custom_status`` are decoded by the data converter on first
    access; ``serialized_*`` hold the stored bytes (``None`` when absent).
    """

    instance_id: str
    name: str
    runtime_status: OrchestrationStatus
    created_at: datetime
    last_updated_at: datetime
    serialized_input: Optional[bytes] = None
    serialized_output: Optional[bytes] = None
    serialized_custom_status: Optional[bytes] = None
    failure_details: Optional[FailureDetails] = None
    parent_instance_id: Optional[str] = None
    execution_id: Optional[str] = None
    #: the orchestration version recorded at its start (``None``: unversioned)
    version: Optional[str] = None
    _converter: Any = field(default=None, repr=False, compare=False)

    def _decode(self, data: Optional[bytes]) -> Any:
        if data is None:
            return None
        if self._converter is None:
            from .converter import default_converter

            return default_converter().deserialize(data)
        return self._converter.deserialize(data)

    @property
    def input(self) -> Any:
        """The orchestration input, decoded."""
        return self._decode(self.serialized_input)

    @property
    def output(self) -> Any:
        """The orchestration output (or termination reason), decoded."""
        return self._decode(self.serialized_output)

    @property
    def custom_status(self) -> Any:
        """The last value passed to ``ctx.set_custom_status``, decoded."""
        return self._decode(self.serialized_custom_status)

    @property
    def is_terminal(self) -> bool:
        return self.runtime_status.is_terminal

    def raise_if_failed(self) -> None:
        """Raise :class:`OrchestrationFailedError` if the instance failed."""
        if self.runtime_status == OrchestrationStatus.FAILED:
            d = self.failure_details
            msg = f"orchestration {self.instance_id!r} failed"
            if d is not None:
                msg += f": {d.error_type}: {d.message}"
            raise OrchestrationFailedError(msg, d)
