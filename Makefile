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
# A real Kubernetes node (make cluster, make k8s-e2e): the runtime and the pod network.
NODE_DEBS := containerd conntrack containernetworking-plugins
# The console's browser tests drive Debian's Chromium (Playwright never downloads a browser).
TEST_DEBS := redis-server mariadb-server prometheus chromium $(IMAGE_DEBS) $(NODE_DEBS)
PYTEST_ARGS ?=


.PHONY: tools-jaeger debs-monitoring trace bench-tracing load tools-k6 profile fuzz chaos soak
.PHONY: image debs-image debs-node k8s k8s-e2e tools-helm cluster cluster-down cluster-bins cluster-images
.PHONY: help setup venv debs-run debs-test tools-test rocketmq-jars rocketmq run test test-unit test-integration test-e2e lint protos clean audit bench bench-stock bench-pipeline bench-forwarder

help:
	@echo "make run      start the whole mesh locally (installs what it needs first)"
	@echo "              PROFILE=full: with MariaDB and a RocketMQ 5 broker (EVENT_TRANSPORT=rocketmq)"
	@echo "              TLS=1: mutual TLS between the processes (a local CA under var/<profile>/tls)"
	@echo "              TRACING=1: a local Jaeger (OTLP 4317, query API 16686); MONITORING=1: Prometheus on 9090"
	@echo "make trace ORDER=id   an order's trace from the local Jaeger, as a tree"
	@echo "make test     lint + unit, integration and e2e tests against real Redis, SQLite and MariaDB"
	@echo "make test-unit         unit tests only: in-process, no servers, seconds (needs only the venv)"
	@echo "make test-integration  integration tests against real Redis, SQLite, MariaDB, RocketMQ"
	@echo "make test-e2e          e2e tests: the whole local mesh on both profiles"
	@echo "make lint     ruff + mypy --strict (generated code excluded)"
	@echo "make protos   regenerate ordermesh/ stubs from protos/"
	@echo "make cluster  a local single-node Kubernetes cluster, the images loaded (var/cluster/kubeconfig); make cluster-down"
	@echo "make k8s-e2e  the whole mesh in real pods on that cluster: grpcurl, a pod deleted and a rollout under load, the auditor"
	@echo "make k8s      regenerate k8s/ordermesh.yaml from the Helm chart (kubectl apply -k k8s/)"
	@echo "make image    the container images with podman: localhost/ordermesh:dev (every context) and"
	@echo "              localhost/ordermesh-deps:bookworm-1 (dev Redis and MariaDB for the chart's devDependencies)"
	@echo "make audit    the global auditor on the local mesh: stock, orders, reservations, money, shipments (ACKED=file)"
	@echo "make load     a k6 scenario against the mesh (SCENARIO=smoke|load|spike|hot-product|browse; RATE=, DURATION=, ...)"
	@echo "              starts the local mesh if none answers; HTML report under var/reports/"
	@echo "make bench    every benchmark below, then docs/performance.md from their reports:"
	@echo "              bench-stock: Redis vs SQL path; bench-pipeline: CPU per order by process and the"
	@echo "              sustainable rate on both profiles; bench-forwarder: Redis -> RocketMQ relay, RocketMQ ->"
	@echo "              SQL rows, broker CPU and memory; bench-tracing: what tracing costs ReserveStock"
	@echo "              (after one bench-<x> alone: .venv/bin/python scripts/benchreport.py rewrites the document)"
	@echo "make chaos    each chaos scenario under load on its own mesh, then the global auditor; the table"
	@echo "make soak     k6's load at 110 orders/s (70% of capacity) for MINUTES=10, a random fault a minute:"
	@echo "              memory of every process, stream lag, the global auditor; docs/soak.md (RATE=, SOAK_SEED=)"
	@echo "make fuzz     20,000 generated requests per service (valid, spoiled, random) against the local mesh,"
	@echo "              none may be UNKNOWN/INTERNAL; then the global auditor (FUZZ_REQUESTS=...)"
	@echo "make profile  py-spy on every service of the local mesh under a paced order load: CPU per order by"
	@echo "              process and where it goes (PROFILE_RATE=100, PROFILE_SECONDS=20, PROFILE_SERVICES=...)"
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

debs-node:
	@scripts/setup/debs.sh $(IMAGE_DEBS) $(NODE_DEBS)

# A local cluster: etcd, kube-apiserver, controller-manager, scheduler and a
# real node (containerd, kubelet, kube-proxy, CoreDNS), or a kwok node where the
# machine cannot run a kubelet; built from the Go module proxy into
# .tools/cluster (minutes once per machine, seconds after: the Go build cache
# keeps the work). `up` loads the mesh's images into the node.
cluster-bins:
	@scripts/cluster/build.sh

cluster-images: cluster-bins debs-node
	@scripts/cluster/images.sh

cluster: venv cluster-bins cluster-images image tools-helm
	@$(PY) -m mesh.local.cluster up

# The whole mesh in real pods (also part of make test where a kubelet can run).
k8s-e2e: venv debs-test tools-test cluster-bins
	$(PY) -m pytest tests/e2e/test_kubernetes.py $(PYTEST_ARGS)

cluster-down: venv
	@$(PY) -m mesh.local.cluster down

# k8s/ordermesh.yaml: the chart's default rendering, for `kubectl apply -k k8s/`.
k8s: tools-helm
	@.tools/bin/helm template ordermesh helm/ordermesh --namespace ordermesh --kube-version 1.35.0 \
	  | sed '1i # Generated by `make k8s` from helm/ordermesh (release "ordermesh"); do not edit.' > k8s/ordermesh.yaml
	@echo "k8s/ordermesh.yaml regenerated"

tools-helm:
	@scripts/setup/go-tools.sh helm

# The base (debootstrap) is made once per machine and kept under .tools/podman;
# the dependency layer is rebuilt only when requirements.lock changes. The dev
# Redis and MariaDB image (debootstrap too) is made once per machine.
image: venv debs-image
	@scripts/image/build.sh
	@scripts/image/deps.sh

tools-test:
	@scripts/setup/go-tools.sh grpcurl helm jaeger k6

tools-k6:
	@scripts/setup/go-tools.sh k6

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

# TRACING=1: a local Jaeger (built once into .tools/bin); MONITORING=1: a local
# Prometheus (Debian's) with monitoring/prometheus.yml and its alert rules.
ifeq ($(TRACING),1)
RUN_NEEDS += tools-jaeger
endif
ifeq ($(MONITORING),1)
RUN_NEEDS += debs-monitoring
endif

run: venv $(RUN_NEEDS)
	$(PY) -m launcher --profile $(PROFILE) $(if $(filter 1,$(TLS)),--tls) \
	  $(if $(filter 1,$(TRACING)),--tracing) $(if $(filter 1,$(MONITORING)),--monitoring)

tools-jaeger:
	@scripts/setup/go-tools.sh jaeger

debs-monitoring:
	@scripts/setup/debs.sh prometheus

# An order's trace from the local Jaeger as a tree (make run TRACING=1 first).
trace: venv
	@test -n "$(ORDER)" || { echo "usage: make trace ORDER=order-id"; exit 2; }
	@$(PY) -m order trace $(ORDER)

test: venv debs-test tools-test rocketmq-jars cluster-bins lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit suite starts no process (tests/unit/conftest.py fails it if one does),
# so it needs nothing but the venv.
test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv debs-test tools-test rocketmq-jars cluster-bins
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: venv debs-test tools-test rocketmq-jars
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# Every method of every service fed 20,000 generated requests each, new ones every run
# (make test sends the same 2,000 each time); then the global auditor.
fuzz: venv debs-test tools-test
	FUZZ_REQUESTS=$${FUZZ_REQUESTS:-20000} FUZZ_RANDOM=1 $(PY) -m pytest tests/e2e/test_fuzz.py $(PYTEST_ARGS)

# Chaos scenarios (chaos/scenarios.py), each on a mesh of its own under a steady load,
# then the global auditor; prints the table (SCENARIOS=..., CHAOS_SECONDS=30).
chaos: venv debs-run
	$(PY) -m chaos $(SCENARIOS) --seconds $${CHAOS_SECONDS:-30}

# A soak (chaos/soak.py): k6's load scenario for MINUTES (10) at RATE (110/s) on a mesh of its
# own, a random fault a minute (SOAK_SEED replays a run); memory growth, lag, the global auditor.
soak: venv debs-run tools-k6
	$(PY) -m chaos.soak --minutes $${MINUTES:-10} $(if $(RATE),--rate $(RATE))

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

# A k6 scenario (loadtest/<SCENARIO>.js) against the mesh at CHECKOUT/CATALOG/ORDER
# (the local ports by default; the embedded mesh is started if none answers, and
# stopped after). RATE, DURATION, VUS ... reach the script from the environment
# (make exports command-line variables); ACKED=file: the order ids answered, for
# `make audit ACKED=file`. The exit status is k6's: non-zero when a threshold failed.
SCENARIO ?= smoke
load: venv debs-run tools-k6
	$(PY) -m loadtest $(SCENARIO) $(if $(ACKED),--order-ids $(ACKED))

# Each benchmark prints its report and keeps it under var/reports/bench/;
# scripts/benchreport.py gathers them into docs/performance.md.
bench: bench-stock bench-pipeline bench-forwarder bench-tracing
	$(PY) scripts/benchreport.py

bench-stock: venv debs-test
	@scripts/setup/go-tools.sh ghz
	$(PY) scripts/bench_stock.py

# CPU per order by process and the sustainable rate, embedded and full profile (~3 min on 2 cores).
bench-pipeline: venv debs-test rocketmq-jars
	@scripts/setup/go-tools.sh ghz
	$(PY) scripts/bench_pipeline.py

bench-forwarder: venv debs-test rocketmq-jars
	$(PY) scripts/bench_forwarder.py

# Where each process spends its CPU under a paced order load (py-spy; PROFILE_RATE, PROFILE_SECONDS).
profile: venv debs-run
	$(PY) scripts/profile_mesh.py

# What tracing costs ReserveStock: CPU per call, storage spans off/on, sampled 1% and 100%.
bench-tracing: venv debs-test
	@scripts/setup/go-tools.sh ghz
	$(PY) scripts/bench_tracing.py

protos: venv
	$(PY) scripts/gen_protos.py

clean:
	rm -rf var build .mypy_cache .ruff_cache .pytest_cache
