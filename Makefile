# The verbs a newcomer needs. `make demo` and `make test` do all the set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN = $(shell hack/build-binaries.sh)

.PHONY: help setup binaries test test-unit demo cluster-up cluster-down kubeconfig lint crds bench-judge bench-health bench-scale \
	helm-lint manifests

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## Python venv, Debian servers, control-plane binaries, router CRDs
	hack/install-system-deps.sh
	hack/build-binaries.sh >/dev/null
	hack/fetch-router-crds.sh >/dev/null

binaries: ## Build (once, cached) kube-apiserver, etcd, kwok, helm and friends
	hack/build-binaries.sh

test: setup ## Run every test: unit, integration and e2e
	CANARY_BIN=$(BIN) $(PY) -m pytest

test-unit: $(VENV)/.installed ## Pure-logic tests only (no servers)
	$(PY) -m pytest -m unit

demo: setup ## Run the demo on a local cluster: a canary, an error spike, the rollback
	CANARY_BIN=$(BIN) $(PY) -m devenv.demo

cluster-up: setup ## Start the local control plane with kwok nodes
	CANARY_BIN=$(BIN) $(PY) -m devenv.cluster up

cluster-down: $(VENV)/.installed ## Stop the local control plane; leaves no process behind
	$(PY) -m devenv.cluster down

kubeconfig: $(VENV)/.installed ## Print the local cluster's kubeconfig path
	@$(PY) -m devenv.cluster kubeconfig

bench-scale: setup binaries ## Scale benchmark: 10 to 1,000 releases, faults, 1-hour churn (bench/results/scale.json)
	$(PY) -m bench.scale.run --sizes 10 100 500 1000 --profile
	$(PY) -m bench.scale.run --sizes 500 --faults
	$(PY) -m bench.scale.run --sizes 100 --churn-minutes 60

bench-judge: setup ## Judge benchmark: sequential vs threshold gates (writes bench/results/judge*.json)
	$(PY) -m bench.judge --markdown
	$(PY) -m bench.judge.through_prometheus
	$(PY) -m bench.judge.bounds

bench-health: setup binaries ## Crash-level builds (canary crash-loop or never Ready, promoted pods crash-looping) to the rollback decision (bench/results/health.json)
	$(PY) -m bench.health

crds: $(VENV)/.installed ## Regenerate the CRD from the pydantic models
	$(PY) -m controller.api.crd --write

lint: $(VENV)/.installed helm-lint ## ruff and mypy --strict on controller/, plus helm-lint
	$(VENV)/bin/ruff check controller devenv tests bench
	$(VENV)/bin/ruff format --check controller
	$(VENV)/bin/mypy controller

helm-lint: $(VENV)/.installed ## helm lint the chart, hadolint the Dockerfile, check manifests/ is current
	$(BIN)/helm lint --strict helm/canary-controller --kube-version 1.35.4
	$(VENV)/bin/hadolint Dockerfile
	HELM=$(BIN)/helm hack/render-manifests.sh --check

manifests: ## Regenerate manifests/install.yaml from the Helm chart
	HELM=$(BIN)/helm hack/render-manifests.sh
