# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data
WEIGHTS_DIR ?= ../shared/weights/keras
# Keras looks for ImageNet weights here before downloading them; we fill it from WEIGHTS_DIR
# when that folder exists, so training works offline exactly as after a download.
export KERAS_HOME ?= $(CURDIR)/.keras
export DATA_DIR
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test test-fast typecheck install examples keras-cache train-leaf train-cactus train benchmarks deploy clean

run: install examples
	GRADIO_SERVER_NAME=$${GRADIO_SERVER_NAME:-0.0.0.0} GRADIO_SERVER_PORT=$${GRADIO_SERVER_PORT:-7860} $(BIN)/python app.py

test: install examples keras-cache
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The quick loop while working: lint, types and the in-process tests (no app, browser, training or venv).
test-fast: install examples keras-cache
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow" -q -n 2

install: $(VENV)/.installed

# The package itself is installed editable: tests, benchmarks and `greenlens` use this checkout's code.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps imagecorruptions==1.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Copies the example images listed in examples/examples.json from DATA_DIR (skipped if absent).
examples: install
	$(BIN)/python -m greenlens.core.examples --data-dir "$(DATA_DIR)"

keras-cache:
	@if [ -d "$(WEIGHTS_DIR)" ]; then mkdir -p "$(KERAS_HOME)/models" && cp -u "$(WEIGHTS_DIR)"/*.h5 "$(KERAS_HOME)/models/"; \
	else echo "$(WEIGHTS_DIR) not found: Keras will download ImageNet weights on first use"; fi

# The bundled models: each task's default recipe (greenlens/core/tasks.py), no recipe flags. --ood-data only
# measures the out-of-distribution guard on the other task's images; it changes no weight.
train-leaf: install keras-cache
	$(BIN)/python train.py leaf --out models/leaf --ood-data "$(DATA_DIR)/aerial-cactus/test"

train-cactus: install keras-cache
	$(BIN)/python train.py cactus --out models/cactus --ood-data "$(DATA_DIR)/strawberry-leaf/color"

train: train-leaf train-cactus

# Each prints a table and writes benchmarks/results/NAME.json; the README quotes them.
BENCHMARKS = inference_latency throughput load_test hostile_inputs survey_speed survey_blas_threads survey_worker_memory survey_outputs tile_model_int8 tile_speed training_comparison adapt_flight dihedral_views
benchmarks: install examples keras-cache
	for name in $(BENCHMARKS); do $(BIN)/python benchmarks/$$name.py || exit 1; done

# The Space, with the bundled models and the example images from DATA_DIR: make deploy SPACE=ORG/NAME
# (MODELS=hub: the Space pulls ORG/leaf-classifier and ORG/cactus-classifier instead). Needs HF_TOKEN.
deploy: install
	@test -n "$(SPACE)" || { echo "usage: make deploy SPACE=ORG/NAME [MODELS=hub]"; exit 2; }
	$(BIN)/greenlens deploy "$(SPACE)" --models $${MODELS:-bundled} --examples-from "$(DATA_DIR)"

clean:
	rm -rf $(VENV) .pytest_cache examples/leaf examples/cactus
