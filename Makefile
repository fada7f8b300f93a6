# ordermesh — the one entry point. `make run` and `make test` work on a new
# machine with nothing but the repo: each target installs only what it needs.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(CURDIR)/$(VENV)/bin:$(PATH)

# Debian packages per purpose: a newcomer's `make run` needs only redis-server.
RUN_DEBS := redis-server
# Building and running the image: podman with runc, and debootstrap for its base.
IMAGE_DEBS := podman buildah debootstrap runc
TEST_DEBS := redis-server mariadb-server prometheus $(IMAGE_DEBS)
PYTEST_ARGS ?=


.PHONY: image debs-image
.PHONY: help setup venv debs-run debs-test tools-test rocketmq-jars rocketmq run test test-unit test-integration test-e2e lint protos clean audit bench bench-stock bench-pipeline bench-forwarder

help:
	@echo "make run      start the whole mesh locally (installs what it needs first)"
	@echo "              PROFILE=full: with MariaDB and a RocketMQ 5 broker (EVENT_TRANSPORT=rocketmq)"
	@echo "make test     lint + unit, integration and e2e tests against real Redis, SQLite and MariaDB"
	@echo "make test-unit         unit tests only: in-process, no servers, seconds (needs only the venv)"
	@echo "make test-integration  integration tests against real Redis, SQLite, MariaDB, RocketMQ"
	@echo "make test-e2e          e2e tests: the whole local mesh on both profiles"
	@echo "make lint     ruff + mypy --strict (generated code excluded)"
	@echo "make protos   regenerate ordermesh/ stubs from protos/"
	@echo "make image    the one container image (every context) with podman: localhost/ordermesh:dev"
	@echo "make audit    the global auditor on the local mesh: stock, orders, reservations, money, shipments (ACKED=file)"
	@echo "make bench    all benchmarks (bench-stock: Redis vs SQL path; bench-pipeline: inserts, PlaceOrder, lag;"
	@echo "             bench-forwarder: Redis -> RocketMQ relay, RocketMQ -> SQL rows, broker memory)"
	@echo "make setup    install everything: Debian packages, .venv, Go-built tools, RocketMQ jars"

# The venv is rebuilt only when the dependency pins change; pip reuses its cache.
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

debs-run:
	@scripts/setup/debs.sh $(RUN_DEBS)

debs-test:
	@scripts/setup/debs.sh $(TEST_DEBS)

debs-image:
	@scripts/setup/debs.sh $(IMAGE_DEBS)

# The base (debootstrap) is made once per machine and kept under .tools/podman;
# the dependency layer is rebuilt only when requirements.lock changes.
image: venv debs-image
	@scripts/image/build.sh

tools-test:
	@scripts/setup/go-tools.sh grpcurl helm

rocketmq-jars:
	@scripts/setup/rocketmq.sh

setup: venv debs-test rocketmq-jars
	@scripts/setup/go-tools.sh

# PROFILE=full: MariaDB and a RocketMQ 5 broker instead of SQLite and Redis Streams.
PROFILE ?= embedded
ifeq ($(PROFILE),full)
RUN_NEEDS := debs-test rocketmq-jars
else
RUN_NEEDS := debs-run
endif

run: venv $(RUN_NEEDS)
	$(PY) -m launcher --profile $(PROFILE)

test: venv debs-test tools-test rocketmq-jars lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit suite starts no process (tests/unit/conftest.py fails it if one does),
# so it needs nothing but the venv.
test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv debs-test tools-test rocketmq-jars
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: venv debs-test tools-test rocketmq-jars
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

# A real RocketMQ 5 broker (name server + proxy, broker in-process) on loopback,
# with the mesh's topics and consumer groups; Ctrl-C stops it.
rocketmq: venv rocketmq-jars
	$(PY) -m launcher rocketmq --workdir var/rocketmq

# The global auditor on the mesh `make run` started (var/<profile>/audit.env says
# where its databases are); ACKED=file: order ids a load run was answered, each must be stored.
audit: venv
	@set -a; if [ -f var/$(PROFILE)/audit.env ]; then . var/$(PROFILE)/audit.env; fi; set +a; \
	$(PY) -m auditor $(if $(ACKED),--acknowledged $(ACKED))

bench: bench-stock bench-pipeline bench-forwarder

bench-stock: venv debs-test
	@scripts/setup/go-tools.sh ghz
	$(PY) scripts/bench_stock.py

bench-pipeline: venv debs-test
	@scripts/setup/go-tools.sh ghz
	$(PY) scripts/bench_pipeline.py

bench-forwarder: venv debs-test rocketmq-jars
	$(PY) scripts/bench_forwarder.py

protos: venv
	$(PY) scripts/gen_protos.py

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
