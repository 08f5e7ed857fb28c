# Two commands on a fresh machine: `make up` (the local stack with a demo fleet)
# and `make test` (every check CI runs). Both install what they need first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev up test clean chromium

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("fleetops needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,gce,terraform]'
	@touch $(STAMP)

dev: $(STAMP)  ## the project's environment in .venv

up: $(STAMP)  ## the local stack with 3 demo instances; Ctrl-C stops it
	$(BIN)/fleetops up --instances $(or $(INSTANCES),3)

chromium:  ## Debian's Chromium for the dashboard's browser test (never a downloaded browser)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null; \
	  else echo "*** /usr/bin/chromium is missing: install Debian's chromium package for the browser test ***"; fi; \
	fi

test: $(STAMP) chromium  ## lint, types, unit, integration, end-to-end and Terraform checks
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/nox

clean:
	rm -rf $(VENV) .nox .fleetops build .pytest_cache .mypy_cache .ruff_cache
