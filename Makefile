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

.PHONY: install demo test lint browser bench clean

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

# The dashboard's browser tests drive Debian's Chromium; without it (and without root to install it) they skip.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the dashboard's browser tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "could not install chromium: the dashboard's browser tests will be skipped"; \
	  else \
	    echo "no /usr/bin/chromium: the dashboard's browser tests will be skipped (apt-get install chromium)"; \
	  fi; }

test: lint browser
	$(VENV)/bin/pytest

bench: install
	$(PY) benchmarks/replay_bench.py

clean:
	rm -rf .rehearsal .pytest_cache .mypy_cache .ruff_cache
