# Two entry points for a fresh clone: `make pipeline` and `make test` (see README.md).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup pipeline test test-fast ui params clean

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

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf data/prepared data/augmented models reports/plots mlflow.db mlruns .dvc/cache .dvc/tmp
