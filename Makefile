# The README's commands. Each bootstraps .venv from pyproject.toml; nothing else is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make run` needs only the runtime dependencies; `make test` and the rest install the dev extra.
RUN_STAMP := $(VENV)/.installed-run
# Two test processes: these machines have two cores.
PYTEST_WORKERS ?= 2

.PHONY: run test lint typecheck openapi bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . --config-settings editable_mode=compat
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/signet serve

test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -q --durations=25

lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench

typecheck: $(STAMP)
	$(BIN)/mypy app

openapi: $(STAMP)
	$(BIN)/python -m app.openapi > openapi/openapi.json

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]' --config-settings editable_mode=compat
	$(BIN)/python bench/pdq_index.py --sizes 100000,1000000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
