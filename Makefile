# The two commands of the README:
#   make run   install (into the active virtualenv, else ./.venv) and run the quick suite
#   make test  install and run the test suite
# torch==2.13.0 is installed first when no torch is present, so pip never pulls a CUDA build.

PYTHON ?= python3
ifdef VIRTUAL_ENV
  ENV := $(VIRTUAL_ENV)
else
  ENV := $(CURDIR)/.venv
endif
BIN := $(ENV)/bin
STAMP := $(ENV)/.brainbench-installed

.PHONY: install run run-debug test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(ENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/brainbench run

run-debug: install
	$(BIN)/brainbench run --debug

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check brainbench tests benchmarks hubconf.py
	$(BIN)/ruff format --check brainbench tests benchmarks hubconf.py

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/data_pipeline.py
	$(BIN)/python benchmarks/mae_models.py
	$(BIN)/python benchmarks/brainlm.py
	$(BIN)/python benchmarks/step_rate.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/pretrain_step.py --steps 40

clean:
	rm -rf results .pytest_cache
