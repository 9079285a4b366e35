# Two entry points for a fresh clone: `make serve` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The browser tests/service/api/test_page_browser.py drives; without it, Playwright's own.
CHROMIUM ?= /usr/bin/chromium

.PHONY: test browser lint format serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP) browser
	$(BIN)/ruff check .
	CELLCOUNT_CHROMIUM="$(CHROMIUM)" $(BIN)/python -m pytest

# Debian's chromium as root with apt-get, else Playwright's browser; else says what to run.
browser: $(STAMP)
	@sh tests/ensure_browser.sh "$(CHROMIUM)" "$(BIN)/python"

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
