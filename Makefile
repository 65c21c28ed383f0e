# The two commands a new user needs are `make demo` and `make test`; each installs what it needs.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration bench soak chaos up down status clean system-deps jvm-deps browser-deps venv fmt

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "python3.11 is required (apt-get install python3.11 python3.11-venv)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# mariadbd is started by omshub itself (its own datadir and port); only the binaries are needed.
# chromium runs the dashboard's browser tests (headless, through Playwright).
APT_INSTALL = if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq
system-deps:
	@if ! command -v mariadbd >/dev/null && ! test -x /usr/sbin/mariadbd; then \
	  echo "installing mariadb-server (omshub starts its own instance)"; \
	  $(APT_INSTALL) mariadb-server mariadb-client; \
	fi

# Kafka, Kafka Connect and Debezium run on a JVM from jars Maven resolves once into a cache
# (deploy/jvm/pom.xml; `omshub jars` says where). Java 17+ and Maven come from apt when missing.
jvm-deps: venv
	@if ! command -v java >/dev/null; then \
	  echo "installing a Java runtime (Kafka and Kafka Connect run on it)"; \
	  $(APT_INSTALL) openjdk-17-jre-headless; \
	fi
	@if ! command -v mvn >/dev/null; then \
	  echo "installing Maven (resolves the Kafka and Debezium jars from Maven Central once)"; \
	  $(APT_INSTALL) maven; \
	fi
	$(BIN)/omshub jars

browser-deps:
	@if ! command -v chromium >/dev/null && ! test -x /usr/bin/chromium; then \
	  echo "installing chromium (headless browser tests of the dashboard)"; \
	  $(APT_INSTALL) chromium; \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv system-deps jvm-deps browser-deps
	$(BIN)/pytest tests/integration -q

test: venv system-deps jvm-deps browser-deps lint
	$(BIN)/pytest tests -q

demo: venv system-deps jvm-deps
	$(BIN)/omshub up
	$(BIN)/omshub demo

bench: venv system-deps jvm-deps
	$(BIN)/python bench/connector.py
	$(BIN)/python bench/pushes.py
	$(BIN)/python bench/reverse.py

# 10 minutes at 300 pushes/s against the running stack (started when it is not).
soak: venv system-deps jvm-deps
	$(BIN)/python bench/soak.py

# Kill every part of its own stack (.omshub-chaos, own ports) in turn under steady mixed load and
# report lost / FAILED / duplicates / recovery per fault; exit 1 on any loss (issue 12).
# e.g. make chaos CHAOS_ARGS="--short" or CHAOS_ARGS="--cdc debezium --markdown"
CHAOS_ARGS ?=
chaos: venv system-deps jvm-deps
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

up: venv system-deps jvm-deps
	$(BIN)/omshub up

down: venv
	$(BIN)/omshub down

status: venv
	$(BIN)/omshub status

clean: down
	rm -rf .omshub .omshub-test .omshub-chaos
