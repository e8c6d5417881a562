# docpipe — run `make help` for the targets.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
DOCPIPE := $(VENV)/bin/docpipe
CSV     ?= testdata/documents.csv

.PHONY: help install dev demo test test-unit lint format bench clean constraints \
        run-workflow-worker run-cpu-worker run-gpu-worker run-io-worker run-optimized

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 24

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --progress-bar off -c constraints.txt -e '.[dev]'
	$(PY) -c "import docpipe.client.cli, docpipe.workers.gpu, docpipe.workers.io, docpipe.workers.cpu"
	touch $@

install: $(VENV)/.installed ## create .venv with every extra and the test tools

dev: install ## alias of install

demo: install ## start the embedded stack and all workers, run testdata/documents.csv, stop
	$(DOCPIPE) run $(CSV) --no-strict

test: install ## the whole test suite (starts its own Temporal, PostgreSQL, S3, Chroma)
	$(PY) -m pytest

test-unit: install ## unit tests only (no servers)
	$(PY) -m pytest tests/unit

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check services operator tests bench
	$(VENV)/bin/ruff format --check services operator tests bench

format: install ## ruff format and autofix
	$(VENV)/bin/ruff format services operator tests bench
	$(VENV)/bin/ruff check --fix services operator tests bench

bench: install ## pipeline throughput vs a sequential in-process loop (prints ratio=)
	$(PY) bench/pipeline.py

run-workflow-worker: install ## workflow worker against $$TEMPORAL_HOST
	$(DOCPIPE) worker workflow

run-cpu-worker: install ## CPU worker (process pool of WORKER_CPU_THREADS)
	$(DOCPIPE) worker cpu

run-gpu-worker: install ## GPU worker (CPU fallback when no GPU is visible)
	$(DOCPIPE) worker gpu

run-io-worker: install ## IO worker (S3, PostgreSQL, Chroma, HTTP)
	$(DOCPIPE) worker io

run-optimized: install ## the embedded run with batch sizes tuned for throughput
	$(DOCPIPE) run $(CSV) --batch-size 25 --max-in-flight 100 --no-strict

constraints: install ## refresh constraints.txt from the current (tested) environment
	@head -4 constraints.txt > constraints.new
	$(PY) -m pip freeze --exclude-editable | grep -v '^docpipe' >> constraints.new
	@# The io extra's chromadb-client cannot share this environment with chromadb (same
	@# package): pin it to the server's version.
	grep '^chromadb==' constraints.new | sed 's/^chromadb==/chromadb-client==/' >> constraints.client
	cat constraints.client >> constraints.new && rm constraints.client
	mv constraints.new constraints.txt

clean: ## remove local data, caches and build output
	rm -rf .docpipe build dist *.egg-info services/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
