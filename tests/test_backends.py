"""The backend-mode matrix: every API × every way a real server sends MiniMax-M2's output.

A tool round trip (question → thinking + tool call → tool result → answer) through
the real SDK, streamed and not, against the simulated backend in each of its modes
(``proxy/sim/modes.py``). Wherever the proxy parses, the result must be the same as
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
import httpx
import openai
import pytest

from proxy.sim import SimServer, start_sim
from tests.servers import Background, ProxyServer, settings_for
from tests.test_openai import collect
from tests.test_operations import metric

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


# ---------------------------------------------------------------------------- OpenAI Responses


def _responses_turn(c: openai.OpenAI, items: list[Any], stream: bool) -> Any:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": SCHEMA}]
    kw: dict[str, Any] = {"model": "minimax-m2", "input": items, "tools": tools}
    if not stream:
        return c.responses.create(**kw)
    with c.responses.stream(**kw) as events:
        return events.get_final_response()


def responses_trip(url: str, stream: bool) -> Trip:
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        items: list[Any] = [{"role": "user", "content": QUESTION}]
        first = _responses_turn(c, items, stream)
        calls = [o for o in first.output if o.type == "function_call"]
        items += [o.model_dump(exclude_none=True) for o in first.output]
        for k in calls:
            output = tool_result(k.name, json.loads(k.arguments))
            items.append({"type": "function_call_output", "call_id": k.call_id, "output": output})
        second = _responses_turn(c, items, stream)
    reasoning = "".join(p.text for o in first.output if o.type == "reasoning" for p in o.summary)
    stop = "tool_calls" if calls else first.status
    parsed = [(k.name, json.loads(k.arguments)) for k in calls]
    return Trip(reasoning, first.output_text, parsed, stop, second.output_text)


APIS: dict[str, Callable[[str, bool], Trip]] = {
    "chat": chat_trip,
    "messages": messages_trip,
    "responses": responses_trip,
}


# ---------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    mode: str  # the simulated server's manners (SimOptions.mode)
    env: dict[str, str] = field(default_factory=dict)  # proxy settings
    proxy_parses: bool = True  # False: the backend's own tool parser, passed through
    tool_choice: str | None = None  # what backend requests with tools must carry
    sim: dict[str, Any] = field(default_factory=dict)  # other SimOptions


BACKENDS = {
    "tabby": Backend("tabby"),
    "vllm (stock, auto-detected)": Backend("vllm", tool_choice="none"),
    "vllm-parsers, tool choice none": Backend(
        "vllm-parsers", {"BACKEND_TOOL_CHOICE": "none"}, tool_choice="none"
    ),
    "older vllm-parsers (reasoning_content), tool choice none": Backend(
        "vllm-parsers",
        {"BACKEND_TOOL_CHOICE": "none"},
        tool_choice="none",
        sim={"reasoning_field": "reasoning_content"},
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
        key = f"{backend.mode} {backend.sim}"
        if key not in sims:
            sims[key] = bg.run(start_sim(mode=backend.mode, **backend.sim))
        sim = sims[key]
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


# ---------------------------------------------------------------------------- BACKEND_TOOL_CHOICE

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]


def _ask(text: str = QUESTION, **kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], "tools": TOOLS, **kw}


def _sent(sim: SimServer) -> list[tuple[int | None, Any]]:
    """(status, tool_choice or "-" when absent) of each chat request the backend saw."""
    return [
        (r.status, r.body.get("tool_choice", "-"))
        for r in sim.requests
        if r.path == "/v1/chat/completions"
    ]


@pytest.fixture
def vllm(bg: Background) -> Iterator[SimServer]:
    server = bg.run(start_sim(mode="vllm"))
    yield server
    bg.run(server.close())


def test_auto_detect_retries_before_the_first_byte(
    make_proxy: Any, vllm: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy(vllm.url)
    assert httpx.get(proxy.url + "/ready").json()["backend_tool_choice"] == "omit"
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as c:
        got = collect(c.chat.completions.create(**_ask(), stream=True))
        assert got["finish_reason"] == "tool_calls" and got["calls"][0]["name"] == "get_weather"
        assert got["chunks"][0].choices[0].delta.role == "assistant"
        # The refusal happened once; from then on the backend gets "none" at once.
        assert _sent(vllm) == [(400, "-"), (200, "none")]
        c.chat.completions.create(**_ask("again"))
        c.chat.completions.create(**_ask("no tools", tools=None))
    assert _sent(vllm)[2:] == [(200, "none"), (200, "-")]
    with anthropic.Anthropic(base_url=proxy.url, api_key="x", max_retries=0) as a:
        tools = [{"name": "get_weather", "input_schema": SCHEMA}]
        with a.messages.stream(model="m", max_tokens=4096, tools=tools,
                               messages=[{"role": "user", "content": QUESTION}]) as s:  # fmt: skip
            assert s.get_final_message().stop_reason == "tool_use"
    assert _sent(vllm)[-1] == (200, "none")
    switched = [r for r in caplog.records if "sending tool_choice" in r.getMessage()]
    assert len(switched) == 1, "logged once"
    ready = httpx.get(proxy.url + "/ready").json()
    assert ready["backend_tool_choice"] == "none"
    assert ready["backend_tool_choice_setting"] == "auto-detect"
    text = httpx.get(proxy.url + "/metrics").text
    assert metric(text, "minimax_proxy_backend_tool_choice", mode="none") == 1
    assert metric(text, "minimax_proxy_backend_tool_choice", mode="omit") == 0


def test_omit_reports_the_refusal_with_the_setting_to_change(
    make_proxy: Any, vllm: SimServer
) -> None:
    proxy = make_proxy(vllm.url, BACKEND_TOOL_CHOICE="omit")
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(**_ask(), stream=True)
    err = info.value.body
    assert isinstance(err, dict) and err["code"] == "backend_tool_choice"
    assert "enable-auto-tool-choice" in err["message"] and "BACKEND_TOOL_CHOICE" in err["message"]
    r = httpx.post(proxy.url + "/v1/messages", json={
        "model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "input_schema": SCHEMA}]})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert _sent(vllm) == [(400, "-"), (400, "-")], "never retried"
    assert httpx.get(proxy.url + "/ready").json()["backend_tool_choice"] == "omit"


def test_none_is_sent_with_tools_only(make_proxy: Any, sim: SimServer) -> None:
    proxy = make_proxy(BACKEND_TOOL_CHOICE="none")
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as c:
        c.chat.completions.create(**_ask())
        c.chat.completions.create(**_ask("plain", tools=None))
        c.chat.completions.create(**_ask("no tools wanted", tool_choice="none"))
    assert _sent(sim) == [(200, "none"), (200, "-"), (200, "-")]
    assert "tools" not in sim.requests[-1].body  # the client's "none": no tools offered


def test_client_tool_choice_keeps_its_meaning(make_proxy: Any, vllm: SimServer) -> None:
    proxy = make_proxy(vllm.url)
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as c:
        one = c.chat.completions.create(**_ask("do these in parallel", parallel_tool_calls=False))
        assert len(one.choices[0].message.tool_calls or []) == 1
        c.chat.completions.create(**_ask(tool_choice="required"))
    hinted = vllm.requests[-1].body
    assert hinted["tool_choice"] == "none" and "You must respond by calling" in json.dumps(hinted)


def test_other_backend_errors_are_not_retried(make_proxy: Any, vllm: SimServer) -> None:
    proxy = make_proxy(vllm.url)
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(**_ask("SIM_FAULT:http400_context"))
    assert _sent(vllm) == [(400, "-")]
    assert httpx.get(proxy.url + "/ready").json()["backend_tool_choice"] == "omit"
