# Two commands on a fresh machine: `make run` (Doorman + a demo customer API) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test install services clean

$(BIN)/doorman: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/doorman

# Start the local RabbitMQ and PostgreSQL if they are installed but down.
services:
	@./scripts/ensure-services

run: install services
	$(BIN)/doorman up

test: install services
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
