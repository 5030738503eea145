# schedexec: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
KIND_VERSION ?= v0.33.0
KIND_CLUSTER ?= schedexec
CLUSTER_DIR ?= $(CURDIR)/.cluster
KUBECONFIG_LOCAL := $(CLUSTER_DIR)/kubeconfig
DEVCLUSTER := $(PYTHON) -m schedexec.devcluster
KUBECTL = $$($(DEVCLUSTER) binaries | sed -n 's/^kubectl: //p')
GOBIN ?= $(shell go env GOPATH 2>/dev/null)/bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: install
install: ## install schedexec, its runner SDK and the development tools (editable)
	$(PYTHON) -m pip install --quiet -e runner-image -e '.[dev]'

.PHONY: binaries
binaries: ## locate or build etcd, kube-apiserver, kube-controller-manager, kubectl and helm
	$(DEVCLUSTER) binaries --helm

.PHONY: test
test: binaries ## run every test, the cluster tests on a fresh local control plane
	$(PYTHON) -m pytest

.PHONY: chaos
chaos: binaries ## fault injection at full size → docs/reliability.md (CI runs a reduced size within make test)
	SCHEDEXEC_CHAOS_SCALE=full SCHEDEXEC_CHAOS_REPORT=docs/reliability.md $(PYTHON) -m pytest tests/chaos

.PHONY: lint
lint: ## ruff and mypy --strict
	$(PYTHON) -m ruff check operator runner-image tests examples hack bench
	$(PYTHON) -m ruff format --check operator runner-image tests examples hack bench
	$(PYTHON) -m mypy

.PHONY: crds
crds: ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(PYTHON) -m schedexec.cli crds crds
	$(PYTHON) -m schedexec.cli crds charts/schedexec/files

.PHONY: cluster-up
cluster-up: ## start the local control plane and node agent (prints KUBECONFIG)
	$(DEVCLUSTER) up --state-dir $(CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: ## stop the local control plane and everything it started
	$(DEVCLUSTER) down --state-dir $(CLUSTER_DIR)

.PHONY: up
up: ## local control plane + node agent + CRDs + the operator
	$(DEVCLUSTER) up --operator --state-dir $(CLUSTER_DIR)

.PHONY: demo
demo: install binaries up ## from nothing to a finished example execution
	KUBECONFIG=$(KUBECONFIG_LOCAL) CLUSTER_DIR=$(CLUSTER_DIR) KUBECTL=$(KUBECTL) $(PYTHON) hack/demo.py

.PHONY: run
run: ## run the operator in the foreground against the current kubeconfig
	$(PYTHON) -m schedexec.cli operator

.PHONY: api
api: ## run the REST API in the foreground against the current kubeconfig (SCHEDEXEC_API_* settings)
	$(PYTHON) -m schedexec.cli api

.PHONY: deploy
deploy: ## helm upgrade --install the chart into the current kubeconfig's cluster (HELM_ARGS for --set ...)
	$$($(DEVCLUSTER) binaries --helm | sed -n 's/^helm: //p') upgrade --install schedexec charts/schedexec \
	  --namespace schedexec-system --create-namespace $(HELM_ARGS)

.PHONY: kind-up
kind-up: ## (needs Docker) a kind cluster with the CRDs installed
	command -v kind >/dev/null || GOTOOLCHAIN=auto go install sigs.k8s.io/kind@$(KIND_VERSION)
	PATH=$(GOBIN):$$PATH kind create cluster --name $(KIND_CLUSTER) --config hack/kind.yaml
	kubectl apply --server-side -f crds

.PHONY: kind-down
kind-down: ## (needs Docker) delete the kind cluster
	PATH=$(GOBIN):$$PATH kind delete cluster --name $(KIND_CLUSTER)

.PHONY: images
images: ## (needs docker or podman) build the operator, runner base and example images
	@engine=$$(command -v docker || command -v podman) || { echo "images: neither docker nor podman is installed" >&2; exit 1; }; \
	$$engine build -t ghcr.io/schedexec/operator:0.1.0 . && \
	$$engine build -t ghcr.io/schedexec/runner:0.1.0 runner-image && \
	for example in shop sandbox ratelimited; do \
	  $$engine build -t ghcr.io/schedexec/example-$$example:0.1.0 examples/$$example || exit 1; \
	done

.PHONY: bench
bench: binaries ## benchmarks on a fresh local control plane → docs/benchmarks.md (takes long; see bench/run.py)
	$(PYTHON) bench/run.py $(BENCH_ARGS)
