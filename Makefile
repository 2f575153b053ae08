# The two commands: `make demo` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default; a GPU user overrides it, e.g. `make demo TORCH_SPEC="torch==2.13.0 --index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
PORT ?= 3000
PYTEST_WORKERS ?= 2
STAMP := $(VENV)/.installed-stamp

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export ASTRO_ASSETS_DATA ?= $(CURDIR)/data

.PHONY: install browser services demo test test-all dev bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Chromium for the UI test (installed with apt-get when root; otherwise the test is skipped).
browser:
	bash scripts/install_browser.sh

# PostgreSQL and Redis for the production-profile test (installed with apt-get when root).
services:
	bash scripts/install_services.sh

# Order-only: written when missing, never over an instance's own settings.
$(DAGSTER_HOME)/dagster.yaml: | dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/astro-assets samples --size demo --jobs 8 --job-size 512
	$(BIN)/astro-assets ingest
	$(BIN)/astro-assets materialize

test: install browser
	$(BIN)/ruff check astro_assets assets_tests benchmarks
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not slow and not gemini"

test-all: install browser services
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not gemini"

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p $(PORT) -w workspace.yaml

bench: install
	$(BIN)/python benchmarks/bench_median.py
	$(BIN)/python benchmarks/quality_flatfield.py
	$(BIN)/python benchmarks/quality_flatfield_beyond.py
	$(BIN)/python benchmarks/quality_mosaic.py
	$(BIN)/python benchmarks/quality_detect_low_noise.py
	$(BIN)/python benchmarks/bench_interpolated_median.py
	$(BIN)/python benchmarks/bench_detector_memory.py
	$(BIN)/python benchmarks/bench_job_tensors.py
	$(BIN)/python benchmarks/bench_cnn.py
	$(BIN)/python benchmarks/bench_scale.py --jobs 200
	$(BIN)/python benchmarks/bench_flatfield_graph.py

lint: install
	$(BIN)/ruff check astro_assets assets_tests benchmarks
	$(BIN)/ruff format --check astro_assets assets_tests benchmarks

format: install
	$(BIN)/ruff format astro_assets assets_tests benchmarks
	$(BIN)/ruff check --fix astro_assets assets_tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
