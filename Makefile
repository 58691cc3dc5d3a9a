# Two commands on a fresh machine: `make run` (Doorman + a demo customer API) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test faults install services browser oidc-provider screenshots clean

$(BIN)/doorman: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# RabbitMQ, PostgreSQL and python3-venv first (installed from Debian's packages on a bare machine):
# the virtualenv needs python3-venv.
install: services $(BIN)/doorman

# Install RabbitMQ and PostgreSQL when missing, start them when down.
services:
	@./scripts/ensure-services

# Debian's Chromium for the browser tests (installed with apt-get when missing).
browser: $(BIN)/doorman
	@./scripts/ensure-browser $(BIN)/python

# The tests' OpenID Provider (panva's oidc-provider, on Node.js), from its lock file.
oidc-provider: tests/oidc_provider/node_modules/.package-lock.json

tests/oidc_provider/node_modules/.package-lock.json: tests/oidc_provider/package-lock.json
	cd tests/oidc_provider && npm ci --no-audit --no-fund --loglevel=error

run: install
	$(BIN)/doorman up

test: install browser oidc-provider
	$(BIN)/pytest -q

# The long fault-injection run (the short one is part of `make test`); prints the table.
faults: install
	DOORMAN_FAULTS_FULL=1 $(BIN)/pytest -q tests/faults

# Re-take the README's screenshots (docs/screenshots/) from the browser tests.
screenshots: install browser
	DOORMAN_SCREENSHOTS=1 $(BIN)/pytest -q tests/browser

clean:
	rm -rf $(VENV) .pytest_cache

# The benchmark: one table, bench/results/latest.json (about 6 minutes; `.venv/bin/python -m bench --quick` for about 1).
.PHONY: bench
bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench

# The soak: 30 minutes at 60 % of the measured saturation with logouts, erasures, webhooks and a rolling
# restart of every service; one table, bench/results/soak.json (not part of `make test`).
.PHONY: soak
soak: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.soak
