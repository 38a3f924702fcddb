"""The worker of the asynchronous HTTP API sample: the orchestration and its activity.

Ported from the Durable Task SDK sample: the code is the same with ``durable_core`` imports,
and the store is an SQLite file instead of a scheduler service. Run it beside ``client.py``
(two processes sharing the file)::

    python worker.py --db sqlite:///durable.db

or run ``app.py``, which hosts this worker and the HTTP API in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from typing import Any

import durable_core as dc

logger = logging.getLogger("async_http_api.worker")


@dc.activity
async def process_long_running_operation(ctx: dc.ActivityContext, operation_data: dict) -> dict:
    """Simulate work that takes ``processing_time`` seconds (``delay_seconds`` also works)."""
    data = dict(operation_data or {})
    seconds = float(data.get("processing_time", data.get("delay_seconds", 5)))
    if seconds < 0:
        raise ValueError("processing_time must be >= 0")
    logger.info("operation %s: working for %s s", ctx.orchestration_id, seconds)
    start = time.time()
    await asyncio.sleep(seconds)
    result: dict[str, Any] = {
        "operation_id": ctx.orchestration_id,
        "status": "completed",
        "processing_time": seconds,
        "started_at": start,
        "completed_at": time.time(),
    }
    if "name" in data:
        result["message"] = f"Hello, {data['name']}! Processed in {seconds} seconds."
    return result


@dc.orchestrator
def async_http_api_orchestrator(ctx: dc.OrchestrationContext, operation_data: dict):
    """Run the long operation as an activity; the HTTP layer polls this orchestration."""
    ctx.set_custom_status({"stage": "processing"})
    result = yield ctx.call_activity(process_long_running_operation, input=operation_data)
    ctx.set_custom_status({"stage": "done"})
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the worker until Ctrl+C (or SIGTERM)."""
    parser = argparse.ArgumentParser(description="async HTTP API sample: the worker")
    parser.add_argument("--db", default="sqlite:///durable.db", help="store URL (shared with client.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with dc.Runtime(args.db):
            print(f"worker running on {args.db}; Ctrl+C to stop", flush=True)
            await stop.wait()
        print("worker stopped", flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
