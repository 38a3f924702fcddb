"""What the HTTP tests share: one app under test, on the fake client or the real runtime.

``BACKENDS`` lists where the tests run: ``fake`` (tests/http_fakes.py, in memory) and
``runtime`` (a real :class:`durable_core.Runtime` on a temporary SQLite file, started by the
app's lifespan). The runtime backend is skipped when the runtime is not importable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

import httpx
import pytest
from fastapi import FastAPI

from durable_core.fastapi import runtime_lifespan

from http_fakes import FAKE_BEHAVIORS, FakeAsyncClient

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "async_http_api"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


def runtime_available() -> bool:
    """True when the real runtime (and the engine it needs) can be imported."""
    for mod in ("durable_core.runtime", "durable_core.client", "durable_core.registry"):
        try:
            if importlib.util.find_spec(mod) is None:
                return False
        except ImportError:
            return False
    return True


BACKENDS = [
    "fake",
    pytest.param(
        "runtime",
        marks=pytest.mark.skipif(not runtime_available(), reason="runtime not built yet"),
    ),
]


def fake_lifespan(behaviors: Optional[dict] = None, **kw: Any) -> Callable[[FastAPI], Any]:
    """A lifespan publishing a FakeAsyncClient as ``app.state.durable_client``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = FakeAsyncClient(behaviors or FAKE_BEHAVIORS, **kw)
        app.state.durable_client = client
        try:
            yield
        finally:
            await client.close()

    return lifespan


def lifespan_for(backend: str, tmp_path: Path, registry: Any = None) -> Callable[[FastAPI], Any]:
    """The lifespan of a test app on ``backend``."""
    if backend == "fake":
        return fake_lifespan()
    if registry is None:
        from http_orchestrations import test_registry

        registry = test_registry()
    return runtime_lifespan(f"sqlite:///{tmp_path / 'http.db'}", registry=registry, stop_grace=0.5)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an httpx client talking to it in process (ASGI)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def poll_until_done(
    http: httpx.AsyncClient, url: str, *, limit: int = 600, headers: Optional[dict] = None
) -> httpx.Response:
    """Poll a status monitor (long-polling, so no sleep loop) until the operation finished."""
    for _ in range(limit):
        sep = "&" if "?" in url else "?"
        r = await http.get(url + f"{sep}wait=5", headers=headers)
        assert r.status_code in (200, 202, 303), r.text
        if r.status_code == 303 or r.json()["status"] in ("Succeeded", "Failed", "Canceled"):
            return r
    raise AssertionError(f"{url} never finished")


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until ``url`` answers (the server is up) or the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"server exited with {proc.returncode}: {out}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up in {timeout}s")


def spawn(args: list[str], *, cwd: Optional[Path] = None, env: Optional[dict] = None) -> subprocess.Popen:
    """Start a Python subprocess with the repo's tests on its path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "tests"), str(EXAMPLES), str(ROOT), e.get("PYTHONPATH", "")]
    )
    e["PYTHONUNBUFFERED"] = "1"
    if env:
        e.update(env)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=str(cwd or ROOT),
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen) -> str:
    """Stop a subprocess politely (SIGINT, then kill) and return its output."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is None:
        return ""
    with proc.stdout:
        return proc.stdout.read()
