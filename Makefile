# amqp-jobkit: `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
BIN         := $(VENV)/bin
export BROKER_URL ?= amqp://guest:guest@localhost:5672/%2F
export QUEUE      ?= temperature_job
export INPUT_URL  ?= data/input
export OUTPUT_URL ?= data/output
PARALLELISM ?= 3
FILES       ?= 6
ROWS        ?= 525600
RUN_FLAGS   ?=

.PHONY: help setup broker data publish run status purge demo test bench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/jobkit: pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
	  || (apt-get update -q && apt-get install -y -q python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	$(BIN)/pip install -e '.[dev]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

setup: $(BIN)/jobkit ## create the virtualenv and install the kit with its dev tools

broker: ## make sure RabbitMQ answers at BROKER_URL (starts a local node if none does)
	@scripts/ensure-broker

data: setup ## write the sample inputs (FILES files of ROWS one-minute readings) to INPUT_URL
	$(BIN)/jobkit data --files $(FILES) --rows $(ROWS)

publish: setup ## publish every *.csv under INPUT_URL to the queue
	$(BIN)/jobkit publish

run: setup ## run the job locally with PARALLELISM workers (RUN_FLAGS=--drain: each drains the queue)
	$(BIN)/jobkit run --parallelism $(PARALLELISM) $(RUN_FLAGS)

status: setup ## show queue depth, dead letters with reasons, and outputs written
	$(BIN)/jobkit status

purge: setup ## delete every message waiting in the queue
	$(BIN)/jobkit purge --yes

demo: setup broker data publish run ## the whole job end to end on six sample files
	@echo "First hours of $(OUTPUT_URL)/temperature1_aggregated.csv:"
	@head -4 $(OUTPUT_URL)/temperature1_aggregated.csv

test: setup broker ## run the whole test suite, then the linters
	$(BIN)/pytest -q
	@$(MAKE) --no-print-directory lint

bench: setup broker ## measure speed against the seed's code side by side (a few minutes)
	$(BIN)/python -m bench

lint: setup ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean: ## remove the virtualenv, sample data, outputs and logs
	rm -rf $(VENV) data .jobkit .pytest_cache .mypy_cache .ruff_cache bench/results.json
