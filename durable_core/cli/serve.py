"""``durable-core dashboard``: serve the web dashboard on a store (needs the ``[fastapi]`` extra).

It listens on loopback unless told otherwise. Its actions (terminate, suspend, resume, restart,
raise event, purge) need an API key (``--api-key`` or ``$DURABLE_CORE_DASHBOARD_KEY``); without
one the dashboard is read-only. On an address other than loopback it refuses to start without a
key unless ``--allow-unauthenticated`` says that a read-only dashboard open to the network is
meant.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any

from .common import EXIT_OK, EXIT_USAGE, CLIError, open_client, store_url

__all__ = ["register", "is_loopback"]

KEY_ENV = "DURABLE_CORE_DASHBOARD_KEY"


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``dashboard``."""
    d = sub.add_parser("dashboard", parents=parents, help="serve the web dashboard",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    d.add_argument("--api-key", metavar="KEY",
                   help=f"enables the actions for requests carrying it (or ${KEY_ENV})")
    d.add_argument("--allow-unauthenticated", action="store_true",
                   help="serve a read-only dashboard without a key on a non-loopback address")
    d.set_defaults(func=run_dashboard)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_dashboard(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    if not all(_importable(m) for m in ("fastapi", "uvicorn")):
        raise CLIError(
            "the dashboard needs the fastapi extra: pip install 'durable_core[fastapi]'",
            EXIT_USAGE,
        )
    key = args.api_key or os.environ.get(KEY_ENV) or None
    if not is_loopback(args.host) and key is None and not args.allow_unauthenticated:
        raise CLIError(
            f"refusing to serve the dashboard on {args.host} without an API key: pass --api-key "
            f"(or ${KEY_ENV}), or --allow-unauthenticated for a read-only dashboard",
            EXIT_USAGE,
        )
    from ..fastapi.dashboard import standalone_app
    with open_client(args):  # fail now, in one line, on a missing or unopenable store
        pass
    import socket

    import uvicorn

    url = store_url(args)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as e:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {e.strerror}", EXIT_USAGE) from None
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    base = f"http://{host}:{port}/"
    mode = "actions need the API key" if key else "read-only (no --api-key)"
    print(f"durable_core dashboard on {base}  (store {url}; {mode})", flush=True)
    if key:
        print(f"  open {base}#key={key} to sign in with the key", flush=True)
    app = standalone_app(url, api_key=key)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return EXIT_OK
