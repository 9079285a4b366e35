# Two entry points for a fresh clone: `make serve` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint format serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# HOST/PORT override the listener (default 127.0.0.1:8000); CELLCOUNT_* configure the service.
serve: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" ./docker/entrypoint.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
