# Kiln — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
KILN := $(VENV)/bin/kiln
PYTEST := $(VENV)/bin/pytest

.PHONY: help venv system-deps tools deps lint crds crds-check estimator-params unit component chaos e2e test demo dev-up dev-down dev-status bench clean kind-up images

help:
	@echo "make demo    bring up the local cluster and run Kiln's story on it"
	@echo "make test    lint + unit + component + chaos + e2e (brings the cluster up itself)"
	@echo "make chaos   controllers killed after every write of a pass, then restarted"
	@echo "make dev-up | dev-down | dev-status    the local cluster alone"

$(VENV)/.installed: pyproject.toml scripts/bootstrap-venv.sh
	scripts/bootstrap-venv.sh

venv: $(VENV)/.installed

system-deps:
	scripts/install-system-deps.sh

tools:
	scripts/build-tools.sh

deps: venv system-deps tools

lint: venv
	$(VENV)/bin/ruff check operator dev tests bench
	$(VENV)/bin/ruff format --check operator dev tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# crds/ is the source of truth for users; manifests/crds/ holds a copy for kustomize (its
# load restrictor refuses files outside a kustomization's directory). Tests check both.
crds: venv
	$(PY) -m kiln.api.crdgen
	$(PY) -m kiln.api.crdgen manifests/crds

# kiln/api/estimator_params.py: every allow-listed estimator's parameter names, read from the
# installed scikit-learn, XGBoost and LightGBM (the operator's image has none of them). Run
# after upgrading one; a unit test fails when the committed table drifts.
estimator-params: venv
	$(PY) -m kiln.trainer.paramtable

unit: venv tools
	$(PYTEST) -m unit -q

component: venv
	$(PYTEST) -m component -q

# Every write of the controllers' passes killed in turn, then a restart (kmock, ~2 min).
# `make test` runs them too: pytest over tests/ selects every marker.
chaos: venv
	$(PYTEST) -m chaos -q

e2e: deps images
	$(PYTEST) -m e2e -q

# The whole suite: static checks, the images the cluster's pods run, then every tier. The
# e2e tier starts the local cluster (or uses $$KUBECONFIG when KILN_E2E_USE_KUBECONFIG=1)
# and tears it down afterwards.
test: deps lint images
	$(PYTEST) -q --durations=15

demo: deps images
	scripts/demo.sh

dev-up: deps images
	$(KILN) dev up

dev-down: venv
	$(KILN) dev down

dev-status: venv
	$(KILN) dev status

# For users with Docker: a kind cluster with Kiln's images loaded and the operator
# deployed (see docs/install.md). Not runnable on the machines Kiln is developed on.
kind-up:
	scripts/kind-up.sh

# Every image the local cluster runs (Kiln's three, pause, busybox, python/debian), built
# with buildah into local storage (no Docker), the trainer image run once, and all pushed to
# the loopback registry ($$KILN_REGISTRY, default 127.0.0.1:5000) when it answers
# (scripts/push-images.sh pushes alone); see docs/install.md. `make test` and `make demo`
# build them first; `kiln dev up` on a running cluster then makes its nodes forget the
# images rebuilt under the same tag.
images:
	scripts/build-images.sh

clean: dev-down
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
