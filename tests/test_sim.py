"""Tests for proxy.sim, the simulated MiniMax-M2 backend, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.sim import FAULTS, RequestRecord, SimOptions, SimServer, start_sim
from proxy.sse import SSEDecoder

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "ratio": {"type": "number"},
                "unit": {"enum": ["c", "f"]},
                "detail": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "note": {"type": ["string", "null"]},
                "code": {"anyOf": [{"type": "null"}, {"type": "string"}]},
            },
        },
    },
}


def tool(name: str, **props: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": props}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


SEARCH = tool("search", query={"type": "string"}, limit={"type": "integer"})
CLOCK = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}
NUMBERS = tool("add", a={"type": "integer"}, b={"type": "number"})


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with await start_sim(stall_seconds=0.3) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


class Stream:
    """A finished streamed response, decoded with the proxy's own SSE decoder."""

    def __init__(self, status: int, raw: bytes) -> None:
        self.status, self.raw = status, raw
        decoder = SSEDecoder()
        self.events = [e.data for e in decoder.feed(raw) + decoder.close()]
        self.chunks = [json.loads(d) for d in self.events if d.startswith('{"')]
        self.deltas = [
            c["choices"][0]["delta"]["content"]
            for c in self.chunks
            if c.get("choices") and "content" in c["choices"][0]["delta"]
        ]
        self.content = "".join(self.deltas)


async def stream(
    http: aiohttp.ClientSession, sim: SimServer, messages: list[Any], **body: Any
) -> Stream:
    payload = {"model": "any", "messages": messages, "stream": True, **body}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        return Stream(resp.status, await resp.read())


async def complete(
    http: aiohttp.ClientSession, sim: SimServer, messages: list[Any], **body: Any
) -> tuple[int, Any]:
    payload = {"model": "any", "messages": messages, **body}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        return resp.status, await resp.json(content_type=None)


def parse_calls(raw: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Read MiniMax tool-call XML back, typing values by schema (strings verbatim)."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    blocks = re.findall(r"<minimax:tool_call>\n(.*?)</minimax:tool_call>", raw, re.S)
    assert len(blocks) <= 1
    calls = []
    for name, inner in re.findall(
        r'<invoke name="([^"]+)">\n(.*?)</invoke>\n', "".join(blocks), re.S
    ):
        props = schemas[name].get("properties", {})
        args = {}
        value_re = r'<parameter name="([^"]+)">(.*?)</parameter>\n(?=<parameter name=|$)'
        for key, text in re.findall(value_re, inner, re.S):
            kind = props[key].get("type")
            is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
            is_string |= any(b.get("type") == "string" for b in props[key].get("anyOf", []))
            is_string |= all(isinstance(v, str) for v in props[key].get("enum", [0]))
            args[key] = text if is_string else json.loads(text)
        calls.append({"name": name, "arguments": args})
    return calls


def assert_shape(s: Stream, rec: RequestRecord, finish: str = "stop") -> None:
    assert s.status == 200
    assert s.events[-1] == "[DONE]"
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in s.chunks} == {
        (rec.response_id, "chat.completion.chunk", int(rec.received_at), "MiniMax-M2")
    }
    assert s.chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in s.chunks[1:])
    last = s.chunks[-1]["choices"][0]
    assert last == {"index": 0, "delta": {}, "finish_reason": finish}
    assert all(c["choices"][0]["finish_reason"] is None for c in s.chunks[:-1])
    assert s.content == rec.raw and rec.outcome == "completed"
    raw = rec.raw
    assert "<think>" not in raw and raw.count("</think>") == 1
    assert raw.index("</think>\n\n") > 20  # reasoning comes first


# ------------------------------------------------------------------------------ reply rules


async def test_plain_answer(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("What is the capital of France?"))
    rec = sim.requests[-1]
    assert_shape(s, rec)
    assert "minimax:tool_call" not in rec.raw and rec.tool_calls == []
    assert all(len(d) <= 4 for d in s.deltas) and len(s.deltas) == -(-len(rec.raw) // 4)
    assert 'answer about "What is the capital of France?"' in rec.raw


async def test_tool_call_values_round_trip(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("weather in Paris?"), tools=[WEATHER, SEARCH])
    rec = sim.requests[-1]
    assert_shape(s, rec)
    _, _, after = rec.raw.partition("</think>\n\n")
    text, _, xml = after.partition("<minimax:tool_call>\n")
    assert text.strip() and xml.endswith("</invoke>\n</minimax:tool_call>")
    assert xml.startswith('<invoke name="get_weather">\n<parameter name="city">')
    assert parse_calls(rec.raw, [WEATHER]) == rec.tool_calls
    (call,) = rec.tool_calls
    args = call["arguments"]
    assert set(args) == set(WEATHER["function"]["parameters"]["properties"])  # type: ignore[index]
    assert isinstance(args["city"], str) and isinstance(args["note"], str)
    assert isinstance(args["days"], int) and 1 <= args["days"] <= 7
    assert isinstance(args["ratio"], float) and isinstance(args["detail"], bool)
    assert args["unit"] in ("c", "f") and isinstance(args["tags"], list)
    assert isinstance(args["where"]["lat"], float) and isinstance(args["code"], str)


async def test_named_tool_choice_and_none(sim: SimServer, http: aiohttp.ClientSession) -> None:
    named = {"type": "function", "function": {"name": "search"}}
    await stream(http, sim, user("find it"), tools=[WEATHER, SEARCH], tool_choice=named)
    assert [c["name"] for c in sim.requests[-1].tool_calls] == ["search"]
    bare = {"type": "function", "function": {"name": "bare"}}  # no parameters schema at all
    await stream(
        http, sim, user("now"), tools=[WEATHER, bare], tool_choice={"function": bare["function"]}
    )
    assert sim.requests[-1].tool_calls == [{"name": "bare", "arguments": {}}]
    assert '<invoke name="bare">\n</invoke>' in sim.requests[-1].raw
    await stream(http, sim, user("find it"), tools=[WEATHER], tool_choice="none")
    assert sim.requests[-1].tool_calls == [] and "<minimax" not in sim.requests[-1].raw


async def test_parallel_calls(sim: SimServer, http: aiohttp.ClientSession) -> None:
    tools = [SEARCH, CLOCK, NUMBERS, WEATHER]
    s = await stream(http, sim, user("do these in parallel"), tools=tools)
    rec = sim.requests[-1]
    assert_shape(s, rec)
    assert [c["name"] for c in rec.tool_calls] == ["search", "clock", "add"]
    assert rec.raw.count("<minimax:tool_call>") == 1 and rec.raw.count("<invoke ") == 3
    assert parse_calls(rec.raw, tools) == rec.tool_calls
    assert rec.tool_calls[1]["arguments"] == {}  # a tool without properties: no parameters
    await stream(http, sim, user("Parallel, please"), tools=[NUMBERS])
    calls = sim.requests[-1].tool_calls
    assert [c["name"] for c in calls] == ["add"] * 3
    assert len({json.dumps(c["arguments"]) for c in calls}) == 3


async def test_long_tool_call(sim: SimServer, http: aiohttp.ClientSession) -> None:
    write = tool("write", path={"type": "string"}, n={"type": "integer"})
    s = await stream(http, sim, user("write a long file, in parallel"), tools=[write])
    rec = sim.requests[-1]
    assert_shape(s, rec)
    assert 1_800 <= len(s.deltas) <= 2_400  # ~2,000 tokens
    assert parse_calls(rec.raw, [write]) == rec.tool_calls and len(rec.tool_calls) == 3
    code = rec.tool_calls[0]["arguments"]["path"]
    assert code.count("\n") > 50
    for needle in ("<div", "</div>", '"', "'", "\\", '"</parameter>" ends'):
        assert needle in code


async def test_long_plain_answer(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("give me a long answer"))
    assert_shape(s, sim.requests[-1])
    assert 1_800 <= len(s.deltas) <= 2_400 and "```python\n" in s.content


async def test_tool_result_turn(sim: SimServer, http: aiohttp.ClientSession) -> None:
    result = "Sunny, 25 °C in 東京 with a light breeze from the south-east all day"
    messages = [
        *user("weather?"),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": result}]},
    ]
    s = await stream(http, sim, messages, tools=[WEATHER])
    rec = sim.requests[-1]
    assert_shape(s, rec)
    assert rec.tool_calls == [] and f'"{result[:40]}"' in rec.raw.partition("</think>")[2]


BASH = {"type": "function", "function": {"name": "Bash", "parameters": {
    "type": "object", "required": ["command", "description", "sandbox"], "properties": {
        "command": {"type": "string"}, "description": {"type": "string"},
        "sandbox": {"type": "boolean"}, "timeout": {"type": "integer"}}}}}  # fmt: skip
RUN_COMMANDS = tool("run_commands", commands={"type": "array", "items": {"type": "string"}})
ARGV_SHELL = tool("shell", command={"type": "array", "items": {"type": "string"}})


@pytest.mark.parametrize(
    ("shell", "arguments"),
    [
        (BASH, {"command": "ls -la", "description": "description-", "sandbox": False}),
        (RUN_COMMANDS, {"commands": ["ls -la"]}),
        (ARGV_SHELL, {"command": ["bash", "-lc", "ls -la"]}),
    ],
)
async def test_agents_shell_tool_runs_the_asked_command(
    sim: SimServer, http: aiohttp.ClientSession, shell: dict[str, Any], arguments: dict[str, Any]
) -> None:
    """An agent's shell tool gets "run `cmd`" verbatim; required booleans false, optionals out."""
    tools = [WEATHER, shell]
    s = await stream(http, sim, user("Please run `ls -la` (a long, parallel task)"), tools=tools)
    rec = sim.requests[-1]
    assert_shape(s, rec)
    [call] = rec.tool_calls
    name = shell["function"]["name"]
    assert call["name"] == name and parse_calls(rec.raw, tools) == [call]
    assert {k: v[:12] if isinstance(v, str) else v for k, v in call["arguments"].items()} == {
        k: v[:12] if isinstance(v, str) else v for k, v in arguments.items()
    }
    output = {"role": "tool", "tool_call_id": "c1", "content": "done; now run `echo submit`"}
    call_1 = {"id": "c1", "type": "function", "function": {"name": name, "arguments": "{}"}}
    called = {"role": "assistant", "content": "", "tool_calls": [call_1]}
    await stream(http, sim, [*user("Please run `ls -la`"), called, output], tools=tools)
    [follow] = sim.requests[-1].tool_calls  # the output asked for one more command
    assert "echo submit" in json.dumps(follow["arguments"])
    await stream(http, sim, user("Please run `ls -la`"), tools=[WEATHER])  # no shell tool
    assert sim.requests[-1].tool_calls[0]["name"] == "get_weather"


async def test_replies_are_deterministic(sim: SimServer, http: aiohttp.ClientSession) -> None:
    for text in ("one", "one", "two"):
        await stream(http, sim, user(text), tools=[WEATHER])
    a, b, c = sim.requests
    assert a.raw == b.raw and a.tool_calls == b.tool_calls and a.raw != c.raw


async def test_non_streaming(sim: SimServer, http: aiohttp.ClientSession) -> None:
    status, body = await complete(http, sim, user("hi"), tools=[SEARCH])
    rec = sim.requests[-1]
    assert status == 200 and body["object"] == "chat.completion" and body["id"] == rec.response_id
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": rec.raw}
    assert choice["finish_reason"] == "stop" and "<minimax:tool_call>" in rec.raw
    usage = body["usage"]
    assert usage["completion_tokens"] == -(-len(rec.raw) // 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    status, body = await complete(http, sim, user("hi"), max_tokens=5)
    assert body["choices"][0]["finish_reason"] == "length"
    assert len(body["choices"][0]["message"]["content"]) == 20


async def test_include_usage(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("hi"), stream_options={"include_usage": True})
    *_, finish, usage_chunk = s.chunks
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == [] and usage_chunk["id"] == finish["id"]
    assert usage_chunk["usage"]["completion_tokens"] == len(s.deltas)
    plain = await stream(http, sim, user("hi"))
    assert all(c["choices"] for c in plain.chunks)


async def test_script_is_streamed_exactly(sim: SimServer, http: aiohttp.ClientSession) -> None:
    raw = "think 🤔 hard</think>\n\n<minimax:tool_call>\n<invoke name="
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    script = {"raw": raw, "chunks": [1, 2, 0, 9], "finish_reason": "length", "usage": usage}
    text = f"ignored words SIM_SCRIPT: {json.dumps(script)} SIM_TOKEN_CHARS:5"
    s = await stream(http, sim, user(text), stream_options={"include_usage": True})
    rest = raw[12:]
    assert s.deltas == [
        "t",
        "hi",
        "",
        "nk 🤔 hard",
        *(rest[i : i + 5] for i in range(0, len(rest), 5)),
    ]
    assert s.chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert s.chunks[-1]["usage"] == script["usage"]
    # A script in an earlier turn does not replay after a tool result.
    follow = [*user(text), {"role": "tool", "content": "42"}]
    await stream(http, sim, follow)
    assert sim.requests[-1].raw.endswith('The tool returned: "42". That settles it.')


# ------------------------------------------------------------------------------ other endpoints


async def test_models_health_and_tokenizers(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.url}/v1/models") as resp:
        assert (await resp.json())["data"][0]["id"] == "MiniMax-M2"
    async with http.get(f"{sim.url}/health") as resp:
        assert await resp.json() == {"status": "healthy", "issues": []}
    async with http.post(f"{sim.url}/tokenize", json={"model": "m", "prompt": "x" * 10}) as resp:
        tokenized = await resp.json()
    assert tokenized["count"] == len(tokenized["tokens"]) == 3
    assert tokenized["max_model_len"] == 196_608
    body: dict[str, Any] = {"model": "m", "messages": user("hello"), "tools": [CLOCK]}
    async with http.post(f"{sim.url}/tokenize", json=body) as resp:
        count = (await resp.json())["count"]
    async with http.post(f"{sim.url}/v1/token/encode", json=body) as resp:
        encoded = await resp.json()
    assert encoded["length"] == count == len(encoded["tokens"]) > 5
    _, completion = await complete(http, sim, body["messages"], tools=[CLOCK])
    assert completion["usage"]["prompt_tokens"] == count
    async with http.post(f"{sim.url}/v1/token/encode", json={"text": "abcdefghi"}) as resp:
        assert (await resp.json())["length"] == 3


async def test_request_log_and_reset(sim: SimServer, http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": "Bearer secret", "x-api-key": "secret", "X-Trace": "t1"}
    async with http.post(
        f"{sim.url}/v1/chat/completions", json={"messages": user("hi")}, headers=headers
    ) as resp:
        await resp.read()
    async with http.get(f"{sim.url}/_sim/requests") as resp:
        (logged,) = await resp.json()
    assert logged["body"] == {"messages": user("hi")} and logged["path"] == "/v1/chat/completions"
    assert logged["headers"]["Authorization"] == logged["headers"]["x-api-key"] == "<redacted>"
    assert logged["headers"]["X-Trace"] == "t1" and "secret" not in json.dumps(logged)
    assert logged["outcome"] == "completed" and logged["status"] == 200
    async with http.post(f"{sim.url}/_sim/reset") as resp:
        assert resp.status == 200
    assert sim.requests == []


async def test_bad_requests(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.url}/v1/chat/completions", data=b"{oops") as resp:
        assert resp.status == 422 and "detail" in await resp.json()
    status, body = await complete(http, sim, user("SIM_RATE:fast"))
    assert status == 400 and body["error"]["message"].startswith("bad SIM_ directive")
    status, body = await complete(http, sim, user("SIM_FAULT:nope"))
    assert status == 400 and "unknown fault 'nope'" in body["error"]["message"]
    status, body = await complete(http, sim, user('SIM_SCRIPT: {"chunks": [1]}'))
    assert status == 400 and "SIM_SCRIPT needs" in body["error"]["message"]


# ------------------------------------------------------------------------------ options


async def test_token_chars_rate_and_crlf(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("hi SIM_TOKEN_CHARS:2 SIM_CRLF:1"))
    assert all(len(d) <= 2 for d in s.deltas) and s.content == sim.requests[-1].raw
    assert b"\n\n" not in s.raw.replace(b"\r\n", b"") and s.raw.endswith(b"data: [DONE]\r\n\r\n")
    script = json.dumps({"raw": "x" * 30})
    started = time.monotonic()
    await stream(http, sim, user(f"SIM_RATE:100 SIM_TOKEN_CHARS:1 SIM_SCRIPT:{script}"))
    assert time.monotonic() - started >= 0.25  # 30 tokens at 100/s: the first one is not paced


async def test_ttft_with_pings(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("hi SIM_TTFT:0.35 SIM_PING:0.1"))
    assert s.raw.startswith(b": ping - ") and s.raw.count(b": ping - ") in (3, 4)
    assert_shape(s, sim.requests[-1])


async def test_server_wide_fault_and_opt_out() -> None:
    with pytest.raises(ValueError, match=r"^unknown fault 'bogus'"):
        SimOptions(fault="bogus")
    async with await start_sim(fault="http503") as sim, aiohttp.ClientSession() as http:
        assert (await complete(http, sim, user("a")))[0] == 503
        assert (await complete(http, sim, user("b SIM_FAULT:none")))[0] == 200
        sim.options.fault = None
        assert (await complete(http, sim, user("c")))[0] == 200


# ------------------------------------------------------------------------------ faults

HTTP_FAULTS: dict[str, tuple[int, Any]] = {
    "http500": (500, "server_error"),
    "http503": (503, "server_error"),
    "http429": (429, "rate_limit_error"),
    "http400_context": (400, "invalid_request_error"),
    "http422_detail": (422, None),
    "http401": (401, None),
}


@pytest.mark.parametrize("fault", sorted(HTTP_FAULTS))
@pytest.mark.parametrize("streaming", [False, True])
async def test_http_faults(
    sim: SimServer, http: aiohttp.ClientSession, fault: str, streaming: bool
) -> None:
    status, kind = HTTP_FAULTS[fault]
    payload = {"messages": user(f"SIM_FAULT:{fault}"), "stream": streaming}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        body = await resp.json()
        assert resp.status == status and resp.content_type == "application/json"
        assert resp.headers.get("Retry-After") == ("2" if fault == "http429" else None)
    if kind:
        assert body["error"]["type"] == kind and body["error"]["message"]
    if fault == "http400_context":
        assert body["error"]["code"] == "context_length_exceeded"
    if fault == "http422_detail":
        assert list(body) == ["detail"] and isinstance(body["detail"], str)
    if fault == "http401":
        assert body == {"error": "Unauthorized"}
    assert sim.requests[-1].outcome == "error" and sim.requests[-1].status == status


async def test_html500(sim: SimServer, http: aiohttp.ClientSession) -> None:
    payload = {"messages": user("SIM_FAULT:html500"), "stream": True}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        assert resp.status == 500 and resp.content_type == "text/html"
        assert (await resp.text()).startswith("<html>")


async def test_context_overflow_is_real(http: aiohttp.ClientSession) -> None:
    async with await start_sim(max_model_len=10) as sim:
        status, body = await complete(http, sim, user("a prompt longer than forty characters!!"))
        assert status == 400 and body["error"]["code"] == "context_length_exceeded"


async def test_stall_first(sim: SimServer, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    s = await stream(http, sim, user("hi SIM_FAULT:stall_first SIM_STALL:0.3"))
    assert time.monotonic() - started >= 0.3
    assert_shape(s, sim.requests[-1])


async def test_stall_mid_with_pings(sim: SimServer, http: aiohttp.ClientSession) -> None:
    payload = {"messages": user("hi SIM_FAULT:stall_mid SIM_PING:0.1"), "stream": True}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        first = await resp.content.readuntil(b"\n\n")
        started = time.monotonic()
        rest = await resp.read()
    s = Stream(200, first + rest)
    assert time.monotonic() - started >= 0.25
    assert rest.count(b": ping - ") in (2, 3) and rest.index(b": ping") > 0  # tokens, then silence
    assert_shape(s, sim.requests[-1])


async def test_cut_mid(
    sim: SimServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    payload = {"messages": user("hello SIM_FAULT:cut_mid"), "stream": True}
    received = b""
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in resp.content.iter_any():
                received += data
    s = Stream(200, received)
    rec = sim.requests[-1]
    assert rec.outcome == "cut" and s.content == rec.raw[: rec.sent_chars]
    assert 0 < rec.sent_chars < len(rec.raw) and "[DONE]" not in s.events
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_cut_mid_non_streaming(sim: SimServer, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await complete(http, sim, user("hello SIM_FAULT:cut_mid"))
    assert sim.requests[-1].outcome == "cut"


async def test_cut_in_tool(sim: SimServer, http: aiohttp.ClientSession) -> None:
    payload = {"messages": user("SIM_FAULT:cut_in_tool"), "stream": True}  # no tools: a default
    received = b""
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in resp.content.iter_any():
                received += data
    content = Stream(200, received).content
    rec = sim.requests[-1]
    assert rec.tool_calls[0]["name"] == "write_file"
    head, _, value = content.rpartition('<parameter name="path">')
    assert '<invoke name="write_file">' in head and value and "<" not in value
    assert rec.tool_calls[0]["arguments"]["path"].startswith(value)


async def test_bad_sse(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("hi SIM_FAULT:bad_sse"))
    assert b"\ndata {oops\nno colon here\n\n" in s.raw
    assert_shape(s, sim.requests[-1])


async def test_bad_json(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("hi SIM_FAULT:bad_json"))
    assert s.events.count("{not json}") == 1 and s.events.index("{not json}") > 1
    assert_shape(s, sim.requests[-1])
    payload = {"messages": user("hi SIM_FAULT:bad_json")}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        with pytest.raises(ValueError):
            json.loads(await resp.read())


async def test_bad_utf8(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("hi SIM_FAULT:bad_utf8"))
    rec = sim.requests[-1]
    assert s.raw.count(b"\xff") == 1
    at = s.content.index("\ufffd")
    assert s.content[:at] + s.content[at + 1 :] == rec.raw and at > 0
    payload = {"messages": user("hi SIM_FAULT:bad_utf8")}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        raw = await resp.read()
    assert raw.count(b"\xff") == 1
    assert (
        json.loads(raw.decode(errors="replace"))["choices"][0]["message"]["content"][0] == "\ufffd"
    )


async def test_error_event(sim: SimServer, http: aiohttp.ClientSession) -> None:
    s = await stream(http, sim, user("hi SIM_FAULT:error_event"))
    error = json.loads(s.events[-2])
    assert error == {"error": {"message": "simulated generation failure", "type": "server_error"}}
    assert s.events[-1] == "[DONE]" and all(c.get("choices") for c in s.chunks[:-1])
    assert all(c["choices"][0]["finish_reason"] is None for c in s.chunks[:-1])
    assert 0 < len(s.content) < len(sim.requests[-1].raw)


async def test_endless_stream_records_disconnect(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    payload = {"messages": user("SIM_FAULT:endless"), "stream": True}
    received = b""
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        async for data in resp.content.iter_any():
            received += data
            if len(received) > 200_000:
                break
        closed_at = time.time()
        resp.close()
    rec = sim.requests[-1]
    for _ in range(100):
        if rec.outcome != "pending":
            break
        await asyncio.sleep(0.02)
    assert rec.outcome == "client_closed" and rec.ended_at is not None
    assert rec.ended_at >= closed_at - 0.01 and rec.sent_chars > 1_000
    assert rec.stream and rec.fault == "endless"


async def test_disconnect_during_stall_is_noticed_at_once(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    payload = {"messages": user("hi SIM_FAULT:stall_mid SIM_STALL:30"), "stream": True}
    async with http.post(f"{sim.url}/v1/chat/completions", json=payload) as resp:
        await resp.content.readuntil(b"\n\n")
        resp.close()
    for _ in range(100):
        if sim.requests[-1].outcome != "pending":
            break
        await asyncio.sleep(0.02)
    assert sim.requests[-1].outcome == "client_closed"


def test_every_fault_is_tested() -> None:
    tested = {*HTTP_FAULTS, "html500", "stall_first", "stall_mid", "cut_mid", "cut_in_tool"}
    tested |= {"bad_sse", "bad_json", "bad_utf8", "error_event", "endless"}
    assert tested == FAULTS


@contextlib.asynccontextmanager
async def cli_sim(*args: str) -> AsyncIterator[str]:
    """The simulated backend's command line, run with ``args``; yields its chat URL once up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", *args, "--port", str(port)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        proc.terminate()
        await proc.wait()


async def test_cli_main_serves(http: aiohttp.ClientSession) -> None:
    async with cli_sim("proxy.sim", "--fault", "http429") as url:
        async with http.post(url, json={"messages": user("x")}) as resp:
            assert resp.status == 429


# ------------------------------------------------------------------------------ server modes


async def test_vllm_refuses_auto_tools_and_renders_them_for_none(
    http: aiohttp.ClientSession,
) -> None:
    async with await start_sim(mode="vllm") as sim:
        for choice in ({}, {"tool_choice": "auto"}):
            status, body = await complete(http, sim, user("find it"), tools=[SEARCH], **choice)
            assert status == 400 and body["error"]["type"] == "BadRequestError"
            assert body["error"]["message"].startswith('"auto" tool choice requires')
        s = await stream(http, sim, user("find it"), tools=[SEARCH], tool_choice="none")
        assert_shape(s, sim.requests[-1])
        assert [c["name"] for c in sim.requests[-1].tool_calls] == ["search"]  # tools rendered
        assert (await complete(http, sim, user("no tools")))[0] == 200


async def test_vllm_parsers_stream_whole_invokes(http: aiohttp.ClientSession) -> None:
    tools = [SEARCH, CLOCK, NUMBERS]
    async with await start_sim(mode="vllm-parsers") as sim:
        s = await stream(http, sim, user("do these in parallel"), tools=tools)
        rec = sim.requests[-1]
        deltas = [c["choices"][0]["delta"] for c in s.chunks if c["choices"]]
        reasoning = "".join(d.get("reasoning", "") for d in deltas)
        assert reasoning == rec.raw.split("</think>")[0]
        calls = [t for d in deltas for t in d.get("tool_calls", [])]
        assert [c["index"] for c in calls] == [0, 1, 2]  # one delta per invoke, whole
        got = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
               for c in calls]  # fmt: skip
        assert got == rec.tool_calls == parse_calls(rec.raw, tools)
        assert "<" not in "".join(d.get("content", "") for d in deltas)
        assert s.chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
        _, body = await complete(http, sim, user("do these in parallel"), tools=tools)
        msg = body["choices"][0]["message"]
        assert msg["reasoning"] == reasoning and len(msg["tool_calls"]) == 3
        assert body["choices"][0]["finish_reason"] == "tool_calls"
        # tool_choice "none": no tool parser runs; the reasoning parser still does.
        s = await stream(http, sim, user("find it"), tools=tools, tool_choice="none")
        assert "<minimax:tool_call>" in s.content and "</think>" not in s.content
    async with await start_sim(mode="vllm-parsers", reasoning_field="reasoning_content") as sim:
        s = await stream(http, sim, user("find it"), tools=tools)
        fields = {k for c in s.chunks if c["choices"] for k in c["choices"][0]["delta"]}
        assert "reasoning_content" in fields and "reasoning" not in fields
        _, body = await complete(http, sim, user("find it"), tools=tools)
        assert body["choices"][0]["message"]["reasoning_content"].startswith("The user says")


async def test_append_think_and_sglang(http: aiohttp.ClientSession) -> None:
    async with await start_sim(mode="vllm-append-think") as sim:
        s = await stream(http, sim, user("find it"), tools=[SEARCH], tool_choice="none")
        assert s.content == "<think>" + sim.requests[-1].raw
        _, body = await complete(http, sim, user("find it"), tools=[SEARCH])
        msg = body["choices"][0]["message"]
        assert msg["content"].startswith("<think>") and "<minimax" not in msg["content"]
        assert msg["tool_calls"][0]["function"]["name"] == "search"
    async with await start_sim(mode="sglang") as sim:
        await stream(http, sim, user("find it"), tools=[SEARCH])
        assert sim.requests[-1].tool_calls  # no parser, no complaint: raw
        await stream(http, sim, user("find it"), tools=[SEARCH], tool_choice="none")
        assert sim.requests[-1].tool_calls == []  # SGLang drops the tools for "none"


async def test_images_need_a_multimodal_server(http: aiohttp.ClientSession) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "see"}, image]}]
    async with await start_sim() as sim:
        status, body = await complete(http, sim, messages)
        assert status == 400 and "not a multimodal model" in body["error"]["message"]
    async with await start_sim(multimodal=True) as sim:
        assert (await complete(http, sim, messages))[0] == 200
    with pytest.raises(ValueError, match="unknown mode"):
        SimOptions(mode="llamafile")


async def test_cli_mode_flag(http: aiohttp.ClientSession) -> None:
    async with cli_sim("proxy", "sim", "--mode", "vllm") as url:
        async with http.post(url, json={"messages": user("x"), "tools": [SEARCH]}) as resp:
            assert resp.status == 400
            assert "enable-auto-tool-choice" in (await resp.json())["error"]["message"]
