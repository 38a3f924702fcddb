"""The asynchronous HTTP API (long-running operation) pattern for FastAPI, and the dashboard.

``POST`` starts an orchestration and answers ``202 Accepted`` at once, with ``Location`` and
``Operation-Location`` pointing at a status monitor and ``Retry-After`` saying when to look
again; the client polls the monitor (or long-polls it with ``?wait=N``) and fetches the result.
Everything here is built on :class:`durable_core.AsyncClient` alone, so the same router serves
from a process that only holds a client (a separate worker process shares the store) or from
a process that also runs the worker (``runtime_lifespan``).

Quick use::

    from fastapi import FastAPI
    from durable_core.fastapi import OperationsAPI, APIKeyAuth, runtime_lifespan

    api = OperationsAPI(orchestrators=[my_flow], management_auth=APIKeyAuth("s3cret"))
    app = FastAPI(lifespan=runtime_lifespan("sqlite:///durable.db"))
    api.install(app)                      # routes + RFC 9457 problem responses
    api.bind("/api/reports", my_flow)     # a custom path that starts ``my_flow``

Routes (``prefix`` defaults to ``/operations``):

========================================================  ====================================
``POST {prefix}/orchestrators/{name}[/{instance_id}]``    start (JSON body = input) -> 202
``GET  {prefix}/instances/{id}[?wait=N&showHistory=true]``  status monitor
``GET  {prefix}/instances/{id}/result``                   the output (202 while running)
``POST {prefix}/instances/{id}/raiseEvent/{event}``       management (auth dependency)
``POST {prefix}/instances/{id}/terminate|suspend|resume|restart``
``DELETE {prefix}/instances/{id}``                        purge
``GET  {prefix}/metrics``                                 Prometheus scrape (management auth)
========================================================  ====================================

The status document speaks two vocabularies at once: ``status`` is the long-running-operation
one (``NotStarted``, ``Running``, ``Succeeded``, ``Failed``, ``Canceled``) and ``runtimeStatus``
the Durable Functions one (``Pending``, ``Running``, ``Completed``, ...), so clients written for
either keep working. ``?wait=N`` answers as soon as the operation changes (status, progress in
the custom status, or its end): commits in the same process wake it at once, commits by another
process are seen by re-reading with back-off; a client that hangs up ends the wait.
Bad input (malformed JSON, a wrong content type, an oversized body, an
invalid id) gets a 4xx ``application/problem+json`` answer (RFC 9457) and writes nothing.

The dashboard (:func:`dashboard`) is an app to mount beside these routes
(``app.mount("/dashboard", dashboard(auth=...))``): instances, their histories as timelines,
and the same actions as the management routes behind the same auth.

The package's modules: ``operations`` (:class:`OperationsAPI`: configuration, starting, the
status monitor and result), ``routes`` (the route table above: endpoint functions, their
OpenAPI description, ``HEAD`` beside ``GET``), ``documents`` (ids, status vocabularies,
payloads decoded without failing, the status document), ``longpoll`` (the ``?wait=N`` wait),
``bodies`` (reading JSON bodies and input models), ``problems`` (RFC 9457 documents and their
OpenAPI description), ``middleware`` (the body-size limit), ``auth``, ``lifespans``,
``encoding`` (response JSON), ``metrics`` (the Prometheus scrape endpoint) and ``dashboard``.
"""

from __future__ import annotations

from .auth import APIKeyAuth
from .bodies import read_json_body, read_model, validate_input
from .documents import (
    ID_SCHEMA,
    INSTANCE_ID_PATTERN,
    UNDECODABLE,
    base_url,
    is_valid_instance_id,
    lro_status,
    runtime_status_name,
    safe_payload,
)
from .lifespans import LifespanFactory, client_lifespan, runtime_lifespan
from .middleware import BodySizeLimitMiddleware
from .operations import OperationsAPI, OrchestratorRef, add_head_routes
from .problems import PROBLEM_MEDIA_TYPE, ProblemError, install_problem_handlers, problem_response
from .dashboard import dashboard

__all__ = [
    "OperationsAPI",
    "OrchestratorRef",
    "APIKeyAuth",
    "ProblemError",
    "BodySizeLimitMiddleware",
    "problem_response",
    "install_problem_handlers",
    "runtime_lifespan",
    "client_lifespan",
    "LifespanFactory",
    "lro_status",
    "runtime_status_name",
    "is_valid_instance_id",
    "safe_payload",
    "PROBLEM_MEDIA_TYPE",
    "INSTANCE_ID_PATTERN",
    "ID_SCHEMA",
    "UNDECODABLE",
    "read_json_body",
    "read_model",
    "validate_input",
    "base_url",
    "add_head_routes",
    "dashboard",
]
