# `make demo` and `make test` work on a fresh machine: both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# TFLite export (litert-torch) runs in an environment of its own: it pins pydantic below ours
TFLITE_VENV := .venv-tflite
TFLITE_STAMP := $(TFLITE_VENV)/.installed

.PHONY: venv tflite-env demo demo-quick demo-gan test test-all lint format bench clean

# pip (not uv/poetry): it takes the pinned CPU torch wheel from the local disk.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(TFLITE_STAMP): requirements-tflite.txt
	test -x $(TFLITE_VENV)/bin/python || $(PYTHON) -m venv $(TFLITE_VENV)
	$(TFLITE_VENV)/bin/pip install --quiet --upgrade pip
	$(TFLITE_VENV)/bin/pip install --quiet -r requirements-tflite.txt
	touch $(TFLITE_STAMP)

tflite-env: $(TFLITE_STAMP)

demo: $(STAMP)
	bash experiments/demo.sh

demo-quick: $(STAMP)
	bash experiments/demo.sh --quick

demo-gan: $(STAMP)
	bash experiments/demo_gan.sh

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

test-all: $(STAMP) $(TFLITE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python experiments/bench_supernet.py
	$(BIN)/python experiments/bench_latency.py
	$(BIN)/python experiments/bench_weight_sharing.py
	$(BIN)/python experiments/bench_search.py
	$(BIN)/python experiments/bench_gan.py

clean:
	rm -rf $(VENV) $(TFLITE_VENV) .pytest_cache .ruff_cache
