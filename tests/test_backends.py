"""The backend-mode matrix: every API × every way a real server sends MiniMax-M2's output.

A tool round trip (question → thinking + tool call → tool result → answer) through
the real SDK, streamed and not, against the simulated backend in each of its modes
(``proxy/sim_modes.py``). Wherever the proxy parses, the result must be the same as
from a raw backend, character for character; where the backend parses, the calls and
the answer must be.

To add an API: write ``<api>_trip(url, stream) -> Trip`` and add it to ``APIS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest

from proxy.sim import SimServer, start_sim
from tests.servers import Background, ProxyServer, settings_for
from tests.test_openai import collect

QUESTION = "What is the weather in Paris for the next few days?"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}


@dataclass(frozen=True)
class Trip:
    """What a client got from one tool round trip, in API-neutral terms."""

    reasoning: str  # the first turn's thinking
    text: str  # its visible text
    calls: list[tuple[str, dict[str, Any]]]  # its tool calls (name, arguments)
    stop: str  # its stop reason, as the API names it
    answer: str  # the second turn's visible text


def tool_result(name: str, args: dict[str, Any]) -> str:
    return f"{args.get('city', '?')}: 18 degrees, light rain ({name})"


# ---------------------------------------------------------------------------- OpenAI chat


def _chat_turn(c: openai.OpenAI, messages: list[Any], stream: bool) -> dict[str, Any]:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    kw: dict[str, Any] = {"model": "minimax-m2", "messages": messages, "tools": tools}
    kw["extra_body"] = {"reasoning_split": True}
    if stream:
        got = collect(c.chat.completions.create(**kw, stream=True))
        calls = [got["calls"][i] for i in sorted(got["calls"])]
        return {"reasoning": got["reasoning"], "text": got["content"], "calls": calls,
                "stop": got["finish_reason"]}  # fmt: skip
    choice = c.chat.completions.create(**kw).choices[0]
    msg = choice.message
    calls = [
        {"id": t.id, "name": t.function.name, "arguments": t.function.arguments}
        for t in msg.tool_calls or []
    ]
    return {"reasoning": (msg.model_extra or {}).get("reasoning_content") or "",
            "text": msg.content or "", "calls": calls, "stop": choice.finish_reason}  # fmt: skip


def chat_trip(url: str, stream: bool) -> Trip:
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        first = _chat_turn(c, messages, stream)
        calls = [(k["name"], json.loads(k["arguments"])) for k in first["calls"]]
        messages.append({
            "role": "assistant", "content": first["text"],
            "reasoning_content": first["reasoning"],
            "tool_calls": [{"id": k["id"], "type": "function",
                            "function": {"name": k["name"], "arguments": k["arguments"]}}
                           for k in first["calls"]],
        })  # fmt: skip
        for k, (name, args) in zip(first["calls"], calls, strict=True):
            messages.append(
                {"role": "tool", "tool_call_id": k["id"], "content": tool_result(name, args)}
            )
        second = _chat_turn(c, messages, stream)
    return Trip(first["reasoning"], first["text"], calls, first["stop"], second["text"])


# ---------------------------------------------------------------------------- Anthropic


def _messages_turn(c: anthropic.Anthropic, messages: list[Any], stream: bool) -> Any:
    tools = [{"name": "get_weather", "input_schema": SCHEMA}]
    kw: dict[str, Any] = {"model": "claude-x", "max_tokens": 4096, "messages": messages}
    if stream:
        with c.messages.stream(**kw, tools=tools) as s:
            return s.get_final_message()
    return c.messages.create(**kw, tools=tools)


def messages_trip(url: str, stream: bool) -> Trip:
    with anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as c:
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        first = _messages_turn(c, messages, stream)
        blocks = [b.model_dump(exclude_none=True) for b in first.content]
        messages.append({"role": "assistant", "content": blocks})
        uses = [b for b in first.content if b.type == "tool_use"]
        results = [{"type": "tool_result", "tool_use_id": u.id,
                    "content": tool_result(u.name, u.input)} for u in uses]  # fmt: skip
        messages.append({"role": "user", "content": results})
        second = _messages_turn(c, messages, stream)

    def text(message: Any, kind: str) -> str:
        return "".join(getattr(b, kind) for b in message.content if b.type == kind)

    return Trip(
        text(first, "thinking"),
        text(first, "text"),
        [(u.name, u.input) for u in uses],
        first.stop_reason,
        text(second, "text"),
    )


APIS: dict[str, Callable[[str, bool], Trip]] = {"chat": chat_trip, "messages": messages_trip}


# ---------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    mode: str  # the simulated server's manners (SimOptions.mode)
    env: dict[str, str] = field(default_factory=dict)  # proxy settings
    proxy_parses: bool = True  # False: the backend's own tool parser, passed through
    tool_choice: str | None = None  # what backend requests with tools must carry


BACKENDS = {
    "tabby": Backend("tabby"),
    "vllm (stock, auto-detected)": Backend("vllm", tool_choice="none"),
    "vllm-parsers, tool choice none": Backend(
        "vllm-parsers", {"BACKEND_TOOL_CHOICE": "none"}, tool_choice="none"
    ),
    "vllm-append-think, tool choice none": Backend(
        "vllm-append-think", {"BACKEND_TOOL_CHOICE": "none"}, tool_choice="none"
    ),
    "sglang": Backend("sglang"),
    "vllm-parsers (passed through)": Backend("vllm-parsers", proxy_parses=False),
    "vllm-append-think (passed through)": Backend("vllm-append-think", proxy_parses=False),
}


@pytest.fixture(scope="module")
def servers(bg: Background) -> Iterator[Callable[[str, Backend], tuple[SimServer, ProxyServer]]]:
    """A simulated server per mode and a proxy per backend, started when first needed."""
    sims: dict[str, SimServer] = {}
    proxies: dict[str, ProxyServer] = {}

    def get(name: str, backend: Backend) -> tuple[SimServer, ProxyServer]:
        if backend.mode not in sims:
            sims[backend.mode] = bg.run(start_sim(mode=backend.mode))
        sim = sims[backend.mode]
        if name not in proxies:
            proxies[name] = bg.run(ProxyServer(settings_for(sim.url, backend.env)).start())
        sim.reset()
        return sim, proxies[name]

    yield get
    for p in proxies.values():
        bg.run(p.stop())
    for s in sims.values():
        bg.run(s.close())


_reference: dict[tuple[str, bool], Trip] = {}


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
@pytest.mark.parametrize("api", list(APIS))
@pytest.mark.parametrize("name", list(BACKENDS))
def test_tool_round_trip(servers: Any, name: str, api: str, stream: bool) -> None:
    backend = BACKENDS[name]
    if (api, stream) not in _reference:  # a raw backend's result: what every mode must give
        _, raw_proxy = servers("tabby", BACKENDS["tabby"])
        _reference[api, stream] = APIS[api](raw_proxy.url, stream)
    expected = _reference[api, stream]
    sim, proxy = servers(name, backend)
    got = APIS[api](proxy.url, stream)

    planned = [r for r in sim.requests if r.path == "/v1/chat/completions" and r.status == 200]
    assert len(planned) == 2 and planned[0].tool_calls, "the model called the tool, then answered"
    assert [(c["name"], c["arguments"]) for c in planned[0].tool_calls] == got.calls
    for rec in planned:
        assert rec.body.get("tool_choice") == backend.tool_choice
    assert planned[1].body["messages"][-1]["role"] == "tool"
    if backend.proxy_parses:
        assert got == expected
    else:
        assert (got.calls, got.stop, got.answer) == (expected.calls, expected.stop, expected.answer)
        assert got.reasoning == expected.reasoning and got.text.strip() == expected.text.strip()
    assert "<" not in got.text + got.answer, "no markup leaks"
    assert got.reasoning.strip() and "think>" not in got.reasoning
