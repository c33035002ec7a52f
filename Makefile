# Skybridge: `make run` runs the suite, `make test` runs its tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install protos run test test-sqlite lint bench fuzz clean console

# The virtual environment with the pinned dependencies, and the generated protos.
$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

install: $(STAMP) protos

protos: $(STAMP)
	$(PY) protos/generate.py

# The console (TypeScript, Vite, CesiumJS) the gateway serves: npm installs from the lock
# file, then codegen + typecheck + bundle into dist/. Rebuilt only when its sources, its
# lock or the protos changed.
CONSOLE := services/gateway/console
CONSOLE_SOURCES := $(shell find $(CONSOLE) -path $(CONSOLE)/node_modules -prune -o \
	-path $(CONSOLE)/dist -prune -o -path $(CONSOLE)/src/gen -prune -o -type f -print \
	2>/dev/null) $(shell find protos -name '*.proto')

$(CONSOLE)/node_modules/.package-lock.json: $(CONSOLE)/package-lock.json
	cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error

$(CONSOLE)/dist/index.html: $(CONSOLE)/node_modules/.package-lock.json $(CONSOLE_SOURCES)
	cd $(CONSOLE) && npm run --silent build
	touch $@

console: install $(CONSOLE)/dist/index.html

# All services and the gateway in one supervisor process, on SQLite under var/, with seeded
# defaults and development sign-in; the console is built first when Node.js is installed.
run: install
	@if command -v npm >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory console || echo "the console did not build: the gateway serves every RPC without it"; \
	else \
	  echo "no Node.js/npm here: the four services and the gateway run; the console is not built"; \
	fi
	$(PY) -m shared.tokens init
	SKYBRIDGE_GATEWAY_DEV_TOKENS=true $(PY) -m services

# The whole suite: SQLite always, PostgreSQL when it answers (see tests/conftest.py).
test: install
	$(PY) -m pytest

# The long contract fuzz run (tests/fuzz): every RPC of the four services with empty, random,
# hostile and non-protobuf requests; prints totals by code and service, the violations, and
# a JSON line of totals last; fails on any violation. `make fuzz FUZZ_BACKEND=postgres`.
FUZZ_CALLS ?= 100000
FUZZ_SEED ?= 1
FUZZ_BACKEND ?= sqlite
fuzz: install
	$(PY) -m tests.fuzz --calls $(FUZZ_CALLS) --seed $(FUZZ_SEED) --backend $(FUZZ_BACKEND)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/buf lint

# Benchmarks, each against its reference in the same run (Stone Soup is a bench-only extra).
bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	$(PY) bench/platform.py
	$(PY) bench/orbit.py
	$(PY) bench/orbit_kernel.py
	$(PY) bench/provisioning.py
	$(PY) bench/linkbroker.py
	$(PY) bench/threat.py
	$(PY) bench/gateway.py

clean:
	rm -rf $(VENV) shared/gen build var .pytest_cache .ruff_cache $(CONSOLE)/dist $(CONSOLE)/node_modules $(CONSOLE)/src/gen
