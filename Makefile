# make run   - the service on embedded defaults (SQLite, in-process Redis stand-ins) at http://127.0.0.1:5000
# make test  - the lint gate, then every test, against real PostgreSQL and Redis (started here if installed but not running)
# make lint  - ruff check and ruff format --check on the whole tree
# make bench - the benchmark suite (see bench/README.md), then the anomaly detection's (make bench-anomalies)
# make bench-anomalies - the anomaly detection's benchmark alone: detection and scan time (docs/anomalies.md)
# make bench-analytics - the analytics on a 10-million-row ledger: ranges' latency, the claim's cost (docs/analytics.md)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test lint services chromium bench bench-anomalies bench-analytics clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# The runtime alone (make run); the test, lint and browser toolchain comes with make test.
$(VENV)/.runtime-installed: $(BIN)/activate requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The demo's own defaults (production keeps its own): the board is public, so a first visit shows it
# before anyone signs in; sign-in tolerates a few typos on two tabs; logs are plain text lines.
run: export SCOREBOARD_PUBLIC_BOARD ?= true
run: export SCOREBOARD_RATE_LIMIT_LOGIN ?= 30/minute;300/hour
run: export SCOREBOARD_LOG_FORMAT ?= text
run: $(VENV)/.runtime-installed
	@SCOREBOARD_LOG_LEVEL=ERROR $(BIN)/flask db upgrade
	@SCOREBOARD_LOG_LEVEL=ERROR $(BIN)/flask actions load scoreboard/default_catalog.json
	@SCOREBOARD_LOG_LEVEL=ERROR $(BIN)/flask users create alice --password alice --display-name Alice --exist-ok
	@SCOREBOARD_LOG_LEVEL=ERROR $(BIN)/flask users create bob --password bob --display-name Bob --exist-ok
	@SCOREBOARD_LOG_LEVEL=ERROR $(BIN)/flask users create site --password site --display-name "Demo site" \
	  --role service --exist-ok
	@echo "Scoreboard demo: http://127.0.0.1:5000  (sign in as alice/alice or bob/bob)"
	$(BIN)/flask run --host 127.0.0.1 --port 5000 --with-threads

services:
	@bash scripts/ensure_services.sh

# Debian's chromium for the browser tests (tests/browser); installs nothing when present.
chromium:
	@bash scripts/ensure_chromium.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint services chromium
	$(BIN)/python -m pytest

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-bench.txt
	touch $@

# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--quick"; the anomaly benchmark runs last.
bench: $(VENV)/.bench-installed services
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.anomalies $(ANOMALY_ARGS)

# ANOMALY_ARGS passes options through, e.g. make bench-anomalies ANOMALY_ARGS="--users 100000 --seed 2".
bench-anomalies: $(VENV)/.bench-installed services
	$(BIN)/python -m bench.anomalies $(ANOMALY_ARGS)

# The analytics on a 10-million-row ledger in a database of its own, dropped after (docs/analytics.md);
# ANALYTICS_ARGS passes options through, e.g. make bench-analytics ANALYTICS_ARGS="--rows 1000000".
bench-analytics: $(VENV)/.bench-installed services
	$(BIN)/python -m bench.analytics $(ANALYTICS_ARGS)

# make stack - the Procfile's production processes (gunicorn, a Celery worker, Celery beat) under honcho,
# on the local PostgreSQL (database STACK_DB, created if missing) and Redis, after migrating and loading
# the default catalog; Prometheus multiprocess metrics for web and worker. The JWT secret is for
# development only (long enough for the production checks). Ctrl-C stops every process.
STACK_PG ?= postgresql://postgres@127.0.0.1:5432
STACK_DB ?= scoreboard
STACK_REDIS_URL ?= redis://127.0.0.1:6379/0
STACK_BIND ?= 127.0.0.1:5000
STACK_WORKER_METRICS_PORT ?= 9808
STACK_RUN_DIR ?= $(CURDIR)/instance/stack
STACK_JWT_SECRET ?= dev-only-make-stack-jwt-secret-never-use-in-production
.PHONY: stack
stack: export SCOREBOARD_DATABASE_URL = $(STACK_PG)/$(STACK_DB)
stack: export SCOREBOARD_REDIS_URL = $(STACK_REDIS_URL)
stack: export SCOREBOARD_JWT_SECRET_KEY = $(STACK_JWT_SECRET)
stack: export SCOREBOARD_BIND = $(STACK_BIND)
stack: export SCOREBOARD_WORKER_METRICS_PORT = $(STACK_WORKER_METRICS_PORT)
stack: export STACK_RUN_DIR := $(STACK_RUN_DIR)
stack: $(VENV)/.installed services
	@psql "$(STACK_PG)/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$(STACK_DB)'" | grep -q 1 \
	  || { echo "creating database $(STACK_DB)"; psql "$(STACK_PG)/postgres" -qc 'CREATE DATABASE "$(STACK_DB)"'; }
	$(BIN)/flask db upgrade
	$(BIN)/flask actions load scoreboard/default_catalog.json
	mkdir -p "$(STACK_RUN_DIR)/metrics-web" "$(STACK_RUN_DIR)/metrics-worker"
	@echo "stack: web http://$(STACK_BIND), worker metrics http://127.0.0.1:$(STACK_WORKER_METRICS_PORT)/metrics; Ctrl-C stops it"
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start -f Procfile

clean:
	rm -rf $(VENV) instance .pytest_cache
