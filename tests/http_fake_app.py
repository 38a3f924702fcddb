"""The sample's client.py app on the in-memory fake client (served by uvicorn in tests)."""

from __future__ import annotations

import client  # examples/async_http_api/client.py

from http_support import fake_lifespan

app = client.create_app(fake_lifespan())
