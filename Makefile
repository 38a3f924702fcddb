# Entry points for a fresh machine (Python 3.10+ and a C compiler); each installs what it needs.
#   make run       -- the asynchronous HTTP API sample on the embedded SQLite store (port 8000),
#                     with the dashboard at /dashboard/ (it prints the URLs)
#   make test      -- the whole test suite
# More:
#   make sanitize  -- build the extension with ASan+UBSan and run the C-facing tests under it
#   make fuzz      -- run the history-codec fuzzer for FUZZ_SECONDS
#   make bench     -- the benchmark tables (installs the alternatives measured against)
#   make dashboard -- the dashboard alone on $(DB) (DASHBOARD_PORT, default 8080; read-only
#                     unless DURABLE_CORE_DASHBOARD_KEY is set)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
DB ?= sqlite:///durable.db
FUZZ_SECONDS ?= 60
ASAN_DIR := build/asan
C_FACING_TESTS := tests/test_codec*.py tests/test_timer*.py tests/test_engine*.py

DASHBOARD_PORT ?= 8080

.PHONY: run dashboard test sanitize fuzz bench clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) examples/async_http_api/app.py --db $(DB) --port $(PORT)

dashboard: $(STAMP)
	$(VENV)/bin/durable-core dashboard --store $(DB) --port $(DASHBOARD_PORT)

test: $(STAMP)
	$(PY) -m pytest -q

# The sanitizer build goes to its own directory so it never replaces the normal extension.
sanitize: $(STAMP)
	rm -rf $(ASAN_DIR)
	DURABLE_CORE_DEBUG_BUILD=1 $(PY) setup.py -q build --build-base $(ASAN_DIR)/b
	mkdir -p $(ASAN_DIR)/run
	cp -r $(ASAN_DIR)/b/lib*/durable_core $(ASAN_DIR)/run/
	cp -r tests $(ASAN_DIR)/run/
	cd $(ASAN_DIR)/run && LD_PRELOAD=$$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  DURABLE_CORE_REQUIRE_EXTENSION=1 PYTHONDONTWRITEBYTECODE=1 \
	  $(abspath $(PY)) -m pytest -q -p no:cacheprovider $(wildcard $(C_FACING_TESTS))
	@echo "== codec mutation fuzz loop under the sanitizers"
	cd $(ASAN_DIR)/run && LD_PRELOAD=$$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(abspath $(PY)) tests/fuzz/fuzz_codec.py --seconds 20

# Coverage-guided with atheris where it installs; otherwise the target's own mutation loop.
fuzz: $(STAMP)
	@$(PY) -m pip install --quiet atheris >/dev/null 2>&1 || echo "atheris unavailable: using the plain mutation loop"
	mkdir -p .fuzz-corpus
	if $(PY) -c "import atheris" 2>/dev/null; then \
	  $(PY) tests/fuzz/fuzz_codec.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 .fuzz-corpus; \
	else \
	  $(PY) tests/fuzz/fuzz_codec.py --seconds $(FUZZ_SECONDS); \
	fi

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info durable_core/*.so
