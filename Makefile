# deepline — every target sets itself up: on a fresh machine `make test` alone installs and passes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PIPELINE ?= lenet5
ARGS ?=
TUNER ?= hyperband
MAX_TRIALS ?= 10
MODEL_NAME ?= lenet5
MODEL_BASE_PATH ?= $(CURDIR)/models/$(MODEL_NAME)
GRPC_PORT ?= 8500
REST_PORT ?= 8501

export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow
export PYTHONUNBUFFERED ?= 1

.PHONY: install test test-fast train tune serve query bench h2load lint clean

$(STAMP): pyproject.toml constraints.txt setup.py $(wildcard serving/server/*.c serving/server/*.h)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m 'not slow'

train: $(STAMP)
	$(VENV)/bin/deepline-train $(PIPELINE) $(ARGS)

tune: $(STAMP)
	$(VENV)/bin/deepline-tune $(PIPELINE) --tuner $(TUNER) --max-trials $(MAX_TRIALS) $(ARGS)

# gRPC on GRPC_PORT and REST on REST_PORT (0 turns REST off); flags in ARGS come last and win.
# With --model_config_file in ARGS the config names the models, so no --model_base_path is passed.
serve: $(STAMP)
	$(PY) -m serving.launch --port=$(GRPC_PORT) --rest_api_port=$(REST_PORT) \
	  $(if $(findstring model_config_file,$(ARGS)),,--model_name=$(MODEL_NAME) --model_base_path=$(MODEL_BASE_PATH)) $(ARGS)

query: $(STAMP)
	$(VENV)/bin/deepline-query $(ARGS)

bench: $(STAMP) h2load
	$(PY) -m benchmarks $(ARGS)

# The serving benchmark's load generator (nghttp2's h2load), from Debian/Ubuntu's nghttp2-client
# where apt-get can install it; elsewhere a message (macOS: brew install nghttp2).
h2load:
	@command -v h2load >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q --no-install-recommends nghttp2-client >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      apt-get install -y -q --no-install-recommends nghttp2-client >/dev/null 2>&1; } || \
	    echo "make h2load: apt-get could not install nghttp2-client (h2load)" >&2; \
	  else \
	    echo "make h2load: install h2load (Debian/Ubuntu: nghttp2-client; macOS: brew install nghttp2)" >&2; \
	  fi; }

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache runs models
