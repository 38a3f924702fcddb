# Two entry points for a fresh machine (Python 3.10+ and a C compiler):
#   make run    -- the asynchronous HTTP API sample on the embedded SQLite store
#   make test   -- the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test demo sanitize fuzz bench clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info durable_core/*.so
