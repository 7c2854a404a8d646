# Spillway — the commands. `make demo` and `make test` are the two that matter.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Runs a command as a client of the local stack: with the password of the stack's own Redis
# added to SPILLWAY_REDIS_URL (see deploy/local_redis.py); an explicit URL with a password wins.
CLIENT := $(PY) -m deploy.stack exec --

.PHONY: venv up down status demo lint test test-fast seed key datasets migrate bench clean

venv: $(STAMP)
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

up: venv            ## PostgreSQL, Redis, S3, schema, seed data, API and workers, in the background
	$(PY) -m deploy.stack up

down: venv          ## stop exactly what `make up` started
	$(PY) -m deploy.stack down

status: venv
	$(PY) -m deploy.stack status

demo: up            ## the main job: a 1,000,000-row export through the real stack
	$(CLIENT) $(PY) -m client.demo

lint: venv          ## ruff (lint, import order, format) and mypy, as configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint          ## lint first; everything the tests need is brought up; all tests run
	$(PY) -m deploy.stack up --deps-only
	$(PY) -m deploy.test_tools
	$(CLIENT) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv     ## unit tests and the state-machine tests (PostgreSQL, no worker processes), in seconds
	$(PY) -m deploy.stack up --deps-only
	$(CLIENT) $(PY) -m pytest tests/unit tests/state $(PYTEST_ARGS)

seed: venv          ## reseed: make seed ROWS=1000000 SEED=42
	$(PY) -m seeds.seed --rows $(or $(ROWS),1000000) --seed $(or $(SEED),42)

key: venv           ## a new API key: make key OWNER=alice [ATTRS="tenant=42 region=eu"] (the key is the last line)
	@test -n "$(OWNER)" || (echo "usage: make key OWNER=<name> [ATTRS=\"name=value ...\"]" >&2; exit 2)
	@$(CLIENT) $(VENV)/bin/flask --app api.wsgi keys create "$(OWNER)" $(foreach a,$(ATTRS),--attr "$(a)")

datasets: venv      ## check SPILLWAY_DATASETS_FILE against the database (what every process does at start)
	@$(CLIENT) $(VENV)/bin/flask --app api.wsgi datasets check

migrate: venv
	$(PY) -m shared.migrate

bench: up          ## speed, memory, scaling and API figures (bench/results/*.json); ARGS=--quick
	$(CLIENT) $(PY) -m bench.run $(ARGS)

clean: down          ## stop the stack and delete its data (the cluster too, where .data/pg links outside)
	@if [ -L .data/pg ]; then rm -rf "$$(readlink -f .data/pg)"; fi
	rm -rf .data

.env:               ## once, for docker compose: .env from .env.example with random passwords (0600)
	$(PYTHON) -m deploy.compose_env
