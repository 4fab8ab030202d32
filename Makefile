# Every target does its own set-up: a virtual environment in .venv with the project installed, and the data.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_MNIST := data/01_raw/fashion_mnist
export KEDRO_DISABLE_TELEMETRY := true

.PHONY: install data demo study results test lint browser viz viz-build mlflow-ui benchmark benchmark-study clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

data: $(FASHION_MNIST)/t10k-labels-idx1-ubyte.gz

$(FASHION_MNIST)/t10k-labels-idx1-ubyte.gz: | install
	bash scripts/fetch_fashion_mnist.sh $(FASHION_MNIST) $(BIN)/python

## The main job on the offline default: real data, every pipeline, every student tracked in MLflow.
demo: install data
	$(BIN)/kedro run
	@sed -n '/^## Headline/,/^## Data/{/^## Data/!p}' data/08_reporting/report.md
	@echo "The whole report: data/08_reporting/report.html. The pipeline graph: make viz. Every run: make mlflow-ui, then http://127.0.0.1:5000"

## Every cell of the offline study (conf/full): its own data root (data/full) and MLflow experiment; many hours.
study: install data
	$(BIN)/kedro run --env full
	@sed -n '/^## Headline/,/^## Data/{/^## Data/!p}' data/full/08_reporting/report.md
	@echo "The whole report: data/full/08_reporting/report.html"

## docs/results.md: the report of one fresh `make study` of the committed code, stamped with its commit and machine.
results: install data
	$(BIN)/python scripts/stamp_results.py --check
	rm -rf data/full
	$(MAKE) study
	$(BIN)/python scripts/stamp_results.py data/full/08_reporting/report.md docs/results.md

## The test suite (the formatter and linter, unit tests and a `--env smoke` run of every pipeline).
test: install browser lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/ruff check src tests benchmarks scripts

## Debian's Chromium for the browser tests, where apt-get works; elsewhere those tests are skipped, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) || \
	  echo "no Chromium could be installed: the browser tests will be skipped"

viz: install
	$(BIN)/kedro viz run --host 127.0.0.1

## The pipeline graph as a static site in build/ (opens offline; KEDRO_ENV=smoke for the smoke environment's).
viz-build: install
	$(BIN)/kedro viz build --include-previews

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1

benchmark: install data
	$(BIN)/python benchmarks/bench_training.py

## A study (ENV=base, the default, or ENV=full) from empty data folders, then cached, in a scratch copy: wall time per pipeline.
benchmark-study: install data
	$(BIN)/python benchmarks/bench_study.py --env $(or $(ENV),base)

clean:
	rm -rf data/0[2-8]_*/* data/smoke data/paper data/full mlflow.db mlartifacts logs/dask
