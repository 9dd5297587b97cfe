# The two set-up commands of README.md: `make demo` and `make test`.
# Each creates the project virtual environment (.venv) itself, installs what
# it needs (pinned by constraints.txt) and makes Fashion-MNIST load offline.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt

.PHONY: demo test lint data

demo: $(VENV)/.demo-installed data
	$(BIN)/keras-fastrain demo $(DEMO_ARGS)

test: $(VENV)/.test-installed data lint
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest $(PYTEST_ARGS)
	KERAS_BACKEND=jax $(BIN)/python -m pytest $(PYTEST_ARGS)
	KERAS_BACKEND=torch $(BIN)/python -m pytest -m smoke $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Fashion-MNIST comes from the Keras cache, else from Debian's
# dataset-fashion-mnist package (installed here when apt-get can).
data:
	@$(BIN)/keras-fastrain data || { \
	  echo "Installing Debian's dataset-fashion-mnist ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null && \
	  $(BIN)/keras-fastrain data; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(PIP) --editable ".[tensorflow,demo]"
	touch $@

# Horovod does not build from PyPI against today's TensorFlow: the script
# builds it once (about 10 minutes) and caches the wheel in ~/.cache.
$(VENV)/.test-installed: $(BIN)/python setup.cfg pyproject.toml constraints.txt scripts/build_horovod.sh
	$(PIP) --editable ".[tensorflow,jax,tuner,test]" "torch==2.13.0" build twine
	scripts/build_horovod.sh $(VENV)
	touch $@
