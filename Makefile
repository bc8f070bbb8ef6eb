# The project's entry points: `make run` and `make test` each do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: install services run dev test up down benchmark reliability clean

install: $(STAMP_PY) $(STAMP_NODE)

# deploy/requirements.lock pins every run-time package: the tests run on what the image ships.
$(STAMP_PY): pyproject.toml deploy/requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c deploy/requirements.lock -e '.[dev]'
	touch $@

$(STAMP_NODE): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20+ (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Start the local stack, run the daily pipeline once, print a summary, stop what was started.
run: install
	$(PY) -m signal9_devstack.local run

# Local stack plus the Dagster UI with schedules and sensors (Ctrl-C stops the UI; `make down` the stack).
dev: install
	$(PY) -m signal9_devstack.local up
	set -a && . .signal9/local.env && set +a && $(VENV)/bin/dagster dev -w workspace.yaml

up: install
	$(PY) -m signal9_devstack.local up

down:
	$(PY) -m signal9_devstack.local down

# PostgreSQL and Redis servers (Debian packages) for the production-like tests.
services:
	scripts/install-services.sh

# ruff, then mypy on the signal9_pipeline package (both configured in pyproject.toml), then the full suite with
# coverage; the suite starts (and stops) its own local stack, and its own PostgreSQL, Redis and Dagster services for
# the production-like test
# (`pytest -m "not production_like"` leaves that one out locally).
test: install services
	$(VENV)/bin/ruff check signal9_pipeline signal9_devstack signal9_pipeline_tests benchmarks deploy
	$(VENV)/bin/mypy
	rm -f .coverage .coverage.*
	$(VENV)/bin/coverage run -m pytest
	$(VENV)/bin/coverage combine --quiet
	$(VENV)/bin/coverage report

# Measurements quoted in benchmarks/README.md (minutes, not part of `make test`).
benchmark: install
	$(PY) -m benchmarks.sandbox
	$(PY) -m benchmarks.asset_sync
	$(PY) -m benchmarks.sensor_tick
	$(PY) -m benchmarks.ohlc_bars
	$(PY) -m benchmarks.capacity
	$(PY) -m benchmarks.adjust
	$(PY) -m benchmarks.settle_requests
	$(PY) -m benchmarks.read

# Crashes, faults, hostile input, secret scans and a 30-day soak; writes RELIABILITY.md from the run.
reliability: install
	$(PY) -m benchmarks.reliability --soak-days 30

clean:
	rm -rf $(VENV) node_modules .signal9 .coverage .coverage.* .pytest_cache .mypy_cache
