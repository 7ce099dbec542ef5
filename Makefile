# Two commands do all the set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export XDG_RUNTIME_DIR ?= /tmp/runtime-$(shell id -u)

.PHONY: install run test lint format bench clean chromium

$(STAMP): requirements.txt package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# The chart library of the staff screens, from the npm registry (served as a static file, never a CDN).
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py run_stack

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install lint chromium
	$(BIN)/python -m pytest

# The browser tests' Chromium: Debian's package, never a browser downloaded by Playwright.
chromium:
	command -v chromium || (apt-get update && apt-get install -y chromium)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf var/test
