# amqp-jobkit: `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
BIN         := $(VENV)/bin
# STORAGE=azure keeps inputs and outputs in Azurite, the Azure Storage emulator, as seed 000
# keeps them in Azure Blob Storage; the key is Azurite's published development key.
STORAGE     ?= local
AZURITE_CONNECTION_STRING := DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;
ifeq ($(STORAGE),azure)
export AZURE_STORAGE_CONNECTION_STRING ?= $(AZURITE_CONNECTION_STRING)
export INPUT_URL  ?= az://temperaturefiles
export OUTPUT_URL ?= az://temperaturefiles
STORAGE_SERVICE := azurite
endif
export BROKER_URL ?= amqp://guest:guest@localhost:5672/%2F
export QUEUE      ?= temperature_job
export INPUT_URL  ?= data/input
export OUTPUT_URL ?= data/output
PARALLELISM ?= 3
FILES       ?= 6
ROWS        ?= 525600

.PHONY: help setup broker azurite data publish run status purge demo test lint clean

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

azurite: ## make sure Azurite's blob service answers at 127.0.0.1:10000 (installs and starts it)
	@scripts/ensure-azurite

data: setup $(STORAGE_SERVICE) ## write the sample inputs (FILES files of ROWS one-minute readings) to INPUT_URL
ifeq ($(STORAGE),azure)
	$(BIN)/jobkit data --files $(FILES) --rows $(ROWS) --out data/samples
	$(BIN)/jobkit upload data/samples $(INPUT_URL)
else
	$(BIN)/jobkit data --files $(FILES) --rows $(ROWS)
endif

publish: setup ## publish every *.csv under INPUT_URL to the queue
	$(BIN)/jobkit publish

run: setup ## run the job locally with PARALLELISM workers, then report
	$(BIN)/jobkit run --parallelism $(PARALLELISM)

status: setup ## show queue depth, dead letters with reasons, and outputs written
	$(BIN)/jobkit status

purge: setup ## delete every message waiting in the queue
	$(BIN)/jobkit purge --yes

demo: setup broker $(STORAGE_SERVICE) data publish run ## the whole job end to end on six sample files (STORAGE=azure: through Azurite)
ifeq ($(STORAGE),azure)
	$(BIN)/jobkit status
else
	@echo "First hours of $(OUTPUT_URL)/temperature1_aggregated.csv:"
	@head -4 $(OUTPUT_URL)/temperature1_aggregated.csv
endif

test: setup broker azurite ## run the whole test suite, then the linters
	$(BIN)/pytest -q
	@$(MAKE) --no-print-directory lint

lint: setup ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean: ## remove the virtualenv, sample data, outputs and logs
	rm -rf $(VENV) data .jobkit .azurite .pytest_cache .mypy_cache .ruff_cache
