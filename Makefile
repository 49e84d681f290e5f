# Two entry points for a fresh clone: `make pipeline` and `make test` (see README.md).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup pipeline test test-fast lint coverage ui params clean chromium postgresql study-docs tasks-docs efficacy

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found: gapline needs Python 3.11 (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@

setup: $(BIN)/.installed

pipeline: setup
	dvc repro
	@echo
	@echo "Metrics: reports/metrics.json   Diagnosis: reports/diagnosis.md   Plots: reports/plots/"
	@echo "Open the MLflow UI:  $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000"
	@echo "then browse http://127.0.0.1:5000 (experiment 'gapline')."

# The MLflow UI test (tests/e2e/test_tracking_server.py) drives headless Chromium. `make test`
# installs Debian's package when it is missing and apt-get can run (root: CI, containers);
# otherwise that one test skips and says why.
CHROMIUM ?= /usr/bin/chromium

chromium:
	@if [ -x "$(CHROMIUM)" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the MLflow UI test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	    || echo "warning: apt-get could not install chromium: the MLflow UI test will skip"; \
	else echo "note: chromium is missing and apt-get needs root: the MLflow UI test will skip"; fi

# The team tests (tests/e2e/test_team_*.py) start a real PostgreSQL server for MLflow's
# backend store. `make test` installs Debian's package when initdb is missing and apt-get can
# run (root: CI, containers); otherwise those tests skip and say why.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing postgresql (apt-get) for the team tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
	    || echo "warning: apt-get could not install postgresql: the team tests will skip"; \
	else echo "note: postgresql is missing and apt-get needs root: the team tests will skip"; fi

# Tests run in parallel processes (pytest-xdist): one per core, at most 4. Each module stays
# on one process, in order: some modules (test_retrain) are one scenario in several steps.
# Modules are handed out in tests/conftest.py's order (slow modules first), not xdist's
# default by test count, which left the long modules of a few tests for the end.
test: setup chromium postgresql lint
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadscope --no-loadscope-reorder

# The lint gate: ruff's rules and the import rules of docs/architecture.md (pyproject.toml,
# [tool.ruff]), then mypy on src/ ([tool.mypy]); zero findings. The import graph's acyclicity
# and layers are a test (tests/repo/test_import_graph.py).
lint: setup
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/mypy

# Line and branch coverage of src/gapline over the whole suite (pyproject.toml,
# [tool.coverage]); the totals are in BENCHMARKS.md section 1. Slower than `make test`.
coverage: setup chromium postgresql
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(abspath .coverage) $(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadscope --no-loadscope-reorder \
	  --cov --cov-report=term:skip-covered --cov-report=json:coverage.json

test-fast: setup
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadscope --no-loadscope-reorder -m "not slow"

# README's three study blocks and docs/study*.png, regenerated from the digits, breast cancer
# and diabetes studies (from empty caches about 8.5 + 5 + 5 min on 2 cores; finished runs are
# cached under reports/study*/jobs/, so delete those to retrain).
study-docs: setup
	$(BIN)/gapline study experiment=study
	$(BIN)/gapline study experiment=study_breast_cancer
	$(BIN)/gapline study experiment=study_diabetes
	$(BIN)/python docs/study_section.py

# The task presets (README "Tasks"): train each with 3 seeds (about a minute), then the table.
tasks-docs: setup
	$(BIN)/python docs/tasks_section.py --run

# BENCHMARKS.md sections 14 and 15, README "Tables as they come" and "Efficacy on data nobody
# tuned for" (issues #26, #29): gapline's defaults against HistGradientBoosting on four real
# tables (about 2 minutes on 2 cores); then defaults, `gapline tune` and the classical models
# on two real image sets and three tables, 5 seeds (see BENCHMARKS.md for its time); then the
# README blocks from the results.
efficacy: setup
	$(BIN)/python -m pip install --quiet -e ".[efficacy]"
	$(BIN)/python benchmarks/table_efficacy.py
	$(BIN)/python benchmarks/efficacy.py
	$(BIN)/python docs/efficacy_section.py

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf data/prepared data/augmented models reports/plots mlflow.db mlruns .dvc/cache .dvc/tmp
