# Two commands for a new user: `make run` and `make test`. Each sets itself up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint format demo clean

setup: $(STAMP)

# torch==2.13.0 first: a torch range resolved by pip alone would pull a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,postgres]"
	touch $(STAMP)

run: setup
	$(PY) -m service

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(VENV)/bin/pytest

# A whole search on digits through the REST API: service, job, fronts, ONNX download + run.
demo: setup
	$(VENV)/bin/nas demo

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
