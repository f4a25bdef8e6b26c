"""Other real clients (LangChain) and backends that parse MiniMax-M2 output themselves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import openai
import pytest
from aiohttp import web
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from proxy.sim import SimServer
from tests.servers import Background, ProxyServer
from tests.test_openai import collect


@tool
def get_weather(city: str, days: int) -> str:
    """Weather forecast for a city."""
    return f"{city}: sunny for {days} days"


def test_langchain_bind_tools_round_trip(proxy_server: ProxyServer, sim: SimServer) -> None:
    llm = ChatOpenAI(
        base_url=proxy_server.url + "/v1", api_key="x", model="minimax-m2", max_retries=0
    )
    bound = llm.bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    ai = bound.invoke([question])
    assert len(ai.tool_calls) == 1
    call = ai.tool_calls[0]
    assert call["name"] == "get_weather"
    assert isinstance(call["args"]["city"], str) and isinstance(call["args"]["days"], int)

    streamed: AIMessageChunk | None = None
    for piece in bound.stream([question]):
        assert isinstance(piece, AIMessageChunk)
        streamed = piece if streamed is None else streamed + piece
    assert streamed is not None
    assert [c["args"] for c in streamed.tool_calls] == [call["args"]]

    result = get_weather.invoke(call["args"])
    final = bound.invoke([question, ai, ToolMessage(result, tool_call_id=call["id"])])
    assert final.content and not final.tool_calls
    sent = sim.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call["id"]


# A backend with its own MiniMax parsers (vLLM --reasoning-parser/--tool-call-parser, TabbyAPI
# tool_format) sends reasoning and tool calls as fields; the proxy passes them through.
PARSED_CHUNKS: list[dict[str, Any]] = [
    {"reasoning": "I should call "},
    {"reasoning": "the tool."},
    {"content": "Calling it now."},
    {
        "tool_calls": [
            {
                "index": 0,
                "id": "x1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": 'ris", "days": 2}'}}]},
]


async def _parsed_backend(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for delta in PARSED_CHUNKS:
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        await resp.write(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
    end = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    await resp.write(b"data: " + msgspec.json.encode(end) + b"\n\ndata: [DONE]\n\n")
    return resp


@pytest.fixture
def parsed_backend(bg: Background) -> Iterator[str]:
    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", _parsed_backend)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = bg.run(start())
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    bg.run(runner.cleanup())


@pytest.mark.parametrize("split", [True, False])
def test_preparsed_backend_fields_pass_through(
    make_proxy: Any, parsed_backend: str, split: bool
) -> None:
    server = make_proxy(backend_url=parsed_backend, BACKEND_MODEL="m")
    req: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if split:
        req["extra_body"] = {"reasoning_split": True}
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        msg = c.chat.completions.create(**req).choices[0].message
        got = collect(c.chat.completions.create(**req, stream=True))
    if split:
        assert msg.model_extra["reasoning_content"] == "I should call the tool."
        assert msg.content == "Calling it now."
    else:
        assert msg.content == "<think>\nI should call the tool.\n</think>\n\nCalling it now."
    assert got["content"] == msg.content
    assert len(msg.tool_calls) == 1
    assert msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Paris", "days": 2}
    assert got["calls"][0]["arguments"] == msg.tool_calls[0].function.arguments
    assert got["finish_reason"] == "tool_calls"
