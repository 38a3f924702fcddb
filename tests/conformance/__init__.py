"""The backend conformance suite: the contract of :mod:`durable_core.backends.base`, as tests.

Every test takes the ``backend`` (or ``make_backend``) fixture, parametrized over every backend
that can run here (see ``conftest.py``); a new backend is added there and must pass all of it.
The tests use the public contract only -- no SQL, no private attributes.
"""
