# Every target sets up .venv itself; nothing here needs a global install beyond Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

TOOLS := $(HOME)/.cache/novacron/tools
ACTIONLINT_VERSION := v1.7.7

.PHONY: help setup demo test lint types unit e2e soak bench crds k8s-bin jaeger k8s-up k8s-down tools images lock clean

help:
	@echo "make demo      run a real local NovaCron federation (processes on 127.0.0.x)"
	@echo "make test      lint, types, unit, simulation, integration and e2e (local Kubernetes control plane)"
	@echo "make bench     every benchmark, each beside a peer measured in the same run"
	@echo "make soak      long simulation and failure soaks"
	@echo "make crds      regenerate crds/ from operator/novacron_operator/models.py"
	@echo "make k8s-bin   build kube-apiserver, etcd, kwok, helm... into ~/.cache/novacron (once)"
	@echo "make jaeger    build Jaeger v2 into ~/.cache/novacron/tools (once; tests/observe uses it)"
	@echo "make k8s-up    a local control plane (REAL_NODE=1: with a real kubelet); make k8s-down"
	@echo "make images    the two images (docker, or buildah without a Docker engine)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

$(VENV)/.bench-stamp: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/novacron demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src operator tests e2e benchmarks
	$(VENV)/bin/ruff format --check src operator tests e2e benchmarks

types: $(STAMP)
	$(VENV)/bin/mypy src/novacron_core operator/novacron_operator

# The simulation and property suites are pure CPU (no ports, processes, namespaces or files
# outside tmp_path): they are spread over every core with pytest-xdist. The rest starts real
# processes, servers and namespaces with timing bounds, and runs one test at a time.
PURE_TESTS := tests/consensus tests/region tests/sync tests/conflict
JOBS ?= auto

unit: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) $(PURE_TESTS) $(PYTEST_ARGS)
	$(PY) -m pytest -q $(addprefix --ignore=,$(PURE_TESTS)) $(PYTEST_ARGS)

e2e: $(STAMP)
	bash e2e/k8s/build.sh >/dev/null
	bash e2e/argocd/build.sh >/dev/null
	$(PY) -m pytest -q e2e $(PYTEST_ARGS)

test: lint types tools unit e2e

soak: $(STAMP)
	NOVACRON_SOAK=1 $(PY) -m pytest -q -m soak $(PYTEST_ARGS)

bench: $(VENV)/.bench-stamp
	-bash benchmarks/peers/automerge/build.sh >/dev/null  # without Node the benchmark says so
	$(PY) -m benchmarks all

crds: $(STAMP)
	$(PY) -m novacron_operator.crdgen crds
	bash charts/novacron/sync-crds.sh

k8s-bin:
	bash e2e/k8s/build.sh

# Jaeger v2 for tests/observe (a big Go build, once, into ~/.cache/novacron/tools)
jaeger:
	nice -n 10 bash e2e/jaeger/build.sh

# make k8s-up REAL_NODE=1: one real node (kubelet, containerd, CNI, CoreDNS) instead of
# kwok's fake ones; needs root and the packages .ci/run installs (docs/real-node.md)
k8s-up: $(STAMP)
	bash e2e/k8s/build.sh >/dev/null
	$(if $(REAL_NODE),bash images/build.sh >/dev/null)
	$(PY) -m novacron_operator.devcluster up $(if $(REAL_NODE),--real-node)

k8s-down: $(STAMP)
	$(PY) -m novacron_operator.devcluster down

# actionlint checks .github/workflows in the deploy tests; built once into a cache outside the repo
tools:
	@test -x $(TOOLS)/actionlint || GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOBIN=$(TOOLS) \
		go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

# docker build where there is a Docker engine, else buildah on an mmdebstrap base;
# archives land in ~/.cache/novacron/images (imported by a real node)
images:
	bash images/build.sh

lock: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
