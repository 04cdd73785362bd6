# amqp-jobkit: `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
BIN         := $(VENV)/bin
# STORAGE=azure keeps inputs and outputs in Azurite, the Azure Storage emulator, as the AKS blog
# keeps them in Azure Blob Storage; the key is Azurite's published development key.
STORAGE     ?= local
AZURITE_CONNECTION_STRING := DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;
ifeq ($(STORAGE),azure)
export AZURE_STORAGE_CONNECTION_STRING ?= $(AZURITE_CONNECTION_STRING)
export INPUT_URL  ?= az://temperaturefiles
export OUTPUT_URL ?= az://temperaturefiles
STORAGE_SERVICE := azurite
endif
RUNNER      ?= local
# The kind node mounts this directory at /data (manifests/kind-cluster.yaml); the Job mounts that.
KIND_DATA   := /tmp/jobkit-data
KIND_CLUSTER ?= jobkit
KUBE_PORT   ?= 30672
# RabbitMQ nodes in the cluster: 3 in production, a cluster that survives losing one.
BROKER_REPLICAS ?= 1
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE       ?= jobkit-worker:$(VERSION)
# The variant sits beside the worker image: registry/name:tag gives registry/name-amqp-consume:tag.
CONSUME_IMAGE ?= $(shell echo '$(IMAGE)' | sed 's|:\([^:/]*\)$$|-amqp-consume:\1|')
ifeq ($(RUNNER),kube)
# With RUNNER=kube this machine reaches the cluster's RabbitMQ through 'kubectl port-forward',
# as the user of the Secret 'make deploy-broker' applied (read when a command runs).
export BROKER_URL ?= $(shell kubectl get secret jobkit -o jsonpath='{.data.BROKER_URL}' 2>/dev/null \
  | base64 -d | sed 's|@rabbitmq:5672/|@127.0.0.1:$(KUBE_PORT)/|')
export INPUT_URL  ?= $(KIND_DATA)/input
export OUTPUT_URL ?= $(KIND_DATA)/output
endif
# Without BROKER_URL: the kit's own user once 'make broker' has made one (read when each
# command runs, so the commands after 'make broker' use it), else the local guest.
BROKER_ENV  ?= $(HOME)/.config/jobkit/broker.env
GUEST_URL   := amqp://guest:guest@localhost:5672/%2F
# Each test and benchmark declares a queue of its own, which the kit's user may not: they keep
# BROKER_URL when it is given, else use guest.
ifeq ($(origin BROKER_URL),undefined)
TEST_BROKER_URL ?= $(GUEST_URL)
else
TEST_BROKER_URL ?= $(BROKER_URL)
endif
export BROKER_ENV
export BROKER_URL ?= $(or $(shell sed -n 's/^BROKER_URL=//p' $(BROKER_ENV) 2>/dev/null),$(GUEST_URL))
export QUEUE      ?= temperature_job
export INPUT_URL  ?= data/input
export OUTPUT_URL ?= data/output
PARALLELISM ?= 3
FILES       ?= 6
ROWS        ?= 525600
RUN_FLAGS   ?=

.PHONY: help setup setup-dev broker azurite amqp-tools chromium gnu-parallel data publish run status purge demo test test-rabbitmq4 lint \
        clean bench chaos check manifests image push kind-up kind-load deploy-broker

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# The operator's targets install the kit alone (with the report's matplotlib); the tests, the
# linters and the benchmark add the development tools.
$(BIN)/jobkit: pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
	  || (apt-get update -q && apt-get install -y -q python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[report]' > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

$(BIN)/pytest: $(BIN)/jobkit
	$(BIN)/pip install -e '.[dev]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

$(BIN)/celery: $(BIN)/pytest
	$(BIN)/pip install -e '.[dev,bench]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

setup: $(BIN)/jobkit ## create the virtualenv and install the kit (the runtime alone)

setup-dev: $(BIN)/pytest ## add the tests' and linters' tools to the virtualenv

broker: ## make sure RabbitMQ answers (starts a local node if none does) and give the kit its own user
	@scripts/ensure-broker
	@JOBKIT_PYTHON=$(BIN)/python scripts/ensure-broker-user

amqp-tools: ## install Debian's amqp-tools (amqp-consume) if absent; the tests of that path need it
	@command -v amqp-consume >/dev/null || { echo "Installing Debian's amqp-tools ..."; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q amqp-tools >/dev/null; }

chromium: ## install Debian's chromium if absent; the batch report's browser test needs it
	@command -v chromium >/dev/null || { echo "Installing Debian's chromium (a few minutes) ..."; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }


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

run: setup ## run the job with PARALLELISM workers, then report (RUN_FLAGS=--drain; RUNNER=kube: as a Job)
ifeq ($(RUNNER),kube)
	@# kind's node mounts this machine's directory at /data; a host path fails Pod Security
	@# baseline, which is why the claim, not this, is the default anywhere else.
	$(BIN)/jobkit run --kube --parallelism $(PARALLELISM) --image $(IMAGE) --data-host-path /data
else
	$(BIN)/jobkit run --parallelism $(PARALLELISM) $(RUN_FLAGS)
endif

status: setup ## show queue depth, dead letters with reasons, and outputs written
	$(BIN)/jobkit status

purge: setup ## delete every message waiting in the queue
	$(BIN)/jobkit purge --yes

check: setup ## check every output against its input's aggregation, and that the queues are empty
	$(BIN)/python scripts/check-outputs

demo: override RUN_FLAGS += --report
demo: setup broker $(STORAGE_SERVICE) data publish run ## the whole job end to end on six sample files, then the batch report (STORAGE=azure: through Azurite)
ifeq ($(STORAGE),azure)
	$(BIN)/jobkit status
else
	@echo "First hours of $(OUTPUT_URL)/temperature1_aggregated.csv:"
	@head -4 $(OUTPUT_URL)/temperature1_aggregated.csv
endif
	@echo "The batch report: $(CURDIR)/.jobkit/report.html (open it in a browser)"

# The RabbitMQ 4 pass runs beside the main one (the suite mostly waits on brokers and processes);
# its output follows the main pass's.
test: setup-dev broker azurite amqp-tools chromium ## run the whole test suite, its broker tests again on RabbitMQ 4, then the linters
	@mkdir -p .jobkit && root=$$(scripts/rabbitmq4-root) && \
	{ JOBKIT_RABBITMQ_ROOT=$$root $(MAKE) --no-print-directory test-rabbitmq4 \
	    > .jobkit/test-rabbitmq4.log 2>&1 & } && \
	BROKER_URL='$(TEST_BROKER_URL)' $(BIN)/pytest -q; main=$$?; \
	wait $$!; four=$$?; echo "RabbitMQ 4 pass:"; cat .jobkit/test-rabbitmq4.log; \
	[ $$main -eq 0 ] && [ $$four -eq 0 ]
	@$(MAKE) --no-print-directory lint

test-rabbitmq4: setup-dev azurite amqp-tools ## the tests that talk to a broker, against private RabbitMQ 4.0 nodes (a Debian 13 root, built once)
	root=$${JOBKIT_RABBITMQ_ROOT:-$$(scripts/rabbitmq4-root)} && JOBKIT_RABBITMQ_ROOT=$$root \
	  $(BIN)/python tests/private_broker.py $(BIN)/pytest -q -p no:cacheprovider \
	  -m '(rabbitmq and not slow) or rabbitmq4'

chaos: setup-dev ## bounded fault sessions on private brokers: worker kills and broker restarts, then a cluster losing its queue's leader
	$(BIN)/python tests/chaos.py --items 40 --kills 15 --restarts 2
	CLUSTER_ITEMS=200 $(BIN)/pytest -q -s tests/test_cluster.py

gnu-parallel: ## install Debian's GNU parallel if absent; the benchmark runs programs with it side by side
	@command -v parallel >/dev/null || { echo "Installing Debian's parallel ..."; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q parallel >/dev/null; }

bench: $(BIN)/celery broker gnu-parallel ## measure speed against the AKS blog's pandas worker, a warm Celery worker, GNU parallel and xargs, side by side (about ten minutes)
	BROKER_URL='$(TEST_BROKER_URL)' $(BIN)/python -m bench

lint: setup-dev ## ruff, mypy, and actionlint (with Debian's shellcheck) on the workflows
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy reads the folders under their import names through these links (an sdist has none).
	@mkdir -p .typecheck && ln -sfn ../worker .typecheck/jobkit_worker \
	  && ln -sfn ../publisher .typecheck/jobkit_publisher
	$(BIN)/mypy
	@command -v shellcheck >/dev/null || { echo "Installing Debian's shellcheck ..."; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck >/dev/null; }
	$(BIN)/actionlint .github/workflows/*.yml

manifests: setup ## render the example manifests in manifests/ (a test keeps them equal to this)
	QUEUE=temperature_job LOG_LEVEL=INFO $(BIN)/jobkit manifests --example --completions 6 --out manifests
	QUEUE=temperature_job LOG_LEVEL=INFO $(BIN)/jobkit manifests --example --keda --out manifests

image: ## build the worker image and its amqp-consume variant (IMAGE=registry/name:tag; needs docker)
	docker build -f images/worker.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE) .
	docker build -f images/amqp-consume.Dockerfile --build-arg WORKER_IMAGE=$(IMAGE) \
	  --build-arg VERSION=$(VERSION) -t $(CONSUME_IMAGE) .

push: ## push the images 'make image' built to their registry (docker login first)
	docker push $(IMAGE)
	docker push $(CONSUME_IMAGE)

kind-up: ## create the kind cluster of manifests/kind-cluster.yaml (needs docker and kind)
	mkdir -p $(KIND_DATA)/input $(KIND_DATA)/output && chmod -R a+rwX $(KIND_DATA)
	kind create cluster --config manifests/kind-cluster.yaml --name $(KIND_CLUSTER) --wait 120s

kind-load: ## load the worker images into the kind cluster
	kind load docker-image $(IMAGE) $(CONSUME_IMAGE) --name $(KIND_CLUSTER)

deploy-broker: setup ## deploy RabbitMQ and the Secret with kubectl, then forward its port to KUBE_PORT here
	$(BIN)/jobkit manifests --completions 0 --broker-replicas $(BROKER_REPLICAS) --out .jobkit/k8s
	@# RabbitMQ keeps the password it first started with: an existing Secret stays as it is.
	kubectl get secret jobkit >/dev/null 2>&1 || kubectl apply -f .jobkit/k8s/secret.yaml
	kubectl apply -f .jobkit/k8s/rabbitmq.yaml
	kubectl rollout status statefulset/rabbitmq --timeout=300s
	scripts/forward-broker $(KUBE_PORT)

clean: ## remove the virtualenv, sample data, outputs and logs
	rm -rf $(VENV) data .jobkit .azurite .pytest_cache .mypy_cache .ruff_cache bench/results.json
