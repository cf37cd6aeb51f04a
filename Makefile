# Two commands do all set-up on a fresh machine:
#   make run   - virtual env, CPU torch, the project; ingest the built-in corpus; ask a sample question
#   make test  - the same set-up plus test tools; lint, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= Is there work that drops all visual tokens partway through an MLLM?

export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

# torch goes in first and pinned: left to choose, pip pulls a CUDA build of several GB.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(BIN)/rag ingest
	$(BIN)/rag search "$(QUESTION)"

lint: setup
	$(BIN)/ruff check rag tests bench

test: setup lint
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/ingest_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
