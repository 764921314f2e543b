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

# Debian/Ubuntu packages, best effort, where apt-get can install them (as root, each step at most
# 5 minutes); elsewhere a message. Use:
#   $(call apt_install,<command that succeeds when present>,<package>,<what it is for>)
define apt_install
	@$(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    timeout 300 apt-get install -y -q --no-install-recommends $(2) >/dev/null 2>&1 || \
	    { timeout 300 apt-get update -q >/dev/null 2>&1 && \
	      timeout 300 apt-get install -y -q --no-install-recommends $(2) >/dev/null 2>&1; } || \
	    echo "make: apt-get could not install $(2) ($(3))" >&2; \
	  else \
	    echo "make: $(3) is missing (Debian/Ubuntu: $(2); macOS: brew install nghttp2)" >&2; \
	  fi; }
endef

# setup.py builds the native gRPC front end where libnghttp2's headers are (else grpcio serves).
$(STAMP): pyproject.toml constraints.txt setup.py $(wildcard serving/server/*.c serving/server/*.h)
	$(call apt_install,test -f /usr/include/nghttp2/nghttp2.h,libnghttp2-dev,libnghttp2's headers for the native gRPC front end)
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
	$(call apt_install,command -v h2load,nghttp2-client,the serving benchmark's load generator h2load)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache runs models
