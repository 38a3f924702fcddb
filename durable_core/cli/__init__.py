"""The ``durable-core`` command line (also ``python -m durable_core``): run a worker, look at
and operate instances, migrate the store, serve the dashboard.

Commands live in modules by concern, each adding its subcommands with ``register(sub,
parents)``: ``worker``, ``inspect`` (list, show, history), ``control`` (start, raise-event,
terminate, suspend, resume, restart, purge), ``store`` (migrate), ``deploy`` (replay, export),
``serve`` (dashboard) and ``completion``. A new concern is one more module in :data:`COMMAND_MODULES`.

Every command takes the store (``--store URL``, alias ``--db``; ``$DURABLE_CORE_STORE``, alias
``$DURABLE_CORE_DB``; else the file ``dc.Runtime()`` uses), ``--json`` for scripts and
``--color``. It reads the store through :class:`durable_core.Client` only. Errors are one line
on standard error and a non-zero exit status (see :mod:`durable_core.cli.common`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

from .common import EXIT_FAILED, EXIT_STORE, EXIT_USAGE, CLIError, add_store_option

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: the modules that add commands, in the order ``--help`` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "worker", "inspect", "control", "store", "deploy", "serve", "completion",
)

PROG = "durable-core"


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_store_option(common)
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    common.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                        help="colour the output (default: auto, on a terminal)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (also what shell completion is generated from)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="durable_core: run workers and operate orchestrations on a store.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [_common_options()]
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub, parents)
    return parser


def _say(message: str) -> None:
    line = " ".join(str(message).split())  # one line, whatever the message holds
    sys.stderr.write(f"{PROG}: {line}\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``durable-core`` and ``python -m durable_core``; returns the exit status."""
    from ..backends import BackendNotAvailableError
    from ..errors import DurableError, StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        _say(e.message)
        return e.code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (StoreError, BackendNotAvailableError) as e:
        _say(f"store: {e}")
        return EXIT_STORE
    except DurableError as e:
        _say(f"{type(e).__name__}: {e}")
        return EXIT_FAILED
    except BrokenPipeError:  # `durable-core list | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush
        except OSError:
            pass
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - one line, not a traceback, unless asked for
        if os.environ.get("DURABLE_CORE_DEBUG"):
            raise
        _say(f"unexpected {type(e).__name__}: {e} (DURABLE_CORE_DEBUG=1 shows the traceback)")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
