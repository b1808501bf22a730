# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The default production source that `make run` writes when none exists.
DEFAULT_START ?= 2025-01-01
DEFAULT_DAYS ?= 120
DEFAULT_STATIONS ?= 40
# pytest-xdist workers for `make test` (the machine's cores by default).
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export OMP_NUM_THREADS ?= 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run test lint format bench viz clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The whole lifecycle on the default data: dev -> acceptance (challenger) -> prod
# (champion). Re-running is safe: an unchanged model is reported, not re-registered.
run: setup
	$(BIN)/kedro simulate --start $(DEFAULT_START) --days $(DEFAULT_DAYS) --stations $(DEFAULT_STATIONS) --if-missing
	$(BIN)/kedro run --env dev
	$(BIN)/kedro run --env acceptance
	$(BIN)/kedro run --env prod
	@echo; echo "== champion =="
	$(BIN)/kedro lineage --env prod --alias champion
	@echo; echo "== alias history =="
	$(BIN)/kedro models history --env prod
	@echo; echo "MLflow UI: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000"
	@echo "then open http://127.0.0.1:5000 (experiments modelops-dev, modelops-acceptance, modelops-prod)."

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# Debian's headless Chromium, for the tests that screenshot HTML reports (tests/browser.py).
# Installed once when missing (as root with apt-get, as CI runs); `make test` depends on it.
# Elsewhere it says how to get it, and the browser tests skip with that reason.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else echo "make browser: /usr/bin/chromium is missing and this is not root on Debian: install" \
		"Debian's chromium package (or set MODELOPS_CHROMIUM); the browser tests are skipped."; fi

# pytest exits 5 when it collected no test: say so plainly rather than fail obscurely.
test: lint browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests"; exit 0; fi; \
	exit $$status

bench: setup
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_deployment_job.py
	$(BIN)/python benchmarks/bench_batch_serving.py
	$(BIN)/python benchmarks/bench_serving.py
	$(BIN)/python benchmarks/bench_onnx_predict.py
	$(BIN)/python benchmarks/bench_monitoring.py
	$(BIN)/python benchmarks/drift_detection_rates.py

viz: setup
	$(BIN)/kedro viz run --env dev --host 127.0.0.1

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .viz
