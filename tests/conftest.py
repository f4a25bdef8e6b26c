from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.sim import SimServer, start_sim
from tests.servers import Background, ProxyServer, settings_for
from tests.test_responses import Client
from tests.test_sessions import need_redis

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


# -- the Responses API's state (test_responses_state, test_background) ---------------

REDIS_DB = "redis://127.0.0.1:6379/13"  # these tests' own database on the shared Redis


@pytest.fixture
def store_for(tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """The settings of a records store: ``memory``, ``sqlite`` (a file of this test) or
    ``redis`` (skipped without Redis unless REQUIRE_REDIS=1)."""

    def make(kind: str) -> dict[str, str]:
        if kind == "memory":
            return {}
        if kind == "redis":
            need_redis()
        return {
            "SESSION_STORE_ENABLED": "true",
            "SESSION_STORE_BACKEND": kind,
            "SESSION_STORE_PATH": str(tmp_path / "state.db"),
            "REDIS_URL": REDIS_DB,
        }

    return make


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(
    request: pytest.FixtureRequest, store_for: Callable[[str], dict[str, str]]
) -> dict[str, str]:
    return store_for(request.param)


@pytest.fixture
def open_client() -> Iterator[Callable[..., Client]]:
    """Responses clients on proxies; every stream they read is grammar-checked at the end."""
    made: list[Client] = []

    def make(server: Any, key: str = "unused") -> Client:
        made.append(Client(server, key))
        return made[-1]

    yield make
    for c in made:
        c.sdk.close()
        c.check_all()


@pytest.fixture
def sc(
    make_proxy: Callable[..., ProxyServer],
    sim: SimServer,
    open_client: Callable[..., Client],
    store: dict[str, str],
) -> Client:
    """A Responses client on a proxy with each records store in turn."""
    return open_client(make_proxy(**store))
