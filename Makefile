# ohlcv — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OHLCV := $(VENV)/bin/ohlcv
KAFKA_PORT ?= 9092
PG_PORT ?= 5432
SIM_PORT ?= 8900

.PHONY: install test demo bench lint kafka kafka-stop pg pg-stop sim clean up down logs ps

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
# `up` copies .env.example to .env when there is no .env yet, then builds and starts everything.
# `make logs SERVICES="stream consume"` follows only those services.
COMPOSE = docker compose -f docker/docker-compose.yml $(if $(wildcard .env),--env-file .env)
SERVICES ?=

up:
	@test -f .env || { cp .env.example .env && echo "created .env from .env.example: review it (POSTGRES_PASSWORD, SYMBOLS, ...)"; }
	docker compose -f docker/docker-compose.yml --env-file .env up -d --build

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=200 $(SERVICES)

ps:
	$(COMPOSE) ps -a
