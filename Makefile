# One command sets up and runs the demo; one sets up and runs the tests.
# Both create .venv when missing (CPU torch first, so nothing pulls CUDA wheels).

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

# Offline by default: no model downloads, no telemetry.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/rehearsal demo

lint: install
	$(VENV)/bin/ruff check engine flows service tests benchmarks
	$(VENV)/bin/ruff format --check engine flows service tests benchmarks
	$(VENV)/bin/mypy engine flows service

test: lint
	$(VENV)/bin/pytest

bench: install
	$(PY) benchmarks/replay_bench.py

clean:
	rm -rf .rehearsal .pytest_cache .mypy_cache .ruff_cache
