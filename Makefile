# Shoal: two commands on a fresh machine.
#   make demo   - the reference jobs on a real local Kafka broker, live output (Ctrl-C stops)
#   make test   - unit and integration tests (starts its own broker), the docs' code included
#   make check  - lint, types, doctests, import rules, mkdocs build --strict
#   make image  - the container image shoal:VERSION (podman; deploy/docker/build.py)
#   make image-flink - the Flink engine's image shoal-flink:VERSION (large; also needs Maven)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_SECONDS ?= 0
# e.g. make demo DEMO_ARGS=--chaos (kill workers on the way, a verdict at the end)
DEMO_ARGS ?=

.PHONY: venv native venv-test system-deps system-deps-demo demo test check unit integration bench lint typecheck image image-flink clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@$(MAKE) --no-print-directory native
	@touch $@

# The native Avro decoder (native/, Rust with PyO3, built by maturin from crates.io):
# optional at run time (without it fastavro decodes everything, with the same results).
# A machine without a recent Rust (1.74+) gets a warning and the fastavro path.
native:
	@PATH="$$PATH:$$HOME/.cargo/bin"; \
	if ! command -v cargo >/dev/null; then \
	  echo "warning: no cargo (Rust, https://rustup.rs): the native Avro decoder is not built; fastavro decodes everything"; \
	else \
	  echo "building the native Avro decoder (native/, cargo; about a minute the first time) ..."; \
	  $(BIN)/python -m pip install -q --force-reinstall --no-deps ./native || \
	    echo "warning: the native Avro decoder did not build (see above); fastavro decodes everything"; \
	fi

# The tests also run the jobs on Apache Flink: the (large) flink extra is installed here.
venv-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,flink]"
	@touch $@

# Debian packages the services need (apt-get as root; otherwise a one-line error naming them)
system-deps:
	@deploy/setup/system-deps test

system-deps-demo:
	@deploy/setup/system-deps demo

demo: system-deps-demo venv
	$(BIN)/shoal demo --seconds $(DEMO_SECONDS) $(DEMO_ARGS)

test: system-deps venv-test
	$(BIN)/python -m pytest -q --durations=15 tests

unit: venv-test
	$(BIN)/python -m pytest -q tests/unit

integration: system-deps venv-test
	$(BIN)/python -m pytest -q tests/integration

# The container image shoal:VERSION (and shoal:latest): podman, runc and mmdebstrap from
# Debian, a cached Debian base, locked wheels, an offline podman build. Needs only Python 3.11+.
image:
	@deploy/setup/system-deps image
	$(PYTHON) deploy/docker/build.py

# The Flink engine's image shoal-flink:VERSION (and shoal-flink:latest), from the same
# Dockerfile: its base adds Java 17, its venv Shoal's flink extra (PyFlink and Flink's
# distribution, about 1.3 GB in all), and Maven fetches the Kafka connector jar. Apart from
# `make image` because the native engine's image needs none of that.
image-flink:
	@deploy/setup/system-deps image-flink
	$(PYTHON) deploy/docker/build.py shoal-flink

bench: venv
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python -m bench

# Lint, strict types (the platform, and the reference jobs as a user's jobs), the public
# API's doctests, the import rules and the documentation site (mkdocs.yml; its code
# blocks run in tests/unit/test_docs.py): before the tests in CI.
check: venv
	$(BIN)/ruff check runtime connectors jobs tests bench deploy
	$(BIN)/mypy
	$(BIN)/mypy --strict jobs
	$(BIN)/python -m pytest -q -p no:cacheprovider --doctest-modules runtime/api runtime/testing runtime/settings.py runtime/generator/pacing.py connectors/kafka/config.py tests/unit/test_architecture.py
	$(BIN)/mkdocs build --strict --quiet --site-dir site

lint: venv
	$(BIN)/ruff check runtime connectors jobs tests bench deploy

typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy --strict jobs

clean:
	rm -rf .shoal site .pytest_cache .mypy_cache .ruff_cache
