# canary-controller: every target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help venv deps browser-deps lint test fuzz demo sandbox bench schema chart dist clean

help:
	@echo "make demo    set up, then run the whole rollout on this machine: real Envoy, Prometheus, Alertmanager"
	@echo "             (DEMO_ARGS='--fault-at 50' for the rollback run)"
	@echo "make sandbox keep the demo's world running (API emulator, Envoy, Prometheus, Alertmanager, client) and"
	@echo "             drive the controller yourself: canaryctl run, status, pause, promote; Ctrl-C stops it all"
	@echo "make test    set up the virtualenv, then ruff, mypy --strict, import-linter and pytest with coverage"
	@echo "make fuzz    the fuzz suite at nightly size: lint and plan on generated, mutated and hostile files"
	@echo "make bench   rollback latency, scale and judgement benchmarks into benchmarks/results/ (about half an hour)"
	@echo "make schema  regenerate policies/canarypolicy.schema.json and the CRD in helm/crds/ from the models"
	@echo "make chart   package the Helm chart into dist/ (versioned .tgz with Artifact Hub annotations)"
	@echo "make dist    wheel, sdist, chart and a CycloneDX SBOM of the image's Python environment into dist/, with SHA256SUMS"

# The controller and the sandbox (its own distribution in sandbox/: the API emulator, Envoy gateway, demo).
$(STAMP): pyproject.toml sandbox/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e ./sandbox
	# The real Helm engine for `helm lint` and chart tests; it declares Python >= 3.12 but runs on 3.11.
	$(BIN)/python -m pip install --quiet --ignore-requires-python 'helm-sdkpy==0.1.32'
	touch $(STAMP)

venv: $(STAMP)

# Real Prometheus (and later Alertmanager) for the integration tests: Debian's packages, installed when
# missing. Their own services are not started; tests run the binaries on free loopback ports.
deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; \
	  else echo "prometheus and prometheus-alertmanager are needed and installing them needs root: sudo apt-get install prometheus prometheus-alertmanager" >&2; exit 1; fi; }
	@echo "prometheus: $$(prometheus --version 2>&1 | head -1)"
	@echo "alertmanager: $$(prometheus-alertmanager --version 2>&1 | head -1)"

# Debian's chromium and chromium-driver for the browser tests (tests/browser/) and the dashboard's render
# benchmark: installed when missing (root), never downloaded by the test driver. Without them those tests skip.
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else echo "chromium and chromium-driver are needed for the browser tests and installing them needs root: sudo apt-get install chromium chromium-driver" >&2; exit 1; fi; }
	@echo "chromium: $$(chromium --version 2>/dev/null | head -1)"

lint: venv
	$(BIN)/ruff check controller sandbox tests benchmarks tools
	$(BIN)/ruff format --check controller sandbox tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports

# Debian's kubectl (kubernetes-client), unpacked into a project-local cache for the tests in tests/kubectl/;
# never installed system-wide, and the suite runs only this copy. Without it that suite skips and says why.
KUBECTL_CACHE := .cache/kubectl
KUBECTL       := $(KUBECTL_CACHE)/usr/bin/kubectl

kubectl:
	@test -x $(KUBECTL) || { \
	  mkdir -p $(KUBECTL_CACHE)/deb && cd $(KUBECTL_CACHE)/deb && \
	  { apt-get download kubernetes-client >/dev/null 2>&1 || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download kubernetes-client >/dev/null 2>&1; }; } && \
	  dpkg -x kubernetes-client_*.deb .. && rm -f kubernetes-client_*.deb || \
	  echo "kubectl: could not fetch Debian's kubernetes-client (apt-get download; apt-get update needs root); the tests in tests/kubectl/ will be skipped" >&2; }
	@test -x $(KUBECTL) && echo "kubectl: $$($(KUBECTL) version --client --short 2>/dev/null)" || true

# Coverage of the controller package (settings in pyproject's [tool.coverage]); the total is printed last.
test: lint deps kubectl browser-deps
	$(BIN)/pytest --cov --cov-report=term:skip-covered

# The fuzz suite at nightly size (make test runs it bounded and seeded); FUZZ_SEED=N replays another seed.
fuzz: venv
	FUZZ_PROFILE=nightly $(BIN)/pytest tests/fuzz -q -p no:cacheprovider --timeout=0

demo: venv deps
	$(BIN)/canaryctl demo $(DEMO_ARGS)

sandbox: venv deps
	$(BIN)/canaryctl sandbox $(SANDBOX_ARGS)

# Benchmarks measure; they assert nothing. Each writes its JSON, then report.py merges latest.json/latest.md.
bench: venv deps
	$(BIN)/python -m benchmarks.rollback_latency --out benchmarks/results
	$(BIN)/python -m benchmarks.scale --out benchmarks/results
	$(BIN)/python -m benchmarks.judgement_accuracy --out benchmarks/results
	$(BIN)/python -m benchmarks.report --out benchmarks/results

# Release artifacts (tools/release.py): the chart as a versioned .tgz with Artifact Hub annotations; dist adds
# the wheel, the sdist and a CycloneDX SBOM of the image's Python environment, with SHA256SUMS.
chart: venv
	$(BIN)/python -m tools.release chart --out dist

dist: venv
	$(BIN)/python -m pip install --quiet -e '.[release]'
	$(BIN)/python -m tools.release dist --out dist

schema: venv
	$(BIN)/canaryctl schema > policies/canarypolicy.schema.json
	$(BIN)/python -c 'import yaml; from controller.core.crd import canarypolicy_crd; print("# Generated from controller/core models by `make schema`; do not edit."); print(yaml.safe_dump(canarypolicy_crd(), sort_keys=False), end="")' > helm/crds/canarypolicies.canaryctl.dev.yaml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache .coverage .coverage.*
