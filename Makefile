# Everything a newcomer needs: `make demo` and `make test` set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REDIS_PORT ?= 6379

.PHONY: setup test test-agents demo run bench lint typecheck redis clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (log: $(VENV)/install.log)"
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[test,dev]'; } \
	  > $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

setup: $(STAMP)

# Start a throwaway Redis when none answers (the session-store tests use it).
redis: setup
	@$(PY) -c "import socket; socket.create_connection(('127.0.0.1', $(REDIS_PORT)), 1)" 2>/dev/null \
	  || { command -v redis-server >/dev/null \
	       && redis-server --daemonize yes --bind 127.0.0.1 --port $(REDIS_PORT) --save '' --appendonly no \
	       && sleep 0.5 && echo "started redis-server on $(REDIS_PORT)"; } \
	  || echo "redis-server not available: Redis tests will skip"

test: setup redis
	$(PY) -m pytest -q -p no:cacheprovider --cov=parser --cov-report=term-missing:skip-covered --cov-fail-under=95

# Real agent CLIs (pinned in tests/agents/pins.py, installed once into ~/.cache/minimax-m2-proxy/
# agents/), each driven headless through the proxy and the simulated backend. They run in a
# network namespace with only loopback when `unshare -n` works (as root), so none can reach the
# internet whatever its switches; elsewhere only their telemetry and update switches hold them.
test-agents: setup
	$(PY) -m tests.agents.install
	@if unshare -n true 2>/dev/null && command -v ip >/dev/null; then \
	  echo "agents run in a loopback-only network namespace"; \
	  unshare -n sh -c 'ip link set lo up && exec "$$@"' sh $(AGENTS_PYTEST); \
	else \
	  echo "unshare -n is not available: agents run with their network switches only"; \
	  $(AGENTS_PYTEST); \
	fi

AGENTS_PYTEST = $(PY) -m pytest -q -p no:cacheprovider tests/agents

# SIM_MODE=vllm (or vllm-parsers, vllm-append-think, sglang): the simulated backend's manners.
demo: setup
	$(PY) -m proxy.demo $(if $(SIM_MODE),--sim-mode $(SIM_MODE))

run: setup
	$(PY) -m proxy

bench: setup
	$(PY) benchmarks/bench_parser.py
	$(PY) benchmarks/bench_proxy.py

lint: setup
	$(PY) -m ruff check parser proxy tests benchmarks
	$(PY) -m ruff format --check parser proxy tests benchmarks
	$(PY) -m mypy

typecheck: setup
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
