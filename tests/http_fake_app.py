"""The sample's client.py app on the in-memory fake client (served by uvicorn in tests), with
the generic operations router beside it (management open: these apps only serve tests)."""

from __future__ import annotations

import client  # examples/async_http_api/client.py

from durable_core.fastapi import OperationsAPI

from http_support import fake_lifespan

app = client.create_app(fake_lifespan())
OperationsAPI(orchestrators=["echo", "wait_event"], allow_unauthenticated_management=True).install(app)
