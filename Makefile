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

# The sample model, its sidecar and a video of held-out digits: trained and written here
# from scikit-learn's digits, nothing downloaded.
$(DEMO)/digits.avi: packager/samples.py | $(STAMP)
	$(PY) -m packager.samples $(DEMO)

demo: $(DEMO)/digits.avi
	$(VENV)/bin/edge info
	$(VENV)/bin/edge run --config examples/demo.yaml --report-every 2

# Runtime overhead against the raw interpreter, the bench table for digits and MobileNetV2,
# and the daemon against the raw and the naive loop.
bench: $(STAMP)
	$(PY) -m tests.benchmarks.runtime --out $(BUILD)/bench
	$(PY) -m tests.benchmarks.daemon --out $(BUILD)/bench --threads 1
	$(PY) -m tests.benchmarks.daemon --out $(BUILD)/bench --threads 2

package deploy: $(STAMP)
	@echo "make $@: not built yet (see the open issues: profiles and signed bundles)" >&2; exit 2

clean:
	rm -rf $(BUILD) dist .pytest_cache .mypy_cache .ruff_cache
