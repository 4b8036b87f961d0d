# warpcore: `make run` serves the embedded default model; `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# LiteLLM's proxy, a contender in bench/api_gateway.py, pins openai < 3: it gets a virtual environment of its own.
LITELLM_VENV := .venv-litellm
LITELLM_PINS := bench/litellm-constraints.txt
# llama-cpp-python ships as source only; its wheel is compiled for the host CPU's instruction set, so the cache
# that keeps it between set-ups is keyed by the CPU's feature flags (a wheel built elsewhere could crash here).
# scripts/build-llama-wheel.sh builds it there once, saying so and showing progress; a cached wheel is silent.
# Built without AMX tile instructions: some CPUs (and virtual machines) list AMX in /proc/cpuinfo yet trap its
# instructions (SIGILL in ggml's AMX kernels, which llama-cpp-python's default load uses for repacked weights).
# The server loads weights without repacking and never reaches them; direct llama-cpp-python in the tests and
# benchmarks does. The flags are part of the cache key, so a wheel built otherwise is never reused.
LLAMA_CPU_FLAGS := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS="$(LLAMA_CPU_FLAGS)" -DCMAKE_CXX_FLAGS="$(LLAMA_CPU_FLAGS)"
CPU_KEY := $(shell (uname -m; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null; echo '$(LLAMA_CMAKE_ARGS)') | sha256sum | cut -c1-12)
WHEEL_CACHE ?= $(HOME)/.cache/warpcore/wheels/$(CPU_KEY)
export MODELS_PATH ?= $(HOME)/.cache/warpcore/models
LLAMA_CPP_PIN := $(shell grep -iE '^llama[-_]cpp[-_]python==' constraints.txt)
PROTOS := $(wildcard proto/warpcore/v1/*.proto)
GENERATED_ROOT := client/src
protoc = $(BIN)/python -m grpc_tools.protoc -I proto \
	--python_out=$(1) --grpc_python_out=$(1) --mypy_out=$(1) --mypy_grpc_out=$(1) \
	--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
	$(PROTOS)

.PHONY: setup run test bench lint typecheck buf-lint check-generated generate pytest lock clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml client/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt pip
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' scripts/build-llama-wheel.sh $(BIN)/pip $(WHEEL_CACHE) '$(LLAMA_CPP_PIN)'
	$(BIN)/pip install --quiet --find-links $(WHEEL_CACHE) -c constraints.txt -e ./client -e '.[dev]'
	touch $@

$(LITELLM_VENV)/.installed: bench/litellm-requirements.txt $(LITELLM_PINS)
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --disable-pip-version-check -c $(LITELLM_PINS) pip
	$(LITELLM_VENV)/bin/pip install --quiet --disable-pip-version-check -c $(LITELLM_PINS) -r bench/litellm-requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

run: setup
	$(BIN)/warpcore-server

# The smoke version of every benchmark runs in pytest, and the API one needs LiteLLM.
test: setup $(LITELLM_VENV)/.installed lint typecheck buf-lint check-generated pytest

# Every benchmark against its alternatives, same run, same machine: bench/results/README.md and its charts.
bench: setup $(LITELLM_VENV)/.installed
	$(BIN)/python -m bench.run --out bench/results

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: setup
	$(BIN)/mypy

buf-lint: setup
	cd proto && ../node_modules/.bin/buf lint && ../node_modules/.bin/buf format --diff --exit-code

# The stubs under client/src/warpcore/v1 must be exactly what the proto generates.
check-generated: setup
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && $(call protoc,$$tmp) \
	  && diff -r --exclude=py.typed --exclude=__pycache__ "$$tmp/warpcore/v1" $(GENERATED_ROOT)/warpcore/v1 \
	  || { echo "generated stubs differ from proto/: run 'make generate' and commit the result"; exit 1; }

generate: setup
	$(call protoc,$(GENERATED_ROOT))

pytest: setup
	$(BIN)/pytest

# Refresh the pins after changing dependencies in a pyproject.toml or bench/litellm-requirements.txt.
lock: setup $(LITELLM_VENV)/.installed
	$(BIN)/pip freeze --all --exclude-editable | grep -v '^warpcore' > constraints.txt
	$(LITELLM_VENV)/bin/pip freeze --all > $(LITELLM_PINS)

clean:
	rm -rf $(VENV) $(LITELLM_VENV) node_modules
