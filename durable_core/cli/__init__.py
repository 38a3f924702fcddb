"""The ``durable-core`` command line (also ``python -m durable_core``)."""
