# Every target that needs the venv builds it first: on a fresh clone `make test` is enough.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD ?= build
DEMO := $(BUILD)/demo
THREADS ?= 1,2

.PHONY: setup test lint format bench demo package deploy clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[packager,dev]"
	touch $(STAMP)

test: lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check edge packager tests
	$(VENV)/bin/ruff format --check edge packager tests
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix edge packager tests
	$(VENV)/bin/ruff format edge packager tests

# The sample models the demo runs: trained here from scikit-learn's digits, nothing downloaded.
$(DEMO)/digits-int8.tflite: | $(STAMP)
	$(PY) -m packager.samples $(DEMO)

demo: $(DEMO)/digits-int8.tflite
	$(VENV)/bin/edge info
	$(VENV)/bin/edge bench $(DEMO)/digits-fp32.tflite $(DEMO)/digits-int8.tflite \
		--threads $(THREADS) --inputs $(DEMO)/digits-test.npz

# Runtime overhead against the raw interpreter, and the bench table for digits and MobileNetV2.
bench: $(STAMP)
	$(PY) -m tests.benchmarks.runtime --out $(BUILD)/bench

package deploy: $(STAMP)
	@echo "make $@: not built yet (see the open issues: profiles and signed bundles)" >&2; exit 2

clean:
	rm -rf $(BUILD) dist .pytest_cache .mypy_cache .ruff_cache
