from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import openai
import pytest

from proxy.sim import SimServer, start_sim
from tests.servers import Background, ProxyServer, settings_for

AGENTS = Path(__file__).parent / "agents"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/agents (real agent CLIs, installed first) runs only when named: make test-agents."""
    if collection_path != AGENTS:
        return None
    here = config.invocation_params.dir
    named = ((here / arg.split("::")[0]).resolve() for arg in config.args)
    return not any(path == AGENTS or AGENTS in path.parents for path in named)


@pytest.fixture(scope="session")
def bg() -> Iterator[Background]:
    b = Background()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def sim_server(bg: Background) -> Iterator[SimServer]:
    server = bg.run(start_sim())
    yield server
    bg.run(server.close())


@pytest.fixture
def sim(sim_server: SimServer) -> Iterator[SimServer]:
    """The simulated backend, its log cleared and its options restored after the test."""
    saved = asdict(sim_server.options)
    sim_server.reset()
    yield sim_server
    for key, value in saved.items():
        setattr(sim_server.options, key, value)


@pytest.fixture(scope="session")
def proxy_server(bg: Background, sim_server: SimServer) -> Iterator[ProxyServer]:
    server = bg.run(ProxyServer(settings_for(sim_server.url)).start())
    yield server
    bg.run(server.stop())


@pytest.fixture
def make_proxy(bg: Background, sim_server: SimServer) -> Iterator[Callable[..., ProxyServer]]:
    """Start a proxy with extra settings (env names), stopped after the test."""
    started: list[ProxyServer] = []

    def make(backend_url: str | None = None, **env: str) -> ProxyServer:
        server = bg.run(ProxyServer(settings_for(backend_url or sim_server.url, env)).start())
        started.append(server)
        return server

    yield make
    for server in started:
        bg.run(server.stop())


@pytest.fixture
def client(proxy_server: ProxyServer, sim: SimServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=proxy_server.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c
