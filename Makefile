# Quantum Fleet: one-command start and test. See README.md.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= $(or $(API_HOST),127.0.0.1)
PORT ?= $(or $(API_PORT),8000)

.PHONY: install run test lint format migrate maintain demo clean

## install: create .venv and install the pinned dependencies
install: $(STAMP)

$(STAMP): requirements/base.txt requirements/dev.txt requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements/dev.txt -c requirements/constraints.txt
	touch $(STAMP)

## migrate: apply database migrations (SQLite unless DATABASE_URL says otherwise)
migrate: install
	$(BIN)/python manage.py migrate --noinput

## maintain: telemetry partitions ahead, stray rows adopted, retention applied
maintain: migrate
	$(BIN)/python manage.py telemetry_maintenance

## demo: create the demo tenant, admin login and device if missing (development only)
demo: maintain
	DJANGO_ENV=$${DJANGO_ENV:-development} API_HOST=$(HOST) API_PORT=$(PORT) $(BIN)/python manage.py bootstrap_demo

## run: install, migrate, create the demo data, start the daemons, Celery and the web server
run: demo
	@echo "Teltonika daemon on $${TCP_BIND:-0.0.0.0}:$${TCP_PORT:-5072} (TCP and UDP)"
	$(BIN)/python manage.py runteltonika & daemon=$$!; \
	mqtt=; \
	if $(BIN)/python manage.py runmqtt --check; then \
		echo "MQTT consumer on $${MQTT_TOPIC:-ingest/+}"; \
		$(BIN)/python manage.py runmqtt & mqtt=$$!; \
	else \
		echo "MQTT consumer not started: no broker (start Mosquitto, or set EMQX_HOST/EMQX_PORT)"; \
	fi; \
	celery=; \
	if broker=$$($(BIN)/python manage.py checkbroker 2>/dev/null); then \
		echo "Celery worker and beat on $$broker"; \
		$(BIN)/celery -A quantumfleet worker -l INFO & celery=$$!; \
		$(BIN)/celery -A quantumfleet beat -l INFO -s $(VENV)/celerybeat-schedule & \
		celery="$$celery $$!"; \
	else \
		echo "Celery not started: no broker (set CELERY_BROKER_URL or REDIS_URL to a Redis);" \
			"connector tasks run eagerly in the web process, collectors are not polled"; \
		export CELERY_TASK_ALWAYS_EAGER=true; \
	fi; \
	trap 'kill $$daemon $$mqtt $$celery 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## test: run the whole suite (PostgreSQL when DATABASE_URL is set, SQLite otherwise)
test: install
	DJANGO_ENV=test $(BIN)/pytest $(PYTEST_ARGS)

## lint: formatting, lint rules and types
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

## format: rewrite files to the project's format and fix what ruff can
format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
