"""Build the ``durable_core._core`` C extension.

All metadata lives in pyproject.toml; this file only describes the extension.

Environment switches:
  DURABLE_CORE_DEBUG_BUILD=1   -O0 -g with AddressSanitizer and UndefinedBehaviorSanitizer
                               (load libasan with LD_PRELOAD when running the tests).
  DURABLE_CORE_NO_EXTENSIONS=1 skip the extension; the pure-Python twin is used at run time.
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import Extension, setup

NO_EXT = os.environ.get("DURABLE_CORE_NO_EXTENSIONS", "") not in ("", "0")
DEBUG = os.environ.get("DURABLE_CORE_DEBUG_BUILD", "") not in ("", "0")

if sys.platform == "win32":
    compile_args = ["/W4", "/WX"]
    link_args: list[str] = []
else:
    compile_args = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
    link_args = []
    if DEBUG:
        san = ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
               "-fno-sanitize-recover=undefined"]
        compile_args += san
        link_args += ["-fsanitize=address,undefined"]
    else:
        compile_args += ["-O2"]

ext_modules = []
if not NO_EXT:
    ext_modules.append(
        Extension(
            "durable_core._core",
            sources=sorted(glob.glob(os.path.join("csrc", "*.c"))),
            depends=sorted(glob.glob(os.path.join("csrc", "*.h"))),
            include_dirs=["csrc"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    )

setup(ext_modules=ext_modules)
