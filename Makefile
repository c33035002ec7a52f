# Skybridge: `make run` runs the suite, `make test` runs its tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install protos run test test-sqlite lint bench fuzz clean

# The virtual environment with the pinned dependencies, and the generated protos.
$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

install: $(STAMP) protos

protos: $(STAMP)
	$(PY) protos/generate.py

# All services in one supervisor process, on SQLite under var/, with seeded defaults.
run: install
	$(PY) -m shared.tokens init
	$(PY) -m services

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

clean:
	rm -rf $(VENV) shared/gen build var .pytest_cache .ruff_cache
