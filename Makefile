PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev browser lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[openai,redis,postgres]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## make run: install, migrate, seed the demo, serve on http://$(HOST):$(PORT)
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py parley_demo --base-url http://$(HOST):$(PORT)
	$(BIN)/python -m uvicorn example.asgi:application --host $(HOST) --port $(PORT) \
		--loop uvloop --http httptools --ws websockets-sansio --ws-max-size 1048576 --no-access-log

## make test: the whole suite (Redis, PostgreSQL and browser tests skip with a reason when missing)
test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make browser: install Debian's chromium for the browser tests (needs root / sudo)
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

lint: install-dev
	$(BIN)/ruff check parley example tests bench
	$(BIN)/ruff format --check parley example tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache test-output
