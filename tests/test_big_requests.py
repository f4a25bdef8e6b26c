"""Big agent requests (hundreds of history messages): planned off the event loop, answered whole.

A body of ``OFF_LOOP_BYTES`` or more is planned in a worker thread (``Proxy.plan``) so that the
other streams keep flowing meanwhile; the answer and what reaches the backend must be exactly
what a small request gets.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import anthropic
import msgspec
import openai

from proxy.chat import CHAT
from proxy.config import Settings
from proxy.request import Plan
from proxy.service import OFF_LOOP_BYTES, Proxy
from proxy.sim import SimServer
from tests.servers import ProxyServer

RAW = "Checking the handlers.\n</think>\n\nEvery handler validates its input now."
TURNS = 150  # 300 history messages of about 1.2 KB: well over OFF_LOOP_BYTES
RESULT = "def handle(request):\n    return [normalise(item) for item in request.items]\n" * 16


def _tail() -> str:
    return "Go on. SIM_SCRIPT:" + json.dumps({"raw": RAW})


def _chat_messages() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Refactor the handlers."}]
    for i in range(TURNS):
        arguments = json.dumps({"path": f"m{i}.py"})
        function = {"name": "read_file", "arguments": arguments}
        call = {"id": f"call_{i}", "type": "function", "function": function}
        messages.append({"role": "assistant", "content": f"Step {i}.", "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": RESULT})
    messages.append({"role": "user", "content": _tail()})
    return messages


_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


def _sent(sim: SimServer) -> dict[str, Any]:
    bodies = [r.body for r in sim.requests if r.path == "/v1/chat/completions"]
    assert len(bodies) == 1
    body: dict[str, Any] = bodies[0]
    return body


def test_big_chat_request_streams_whole(proxy_server: ProxyServer, sim: SimServer) -> None:
    messages = _chat_messages()
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": _SCHEMA}}]
    assert len(json.dumps(messages)) > OFF_LOOP_BYTES
    with openai.OpenAI(base_url=proxy_server.url + "/v1", api_key="x", max_retries=0) as c:
        stream = c.chat.completions.create(
            model="minimax-m2", messages=messages, tools=tools, stream=True
        )  # type: ignore[call-overload]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.endswith("Every handler validates its input now.")
    sent = _sent(sim)
    assert len(sent["messages"]) == len(messages)
    assert sent["messages"][-2]["content"] == RESULT


def test_big_messages_request_streams_whole(proxy_server: ProxyServer, sim: SimServer) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Refactor the handlers."}]
    for i in range(TURNS):
        use = {"type": "tool_use", "id": f"toolu_{i}", "name": "read_file",
               "input": {"path": f"m{i}.py"}}  # fmt: skip
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Step."}, use]})
        result = {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": RESULT}
        messages.append({"role": "user", "content": [result]})
    messages.append({"role": "user", "content": _tail()})
    tools = [{"name": "read_file", "input_schema": _SCHEMA}]
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="x", max_retries=0) as c:
        with c.messages.stream(
            model="minimax-m2", max_tokens=1000, messages=messages, tools=tools
        ) as stream:  # type: ignore[arg-type]
            message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    sent = _sent(sim)
    assert sum(m["role"] == "tool" for m in sent["messages"]) == TURNS
    assert sent["messages"][-1]["content"] == _tail()


def test_big_responses_request_streams_whole(proxy_server: ProxyServer, sim: SimServer) -> None:
    items: list[dict[str, Any]] = [{"role": "user", "content": "Refactor the handlers."}]
    for i in range(TURNS):
        items.append({"type": "function_call", "call_id": f"call_{i}", "name": "read_file",
                      "arguments": json.dumps({"path": f"m{i}.py"})})  # fmt: skip
        items.append({"type": "function_call_output", "call_id": f"call_{i}", "output": RESULT})
    items.append({"role": "user", "content": _tail()})
    tools = [{"type": "function", "name": "read_file", "parameters": _SCHEMA}]
    with openai.OpenAI(base_url=proxy_server.url + "/v1", api_key="x", max_retries=0) as c:
        stream = c.responses.create(model="minimax-m2", input=items, tools=tools, stream=True)  # type: ignore[arg-type]
        done = [e for e in stream if e.type == "response.completed"]
    assert done and done[0].response.output_text == "Every handler validates its input now."
    sent = _sent(sim)
    assert sum(m["role"] == "tool" for m in sent["messages"]) == TURNS


def test_big_bodies_are_planned_in_a_worker_thread() -> None:
    proxy = Proxy(Settings.from_env())
    threads: list[int] = []

    class Recording(type(CHAT)):  # type: ignore[misc]
        def plan(self, body: Any, settings: Settings, backend_model: str | None) -> Plan:
            threads.append(threading.get_ident())
            return super().plan(body, settings, backend_model)

    body = msgspec.json.decode(json.dumps({"model": "m", "messages": _chat_messages()}))

    async def both() -> int:
        await proxy.plan(Recording(), body, OFF_LOOP_BYTES - 1, None)
        await proxy.plan(Recording(), body, OFF_LOOP_BYTES, None)
        return threading.get_ident()

    loop_thread = asyncio.run(both())
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
