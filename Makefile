# schedexec: `make help` lists the targets.
SHELL := /bin/bash
# Everything runs in a project virtual environment (.venv), never in the system interpreter
# (Debian's python3 refuses `pip install` there: PEP 668).
HOST_PYTHON ?= python3
VENV ?= $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
KIND_VERSION ?= v0.33.0
KIND_CLUSTER ?= schedexec
CLUSTER_DIR ?= $(CURDIR)/.cluster
KUBECONFIG_LOCAL := $(CLUSTER_DIR)/kubeconfig
DEVCLUSTER := $(PYTHON) -m schedexec_devcluster
KUBECTL = $$($(DEVCLUSTER) binaries | sed -n 's/^kubectl: //p')
GOBIN ?= $(shell go env GOPATH 2>/dev/null)/bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: host-packages
host-packages: ## (root) Debian packages the local cluster needs: CNI plugins, libseccomp, buildah, mmdebstrap, iptables, python3-venv
	@bash hack/host-packages.sh

$(PYTHON):
	$(HOST_PYTHON) -m venv $(VENV)

.PHONY: install
install: host-packages $(PYTHON) ## install schedexec, its runner SDK, the dev cluster and the development tools into .venv (editable)
	$(PYTHON) -m pip install --quiet -e runner-image -e hack/devcluster -e '.[dev]'

.PHONY: binaries
binaries: ## locate or build the Kubernetes binaries (control plane and node), containerd and helm
	$(DEVCLUSTER) binaries --helm --node

.PHONY: images
images: ## build the operator, runner base, example and test images offline (buildah, cached by content); push them to the local cluster's registry if it runs
	$(DEVCLUSTER) images --state-dir $(CLUSTER_DIR)

.PHONY: component
component: ## build your component (DIR=its directory, NAME=its image name) and push it to the local cluster's registry; prints the image reference
	@test -n "$(DIR)" -a -n "$(NAME)" || { echo "usage: make component DIR=path/to/your-component NAME=your-component" >&2; exit 2; }
	@$(DEVCLUSTER) push-component --state-dir $(CLUSTER_DIR) $(DIR) $(NAME)

.PHONY: test
test: binaries images ## run every test: unit, the node-agent tier (cluster) and the real node (node)
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
cluster-up: ## start the local cluster on a real node (prints KUBECONFIG; NODE_ARGS=--node-agent for the fast tier)
	$(DEVCLUSTER) up --state-dir $(CLUSTER_DIR) $(NODE_ARGS)

.PHONY: cluster-down
cluster-down: ## stop the local control plane and everything it started
	$(DEVCLUSTER) down --state-dir $(CLUSTER_DIR)

.PHONY: up
up: ## local cluster on a real node + the Helm chart (operator) installed on it (NODE_ARGS=--node-agent: fast tier)
	$(DEVCLUSTER) up --operator --state-dir $(CLUSTER_DIR) $(NODE_ARGS)

.PHONY: demo
demo: install binaries images up ## from nothing to a finished example execution, on the real node
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

.PHONY: kind-load
kind-load: ## (needs Docker) load the images `make images` built into the kind cluster (kind load image-archive)
	$(DEVCLUSTER) images --state-dir $(CLUSTER_DIR) | sed -n 's|^ghcr.io/schedexec/[^ ]*: ||p' | \
	  while read -r archive; do PATH=$(GOBIN):$$PATH kind load image-archive --name $(KIND_CLUSTER) "$$archive" || exit 1; done

.PHONY: kind-down
kind-down: ## (needs Docker) delete the kind cluster
	PATH=$(GOBIN):$$PATH kind delete cluster --name $(KIND_CLUSTER)

.PHONY: release
release: ## push the runner, operator and example images (OCI labels) and the chart (oci://REGISTRY/charts) for VERSION: make release REGISTRY=ghcr.io/schedexec VERSION=0.2.0 [CA_FILE=ca.crt]; REGISTRY_CREDS=user:password or your buildah/helm logins
	@test -n "$(REGISTRY)" -a -n "$(VERSION)" || { echo "usage: make release REGISTRY=host/path VERSION=x.y.z [CA_FILE=...]" >&2; exit 2; }
	@$(DEVCLUSTER) release --state-dir $(CLUSTER_DIR) --registry $(REGISTRY) --version $(VERSION) $(if $(CA_FILE),--ca-file $(CA_FILE))

.PHONY: docker-images
docker-images: ## (needs docker or podman) build the images with a registry-backed engine instead
	@engine=$$(command -v docker || command -v podman) || { echo "docker-images: neither docker nor podman is installed" >&2; exit 1; }; \
	$$engine build -t ghcr.io/schedexec/operator:0.1.0 . && \
	$$engine build -t ghcr.io/schedexec/runner:0.1.0 runner-image && \
	for example in shop sandbox ratelimited; do \
	  $$engine build -t ghcr.io/schedexec/example-$$example:0.1.0 examples/$$example || exit 1; \
	done

.PHONY: bench
bench: binaries images ## benchmarks → docs/benchmarks.md (node agent tier) and docs/benchmarks-node.md (real node); ~1 h (BENCH_ARGS=--quick BENCH_NODE_ARGS=--quick: minutes, into a temp dir)
	$(PYTHON) bench/run.py $(BENCH_ARGS)
	$(PYTHON) bench/node.py $(BENCH_NODE_ARGS)
	$(if $(findstring --quick,$(BENCH_ARGS)),,$(PYTHON) bench/run.py --render)

.PHONY: bench-node
bench-node: binaries images ## the real-node benchmark only: schedexec against raw Jobs, same image → docs/benchmarks-node.md
	$(PYTHON) bench/node.py $(BENCH_NODE_ARGS)

.PHONY: bench-breakdown
bench-breakdown: binaries images ## where a REST select-model's seconds go on the real node, next to a raw Job's → docs/benchmarks-node.md
	$(PYTHON) bench/select_model_breakdown.py $(BENCH_BREAKDOWN_ARGS)
