# Two commands do all set-up on a fresh machine:
#   make run   - virtual env, CPU torch, llama.cpp, the local model; ingest the built-in corpus; open the
#                chat in the browser (the URL is printed; `rag chat` is the terminal chat)
#   make test  - the same set-up plus test tools and Debian's Chromium; lint, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= Is there work that drops all visual tokens partway through an MLLM?

export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export OMP_WAIT_POLICY := PASSIVE

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test lint bench bench-scale bench-speed clean browser

setup: $(VENV)/.installed

# torch goes in first and pinned: left to choose, pip pulls a CUDA build of several GB.
# llama-cpp-python goes in second, built portable: a default (native) build segfaults on AMX CPUs,
# and anything depending on it would otherwise trigger that build. pip caches the wheel (first
# build: 5-10 minutes on 2 cores).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" $(BIN)/pip install --quiet llama-cpp-python==0.3.36
	$(BIN)/pip install --quiet -e '.[local,test,int8]'
	$(BIN)/rag models --prepare qwen2.5-coder-0.5b-instruct
	$(BIN)/rag models --prepare qwen2.5-coder-1.5b-instruct-q4_k_m
	touch $@

run: setup
	$(BIN)/rag ingest
	$(BIN)/rag ui

# Browser tests drive Debian's Chromium through Playwright; no browser is ever downloaded.
browser:
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null)

lint: setup
	$(BIN)/ruff check rag eval tests bench ui

test: setup lint browser
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/ingest_bench.py

# Each encoder backend and llama.cpp set-up beside its raw limit, in one run (bench/results/speed/).
bench-speed: setup
	$(BIN)/python bench/speed.py

# 1k/10k/100k synthetic corpora: ingest vs raw encode, no-op re-ingest, rag check, search, answers, chroma run, the quickstart baseline (~90 min).
bench-scale: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/scale_bench.py --with-baselines $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
