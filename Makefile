# Skybridge: `make run` runs the suite, `make test` runs its tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install protos run test test-sqlite lint bench clean

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

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/buf lint

# Benchmarks, each against its reference in the same run (Stone Soup is a bench-only extra).
bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	$(PY) bench/platform.py
	$(PY) bench/orbit.py
	$(PY) bench/provisioning.py
	$(PY) bench/linkbroker.py
	$(PY) bench/threat.py

clean:
	rm -rf $(VENV) shared/gen build var .pytest_cache .ruff_cache
