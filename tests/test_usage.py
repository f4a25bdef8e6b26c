"""Prefix-cache hits reported by the backend reach every API's usage."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.sim import SimServer
from tests.servers import ProxyServer
from tests.test_operations import metric


def _prompt() -> str:
    # Unique first words: nothing earlier shares this prefix; long enough for many blocks.
    return f"{uuid.uuid4().hex} " + "Tell me about prefix caches, please. " * 20


def _oai_usage(client: openai.OpenAI, text: str, stream: bool) -> Any:
    kw: dict[str, Any] = {"model": "minimax-m2", "messages": [{"role": "user", "content": text}]}
    if not stream:
        return client.chat.completions.create(**kw).usage
    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    return chunks[-1].usage


@pytest.mark.parametrize("stream", [False, True])
def test_cached_tokens_reach_openai_clients(client: openai.OpenAI, stream: bool) -> None:
    text = _prompt()
    first = _oai_usage(client, text, stream)
    assert first.prompt_tokens_details.cached_tokens == 0
    again = _oai_usage(client, text, stream)
    cached = again.prompt_tokens_details.cached_tokens
    assert again.prompt_tokens == first.prompt_tokens
    assert again.prompt_tokens - 16 <= cached < again.prompt_tokens and cached % 16 == 0


@pytest.mark.parametrize("stream", [False, True])
def test_cached_tokens_reach_responses_clients(client: openai.OpenAI, stream: bool) -> None:
    text = _prompt()
    reference = _oai_usage(client, text, stream=False)  # fills the cache
    kw: dict[str, Any] = {"model": "minimax-m2", "input": [{"role": "user", "content": text}]}
    if stream:
        with client.responses.stream(**kw) as s:
            usage = s.get_final_response().usage
    else:
        usage = client.responses.create(**kw).usage
    assert usage is not None
    # The same prompt as on chat completions: the same tokens, all but the last block cached.
    assert usage.input_tokens == reference.prompt_tokens
    assert usage.input_tokens_details.cached_tokens > 0
    assert usage.input_tokens - 16 <= usage.input_tokens_details.cached_tokens < usage.input_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_cache_reads_reach_anthropic_clients(
    proxy_server: ProxyServer, client: openai.OpenAI, stream: bool
) -> None:
    text = _prompt()
    _oai_usage(client, text, stream=False)  # fills the cache
    reference = _oai_usage(client, text, stream=False)
    prompt, cached = reference.prompt_tokens, reference.prompt_tokens_details.cached_tokens
    assert cached > 0
    kw: dict[str, Any] = {
        "model": "claude-proxy-test",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    }
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="x", max_retries=0) as ant:
        if stream:
            with ant.messages.stream(**kw) as s:
                usage = s.get_final_message().usage
        else:
            usage = ant.messages.create(**kw).usage
    # Anthropic counts cache reads apart from input_tokens.
    assert usage.cache_read_input_tokens == cached
    assert usage.input_tokens == prompt - cached
    assert usage.cache_creation_input_tokens == 0


def test_cached_tokens_are_counted_in_metrics(
    proxy_server: ProxyServer, client: openai.OpenAI, sim: SimServer
) -> None:
    def cached_total() -> float:
        text = httpx.get(proxy_server.url + "/metrics").text
        return metric(text, "minimax_proxy_tokens_total", type="cached", key="-")

    text = _prompt()
    _oai_usage(client, text, stream=False)
    before = cached_total()
    cached = _oai_usage(client, text, stream=True).prompt_tokens_details.cached_tokens
    assert cached > 0
    deadline = time.monotonic() + 5  # the stream's record is made just after its last bytes
    while cached_total() - before < cached and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cached_total() - before == cached
