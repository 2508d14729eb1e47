# make run   - the service on embedded defaults (SQLite, in-process Redis stand-ins) at http://127.0.0.1:5000
# make test  - every test, against real PostgreSQL and Redis (started here if installed but not running)
# make bench - the benchmark suite (see bench/README.md)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test services chromium bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate requirements.txt requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/flask db upgrade
	$(BIN)/flask actions load scoreboard/default_catalog.json
	$(BIN)/flask users create alice --password alice --display-name Alice
	$(BIN)/flask users create bob --password bob --display-name Bob
	$(BIN)/flask users create site --password site --display-name "Demo site" --role service
	@echo "Scoreboard demo: http://127.0.0.1:5000  (sign in as alice/alice or bob/bob)"
	$(BIN)/flask run --host 127.0.0.1 --port 5000 --with-threads

services:
	@bash scripts/ensure_services.sh

# Debian's chromium for the browser tests (tests/browser); installs nothing when present.
chromium:
	@bash scripts/ensure_chromium.sh

test: $(VENV)/.installed services chromium
	$(BIN)/python -m pytest

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-bench.txt
	touch $@

# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--quick".
bench: $(VENV)/.bench-installed services
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
