"""The one place that chooses between the C extension and the pure-Python twin.

``durable_core._core`` (C) and the ``durable_core._*_py`` modules (pure Python) implement the
same three parts -- history codec, timer wheel, replay engine -- with the same interface.
The C extension is used unless ``DURABLE_CORE_NO_EXTENSIONS`` is set to a non-empty value other
than ``0`` (the aio-libs convention), or it cannot be imported (then a warning says why).

Other modules never import ``_core`` themselves: they call :func:`pick` for each name they need,
and tests call :func:`implementations` to get both variants side by side.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Any

__all__ = ["USE_EXTENSIONS", "core", "pick", "implementations", "IMPLEMENTATION"]


def _load_core() -> ModuleType | None:
    if os.environ.get("DURABLE_CORE_NO_EXTENSIONS", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("durable_core._core")
    except ImportError as exc:  # pragma: no cover - depends on the build
        warnings.warn(
            f"durable_core: the C extension could not be imported ({exc}); "
            "using the pure-Python implementation, which is much slower.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


core: ModuleType | None = _load_core()
#: True when the C extension is in use.
USE_EXTENSIONS: bool = core is not None
#: ``"c"`` or ``"py"``: which implementation :func:`pick` returns.
IMPLEMENTATION: str = "c" if USE_EXTENSIONS else "py"


def pick(name: str, py_module: str) -> Any:
    """Return ``name`` from the C extension when in use, else from ``py_module`` (the twin)."""
    if core is not None and hasattr(core, name):
        return getattr(core, name)
    if core is not None:
        raise ImportError(f"durable_core._core has no attribute {name!r}: rebuild the extension")
    return getattr(importlib.import_module(py_module), name)


def implementations(name: str, py_module: str) -> dict[str, Any]:
    """Both variants of ``name``: ``{"c": ..., "py": ...}`` (``"c"`` missing when not built).

    Used by the tests, which run every check of the three parts against both.
    """
    out: dict[str, Any] = {}
    try:
        c_mod = importlib.import_module("durable_core._core")
    except ImportError:
        c_mod = None
    if c_mod is not None and hasattr(c_mod, name):
        out["c"] = getattr(c_mod, name)
    out["py"] = getattr(importlib.import_module(py_module), name)
    return out
