"""Model routing: backend model names pass through, others are rewritten, aliases map."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.sim import SimServer, start_sim
from tests.servers import Background, ProxyServer

MODELS = ("MiniMax-M2.5", "MiniMax-M2.7")


@pytest.fixture
def two_models(bg: Background) -> Iterator[SimServer]:
    """A backend serving two models (unknown names get vLLM's 404)."""
    server = bg.run(start_sim(model=MODELS[0], models=MODELS[1:]))
    yield server
    bg.run(server.close())


def _chat(server: ProxyServer, model: str, **kw: Any) -> Any:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        return c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Which model are you?"}], **kw
        )


def _sent_model(sim: SimServer) -> Any:
    return [r for r in sim.requests if r.path == "/v1/chat/completions"][-1].body["model"]


def test_served_names_pass_through_and_others_go_to_the_first(
    make_proxy: Any, two_models: SimServer
) -> None:
    server = make_proxy(backend_url=two_models.url)
    for asked, served in [
        ("MiniMax-M2.7", "MiniMax-M2.7"),
        ("MiniMax-M2.5", "MiniMax-M2.5"),
        ("gpt-4o", "MiniMax-M2.5"),
    ]:
        r = _chat(server, asked, extra_body={"reasoning_split": True})
        assert r.model == asked  # the client's own name comes back
        assert _sent_model(two_models) == served
        assert r.choices[0].message.content.endswith(f"(answered by {served})")


def test_backend_model_is_the_default_for_unknown_names(
    make_proxy: Any, two_models: SimServer
) -> None:
    server = make_proxy(backend_url=two_models.url, BACKEND_MODEL="MiniMax-M2.7")
    _chat(server, "claude-proxy-test")
    assert _sent_model(two_models) == "MiniMax-M2.7"
    _chat(server, "MiniMax-M2.5")
    assert _sent_model(two_models) == "MiniMax-M2.5"


def test_aliases_map_to_backend_models_on_both_apis(make_proxy: Any, two_models: SimServer) -> None:
    server = make_proxy(backend_url=two_models.url, MODEL_ALIASES="minimax-m2,fast=MiniMax-M2.7")
    assert _chat(server, "fast").model == "fast"
    assert _sent_model(two_models) == "MiniMax-M2.7"
    _chat(server, "minimax-m2")  # a plain alias: the default model
    assert _sent_model(two_models) == "MiniMax-M2.5"
    with anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as ant:
        msg = ant.messages.create(
            model="fast", max_tokens=512, messages=[{"role": "user", "content": "hi"}]
        )
    assert msg.model == "fast" and _sent_model(two_models) == "MiniMax-M2.7"


def test_models_lists_aliases_and_backend_models(make_proxy: Any, two_models: SimServer) -> None:
    server = make_proxy(backend_url=two_models.url, MODEL_ALIASES="minimax-m2,fast=MiniMax-M2.7")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        assert [m.id for m in c.models.list()] == ["minimax-m2", "fast", *MODELS]


def test_a_model_loaded_later_is_found_on_first_use(make_proxy: Any, two_models: SimServer) -> None:
    server = make_proxy(backend_url=two_models.url)
    two_models.options.models = (*MODELS[1:], "MiniMax-M2.7-lora")  # loaded after the start
    server.app.state.proxy.models._next_discovery = 0  # as if the 30 s back-off had passed
    _chat(server, "MiniMax-M2.7-lora")
    assert _sent_model(two_models) == "MiniMax-M2.7-lora"
    listed = [r for r in two_models.requests if r.path == "/v1/models"]
    # Known and unknown names alike cost no model-list call of their own:
    _chat(server, "gpt-4o")
    _chat(server, "MiniMax-M2.7")
    assert len([r for r in two_models.requests if r.path == "/v1/models"]) == len(listed)


def test_the_model_list_is_refreshed_periodically(
    make_proxy: Any, two_models: SimServer, bg: Background
) -> None:
    server = make_proxy(backend_url=two_models.url, MODEL_REFRESH_SECONDS="0.2")
    two_models.options.models = (*MODELS[1:], "MiniMax-M3")

    async def wait() -> list[str]:
        for _ in range(50):
            if "MiniMax-M3" in server.app.state.proxy.models.served:
                break
            await asyncio.sleep(0.05)
        return list(server.app.state.proxy.models.served)

    assert bg.run(wait()) == [*MODELS, "MiniMax-M3"]


def test_the_sim_refuses_a_model_it_does_not_serve(two_models: SimServer) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(two_models.url + "/v1/chat/completions", json=body)
    assert r.status_code == 404 and "gpt-4o" in r.json()["error"]["message"]
