"""pytest fixtures: add ``pytest_plugins = ["durable_core.testing.fixtures"]`` to a
``conftest.py``.

``durable_env`` is a started :class:`~durable_core.testing.TestEnvironment` on the default
registry with ``auto_skip=True`` (timers fire as soon as nothing else is left to do); a test
that wants its own settings builds one itself.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .harness import TestEnvironment


@pytest.fixture
def durable_env() -> Iterator[TestEnvironment]:
    """A :class:`TestEnvironment` with auto-skip, stopped and deleted after the test."""
    with TestEnvironment(auto_skip=True) as env:
        yield env
