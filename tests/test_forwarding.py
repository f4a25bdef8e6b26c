"""Backend sampling options: forwarded as given, refused or dropped only where they would break."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import openai
import pytest

from proxy.app import create_app
from proxy.config import ConfigError
from proxy.sim import SimServer
from tests.servers import ProxyServer, settings_for

ASK = {"model": "minimax-m2", "messages": [{"role": "user", "content": "Say hello"}]}


def _chat_body(sim: SimServer) -> dict[str, Any]:
    body: dict[str, Any] = [r for r in sim.requests if r.path == "/v1/chat/completions"][-1].body
    return body


def test_ignore_eos_fixes_the_output_length(client: openai.OpenAI, sim: SimServer) -> None:
    extra = {"ignore_eos": True, "chat_template_kwargs": {"enable_thinking": True}}
    r = client.chat.completions.create(**ASK, max_completion_tokens=300, extra_body=extra)
    body = _chat_body(sim)
    assert body["ignore_eos"] is True and body["chat_template_kwargs"] == {"enable_thinking": True}
    assert r.usage.completion_tokens == 300 and r.choices[0].finish_reason == "length"


def test_min_tokens_reaches_the_backend(client: openai.OpenAI, sim: SimServer) -> None:
    stream = client.chat.completions.create(
        **ASK,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"min_tokens": 400, "stop_token_ids": [200020], "top_k": 20, "min_p": 0.05},
    )
    chunks = list(stream)
    body = _chat_body(sim)
    assert (body["min_tokens"], body["stop_token_ids"], body["top_k"], body["min_p"]) == (
        400,
        [200020],
        20,
        0.05,
    )
    assert chunks[-1].usage.completion_tokens >= 400
    assert "n" not in body and "echo" not in body


def test_anthropic_forwards_sampling_options_but_not_logprobs(
    proxy_server: ProxyServer, sim: SimServer
) -> None:
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="x", max_retries=0) as ant:
        ant.messages.create(
            model="claude-proxy-test",
            max_tokens=200,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={
                "top_k": 30,
                "ignore_eos": True,
                "repetition_penalty": 1.05,
                "logprobs": True,
            },
        )
    body = _chat_body(sim)
    assert body["top_k"] == 30 and body["ignore_eos"] is True
    assert body["repetition_penalty"] == 1.05 and "logprobs" not in body


@pytest.mark.parametrize("option", [{"best_of": 2}, {"use_beam_search": True}, {"n": 3}])
def test_several_sequences_are_refused(client: openai.OpenAI, option: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**ASK, extra_body=option)
    error = info.value.response.json()["error"]
    assert error["param"] == next(iter(option)) and "one" in error["message"]


def test_several_sequences_are_refused_on_anthropic(proxy_server: ProxyServer) -> None:
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="x", max_retries=0) as ant:
        with pytest.raises(anthropic.BadRequestError) as info:
            ant.messages.create(
                model="m",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"best_of": 4},
            )
    assert info.value.response.json()["error"]["type"] == "invalid_request_error"


def test_options_that_would_break_parsing_are_dropped_with_a_log_line(
    client: openai.OpenAI, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    r = client.chat.completions.create(
        **ASK, extra_body={"echo": True, "add_generation_prompt": True}
    )
    assert r.choices[0].message.content
    assert "echo" not in _chat_body(sim) and "add_generation_prompt" not in _chat_body(sim)
    dropped = [m for m in caplog.messages if m.startswith("dropped the option")]
    assert dropped == ["dropped the option echo: it would put the prompt into the output the "
                       "parser reads"]  # fmt: skip


def test_forward_options_setting_adds_names(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(FORWARD_OPTIONS="my_sampler, other")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        c.chat.completions.create(**ASK, extra_body={"my_sampler": {"a": 1}, "unlisted": 2})
    body = _chat_body(sim)
    assert body["my_sampler"] == {"a": 1} and "unlisted" not in body


@pytest.mark.parametrize("name", ["echo", "stream", "n"])
def test_forward_options_cannot_name_what_the_proxy_owns(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^FORWARD_OPTIONS=.*{name} is set, refused"):
        create_app(settings_for("http://127.0.0.1:9", {"FORWARD_OPTIONS": name}))


def test_logprobs_pass_through_per_chunk(client: openai.OpenAI, sim: SimServer) -> None:
    stream = client.chat.completions.create(
        **ASK, stream=True, logprobs=True, top_logprobs=2, extra_body={"reasoning_split": True}
    )
    tokens = []
    for chunk in stream:
        logprobs = chunk.choices[0].logprobs if chunk.choices else None
        if logprobs is not None:
            for entry in logprobs.content:
                assert len(entry.top_logprobs) == 2
                tokens.append(entry.token)
    body = _chat_body(sim)
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    # They describe the raw tokens, reasoning and markup included.
    assert "".join(tokens) == sim.requests[-1].raw and "</think>" in "".join(tokens)


def test_logprobs_in_a_buffered_response(client: openai.OpenAI, sim: SimServer) -> None:
    r = client.chat.completions.create(**ASK, logprobs=True)
    tokens = [entry.token for entry in r.choices[0].logprobs.content]
    assert "".join(tokens) == sim.requests[-1].raw
    assert client.chat.completions.create(**ASK).choices[0].logprobs is None
