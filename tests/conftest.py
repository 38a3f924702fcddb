"""Shared test helpers.

Every test of the three C parts (codec, timer wheel, replay engine) runs against both the C
extension (id ``c``) and the pure-Python twin (id ``py``): use :func:`both`.
When the extension is not built the ``c`` variants are skipped with a reason, unless
``DURABLE_CORE_REQUIRE_EXTENSION=1`` (set by CI), where a missing extension is a failure.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from durable_core import _impl

REQUIRE_EXTENSION = os.environ.get("DURABLE_CORE_REQUIRE_EXTENSION", "") not in ("", "0")


def both(name: str, py_module: str) -> list[Any]:
    """``pytest.param`` list (ids ``c``, ``py``) with both implementations of ``name``."""
    impls = _impl.implementations(name, py_module)
    params = []
    if "c" in impls:
        params.append(pytest.param(impls["c"], id="c"))
    elif REQUIRE_EXTENSION:
        raise RuntimeError(f"C extension lacks {name!r} but DURABLE_CORE_REQUIRE_EXTENSION=1")
    else:
        params.append(
            pytest.param(
                None, id="c", marks=pytest.mark.skip(reason=f"C extension lacks {name!r}: not built")
            )
        )
    params.append(pytest.param(impls["py"], id="py"))
    return params
