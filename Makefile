# Mercurio — `make run` starts the whole system locally, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
STAGE  ?= dev

.PHONY: help install run test test-unit test-integration test-e2e browser sdk-deps bench deploy package clean

help:
	@echo "make run      the whole system on the embedded AWS emulator (http://127.0.0.1:$(PORT))"
	@echo "make test     every test: unit, integration, end-to-end (installs what it needs)"
	@echo "make bench    throughput and DynamoDB request units (results: docs/PERFORMANCE.md)"
	@echo "make deploy   STAGE=prod: the data stack, then the Chalice app (docs/DEPLOY.md)"

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m local.run --port $(PORT)

# The browser tests drive Debian's Chromium (a test tool's own browser download is not
# reachable from every machine).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Segment's own JavaScript SDKs, used unchanged by the compatibility tests.
sdk-deps:
	@if [ -f tests/sdk/package.json ]; then \
	  (cd tests/sdk && npm ci --silent --no-audit --no-fund >/dev/null) ; fi

test: install browser sdk-deps
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

test-e2e: install browser sdk-deps
	$(BIN)/python -m pytest tests/e2e

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache out
