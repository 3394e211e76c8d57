# ohlcv — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OHLCV := $(VENV)/bin/ohlcv
KAFKA_PORT ?= 9092
PG_PORT ?= 5432
SIM_PORT ?= 8900

.PHONY: install test demo bench lint kafka kafka-stop pg pg-stop sim clean up down logs ps compose-test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

lint: install
	$(VENV)/bin/lint-imports

# Starts a throwaway PostgreSQL and a real Kafka broker (pytest session fixtures), runs every
# test, stops them.
test: install
	$(PY) scripts/kafka/broker.py fetch
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

demo: install
	PY=$(PY) OHLCV=$(OHLCV) SIM_PORT=$(SIM_PORT) bash scripts/demo.sh

bench: install
	$(PY) scripts/kafka/broker.py fetch
	$(PY) bench/run.py

sim: install
	$(OHLCV) sim --port $(SIM_PORT)

kafka: install
	$(PY) scripts/kafka/broker.py start --port $(KAFKA_PORT)

kafka-stop:
	$(PYTHON) scripts/kafka/broker.py stop

pg: install
	$(PY) scripts/pg/cluster.py start --port $(PG_PORT)

pg-stop:
	$(PYTHON) scripts/pg/cluster.py stop

clean:
	rm -rf $(VENV) .cache .pytest_cache build dist *.egg-info ohlcv.db ohlcv.db-*

# The Docker Compose stack (docker/docker-compose.yml; README "Deploy with Docker Compose").
# `up` builds the image and starts everything; when there is no .env yet it copies .env.example to
# .env and stops, so that the PostgreSQL volume is never initialised with the example's password.
# `make logs SERVICES="stream consume"` follows only those services. ENV_FILE and COMPOSE_FILES
# select another settings file and extra compose files (make compose-test uses both).
ENV_FILE ?= .env
COMPOSE_FILES ?= docker/docker-compose.yml
COMPOSE = OHLCV_ENV_FILE=$(abspath $(ENV_FILE)) docker compose $(addprefix -f ,$(COMPOSE_FILES)) \
	$(if $(wildcard $(ENV_FILE)),--env-file $(ENV_FILE))
SERVICES ?=

up:
	@if [ ! -f "$(ENV_FILE)" ]; then \
	  cp .env.example "$(ENV_FILE)"; \
	  echo "created $(ENV_FILE) from .env.example; nothing started. Review it, then run make up again:"; \
	  echo "  POSTGRES_PASSWORD  (PostgreSQL keeps the password of its first start in its volume)"; \
	  echo "  SYMBOLS, TIMEFRAME, BACKFILL_DAYS  (what to collect)"; \
	  echo "  COMPOSE_PROFILES, PUBLISH_ADDRESS, KAFKA_ADVERTISED_HOST  (what runs, who can reach it)"; \
	  exit 1; \
	fi
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=200 $(SERVICES)

ps:
	$(COMPOSE) ps -a

# The stack for real on a Docker engine, against the simulator (README "Deploy with Docker
# Compose", "The compose test"): installs the engine and Compose v2 where missing, builds
# stand-ins for images Docker Hub cannot give, checks, removes everything it made.
compose-test: install
	$(PY) scripts/kafka/broker.py fetch
	PY=$(PY) bash scripts/compose/run.sh
