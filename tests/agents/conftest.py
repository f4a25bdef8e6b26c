"""Fixtures for the agent CLI tests: the installed clients, and one stack (sim, proxy, HOME) each.

These tests run only when asked for by path (``make test-agents``; see ``tests/conftest.py``).
``AGENT_MODELS`` (comma-separated, default ``MiniMax-M2``) names the models every client is run
with; the simulated backend serves exactly the model asked for. One test can run with its own
list instead: ``@pytest.mark.parametrize("model", ["MiniMax-M2", "MiniMax-M3"])`` overrides the
``model`` fixture, and ``make_stack`` follows it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.sim import start_sim
from tests.agents.harness import Served, Stack, leftovers
from tests.agents.install import DONE
from tests.agents.pins import NPM, PYPI, clients_dir
from tests.servers import Background, ProxyServer, settings_for

MODELS = [m for m in os.environ.get("AGENT_MODELS", "MiniMax-M2").split(",") if m]
# The clients run on both generations of the protocol (M2 line and M3: issue 15).
GENERATIONS = ["MiniMax-M2", "MiniMax-M3"]


@pytest.fixture(scope="session")
def clients() -> Path:
    return clients_dir()


def installed(clients: Path, part: str) -> Path:
    """The folder of an installed part; a missing one fails the test saying how to install it."""
    if not (clients / part / DONE).exists():
        pytest.fail(
            f"{part} is not installed in {clients}: run `make test-agents` "
            "(or `python -m tests.agents.install`) first",
            pytrace=False,
        )
    return clients / part


def npm_bin(clients: Path, name: str) -> str:
    assert name in NPM
    command = {"claude-code": "claude", "qwen-code": "qwen"}.get(name, name)
    return str(installed(clients, "npm") / "node_modules" / ".bin" / command)


def venv_bin(clients: Path, name: str, command: str) -> str:
    assert name in PYPI
    return str(installed(clients, name) / "bin" / command)


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_stack(bg: Background, tmp_path: Path, model: str) -> Iterator[Callable[..., Stack]]:
    """Start a simulated backend serving ``model`` and a proxy (extra settings as env names)."""
    started: list[Stack] = []
    access = logging.getLogger("proxy.access")
    level = access.level
    access.setLevel(logging.INFO)

    def make(**proxy_env: str) -> Stack:
        sim = bg.run(start_sim(model=model))
        proxy = bg.run(ProxyServer(settings_for(sim.url, proxy_env)).start())
        home, work = tmp_path / "home", tmp_path / "work"
        home.mkdir()
        work.mkdir()
        started.append(Stack(sim, proxy, home, work, model))
        access.addHandler(Served(started[-1].served))
        return started[-1]

    yield make
    access.setLevel(level)
    for handler in [h for h in access.handlers if isinstance(h, Served)]:
        access.removeHandler(handler)
    for stack in started:
        leftovers(stack.home)
        bg.run(stack.proxy.stop())
        bg.run(stack.sim.close())
