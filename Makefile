# Mercurio — `make run` starts the whole system locally, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
STAGE  ?= dev

.PHONY: help install run test test-unit test-integration test-e2e test-explore system-deps sdk-deps bench deploy deploy-single-stack upload-definitions upload-templates package clean

help:
	@echo "make run      the whole system on the embedded AWS emulator (http://127.0.0.1:$(PORT))"
	@echo "make test     every test: unit, integration, end-to-end (installs what it needs)"
	@echo "make test-explore  the property-based tests with random and 10x more examples"
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

# What the tests need beyond Python, as `command:Debian package`: Chromium for the browser
# tests (a test tool's own browser download is not reachable from every machine),
# shellcheck for the deploy script, Node.js 18+ and npm for the snippet's JavaScript unit
# tests and Segment's JavaScript SDKs. Installed with apt-get when missing (sudo unless
# root); without apt-get, the missing ones are named and make stops.
SYSTEM_TOOLS := chromium:chromium shellcheck:shellcheck node:nodejs npm:npm
NODE_MAJOR_MIN := 18
system-deps:
	@missing=; for entry in $(SYSTEM_TOOLS); do \
	  command -v $${entry%%:*} >/dev/null 2>&1 || missing="$$missing $${entry#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "the tests need these packages (Debian names):$$missing; install them and run make again" >&2; exit 1; \
	  fi; \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi; \
	if command -v node >/dev/null 2>&1 && ! node -e 'process.exit(+process.versions.node.split(".")[0] >= $(NODE_MAJOR_MIN) ? 0 : 1)'; then \
	  echo "the tests need Node.js $(NODE_MAJOR_MIN) or later; this machine has $$(node --version)" >&2; exit 1; \
	fi

# Segment's own JavaScript SDKs, used unchanged by the compatibility tests.
sdk-deps: system-deps
	@if [ -f tests/sdk/package.json ]; then \
	  (cd tests/sdk && npm ci --silent --no-audit --no-fund >/dev/null) ; fi

test: install system-deps sdk-deps
	$(BIN)/python -m pytest

test-unit: install system-deps
	$(BIN)/python -m pytest tests/unit

test-integration: install system-deps
	$(BIN)/python -m pytest tests/integration

test-e2e: install system-deps sdk-deps
	$(BIN)/python -m pytest tests/e2e

# The property-based tests (Hypothesis) run derandomised in `make test`: the same examples
# on every run and machine. This searches further: random examples, EXPLORE_FACTOR (10)
# times as many, and a failure found is kept in .hypothesis/ and replayed first next time.
test-explore: install system-deps sdk-deps
	HYPOTHESIS_PROFILE=explore $(BIN)/python -m pytest $$(grep -rl --include='*.py' '@given' tests)

bench: install
	$(BIN)/python -m bench.run

deploy: install
	STAGE=$(STAGE) ./infrastructure/deploy.sh

deploy-single-stack: install
	STAGE=$(STAGE) ARTIFACT_BUCKET=$(ARTIFACT_BUCKET) ./infrastructure/deploy.sh single-stack

# Upload definition files (segments, campaigns, scoring…) to the stage's data bucket; the
# scheduled segment job applies them within MERCURIO_RECHECK_MINUTES.
DEFINITIONS ?= chalicelib/definitions
upload-definitions:
	bucket=$$(aws cloudformation describe-stacks --stack-name mercurio-$(STAGE)-data \
	  --query "Stacks[0].Outputs[?OutputKey=='DataBucketName'].OutputValue" --output text) && \
	aws s3 sync $(DEFINITIONS) s3://$$bucket/definitions/ --exclude "*" --include "*.yaml" --include "*.yml" --include "*.json"

# Upload templates/ (email, SMS, push, on-site slots) to s3://$DATA_BUCKET/templates/, each
# validated first: a file that fails is reported with its line and not uploaded. Without
# DATA_BUCKET, the stage's data bucket is read from its stack.
TEMPLATES ?= templates
upload-templates: install
	bucket="$(DATA_BUCKET)"; if [ -z "$$bucket" ]; then \
	  bucket=$$(aws cloudformation describe-stacks --stack-name mercurio-$(STAGE)-data \
	    --query "Stacks[0].Outputs[?OutputKey=='DataBucketName'].OutputValue" --output text) || exit 1; fi; \
	$(BIN)/python -m local.upload_templates --bucket "$$bucket" --from $(TEMPLATES)

package: install
	rm -rf out/$(STAGE) && AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --stage $(STAGE) --merge-template infrastructure/single-stack.yaml out/$(STAGE)

clean:
	rm -rf $(VENV) .pytest_cache out
