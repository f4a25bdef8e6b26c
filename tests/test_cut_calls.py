"""An unfinished tool call never looks finished, on any API, however it was cut.

Clients run a tool call the moment it looks finished (Codex on ``output_item.done``, Claude
Code on ``content_block_stop``, chat clients on ``finish_reason: "tool_calls"``), so a call
cut halfway through ``rm -rf build/ && …`` must never look finished. Each API is driven by its
real SDK through the real proxy against the simulated backend, which writes one complete call
(kind ``none``: the control, which must look finished) or is cut inside the call's argument by
a connection reset, a stall past the idle timeout, an error event (a bad stream), or the
model's own length limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.sim import SimServer
from tests.responses_grammar import Recording, check
from tests.servers import Background, ProxyServer, settings_for

VALUE = "rm -rf build/" + " && echo step" * 40
RAW = (
    "The user wants a clean build.</think>\n\nCleaning up.\n"
    '<minimax:tool_call>\n<invoke name="bash">\n'
    f'<parameter name="command">{VALUE}</parameter>\n'
    "</invoke>\n</minimax:tool_call>"
)
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}}
FAULTS = {
    "reset": "SIM_FAULT:cut_in_tool",  # the connection drops inside the value
    "stall": "SIM_FAULT:stall_mid SIM_STALL:30",  # silent past BACKEND_IDLE_TIMEOUT
    "bad_stream": "SIM_FAULT:error_event",  # the backend reports an error mid-stream
}
KINDS = ["none", *FAULTS, "length"]


def prompt(kind: str) -> str:
    if kind == "length":  # the model's limit falls inside the value
        cut = RAW.index(VALUE) + len(VALUE) // 2
        script = {"raw": RAW[:cut], "finish_reason": "length"}
        return "SIM_SCRIPT:" + json.dumps(script)
    return FAULTS.get(kind, "") + " SIM_SCRIPT:" + json.dumps({"raw": RAW})


@pytest.fixture(scope="module")
def server(bg: Background, sim_server: SimServer) -> Iterator[ProxyServer]:
    env = {"BACKEND_IDLE_TIMEOUT": "2"}
    proxy = bg.run(ProxyServer(settings_for(sim_server.url, env)).start())
    yield proxy
    bg.run(proxy.stop())


def oa_client(server: ProxyServer, transport: httpx.BaseTransport | None = None) -> openai.OpenAI:
    http = httpx.Client(transport=transport or httpx.HTTPTransport(), timeout=30)
    return openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, http_client=http)


def an_client(server: ProxyServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0, timeout=30)


def fails_whole(kind: str, create: Any, errors: Any) -> bool:
    """For a failure: the buffered request is refused as a whole (502/504), True."""
    if kind not in FAULTS:
        return False
    with pytest.raises(errors.APIStatusError) as info:
        create()
    assert info.value.status_code in (502, 504)
    return True


# ---------------------------------------------------------------------------- chat completions


def chat_request(kind: str) -> dict[str, Any]:
    tool = {"type": "function", "function": {"name": "bash", "parameters": SCHEMA}}
    return {
        "model": "m",
        "messages": [{"role": "user", "content": prompt(kind)}],
        "tools": [tool],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_chat_stream(server: ProxyServer, kind: str) -> None:
    reasons: list[str] = []
    pieces: list[str] = []
    failed = None
    with oa_client(server) as c:
        try:
            for chunk in c.chat.completions.create(**chat_request(kind), stream=True):
                for choice in chunk.choices:
                    if choice.finish_reason:
                        reasons.append(choice.finish_reason)
                    for call in choice.delta.tool_calls or []:
                        pieces.append(call.function.arguments or "")  # type: ignore[union-attr]
        except openai.APIError as exc:
            failed = exc
    arguments = "".join(pieces)
    assert arguments.startswith('{"command": "rm -rf build/')  # the call had begun
    if kind == "none":
        assert failed is None and reasons == ["tool_calls"]
        assert json.loads(arguments) == {"command": VALUE}
        return
    assert "tool_calls" not in reasons
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)  # not even closed into something that parses
    if kind == "length":
        assert failed is None and reasons == ["length"]
    else:
        assert failed is not None and reasons == []


@pytest.mark.parametrize("kind", KINDS)
def test_chat_buffered(server: ProxyServer, kind: str) -> None:
    with oa_client(server) as c:
        if fails_whole(kind, lambda: c.chat.completions.create(**chat_request(kind)), openai):
            return
        choice = c.chat.completions.create(**chat_request(kind)).choices[0]
    if kind == "none":
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        assert json.loads(choice.message.tool_calls[0].function.arguments) == {"command": VALUE}  # type: ignore[union-attr]
    else:
        assert choice.finish_reason == "length"
        assert not choice.message.tool_calls


# ---------------------------------------------------------------------------- Anthropic Messages


def messages_request(kind: str) -> dict[str, Any]:
    return {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": prompt(kind)}],
        "tools": [{"name": "bash", "input_schema": SCHEMA}],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_messages_stream(server: ProxyServer, kind: str) -> None:
    events: list[Any] = []
    failed = None
    final = None
    with an_client(server) as c:
        try:
            with c.messages.stream(**messages_request(kind)) as stream:
                for event in stream:
                    events.append(event)
                final = stream.get_final_message()
        except anthropic.APIStatusError as exc:
            failed = exc
    uses = [
        e.index
        for e in events
        if e.type == "content_block_start" and e.content_block.type == "tool_use"
    ]
    stopped = [e.index for e in events if e.type == "content_block_stop"]
    assert len(uses) == 1  # the call had begun
    if kind == "none":
        assert failed is None and final is not None and uses[0] in stopped
        assert final.stop_reason == "tool_use"
        assert final.content[-1].input == {"command": VALUE}  # type: ignore[union-attr]
        return
    assert uses[0] not in stopped  # never a content_block_stop for the cut call
    if kind == "length":
        assert failed is None and final is not None
        assert final.stop_reason == "max_tokens"
        assert [e.type for e in events[-2:]] == ["message_delta", "message_stop"]
    else:
        assert failed is not None  # the stream ended with an error event


@pytest.mark.parametrize("kind", KINDS)
def test_messages_buffered(server: ProxyServer, kind: str) -> None:
    with an_client(server) as c:
        if fails_whole(kind, lambda: c.messages.create(**messages_request(kind)), anthropic):
            return
        message = c.messages.create(**messages_request(kind))
    uses = [b for b in message.content if b.type == "tool_use"]
    if kind == "none":
        assert message.stop_reason == "tool_use"
        assert uses[0].input == {"command": VALUE}
    else:
        assert message.stop_reason == "max_tokens" and uses == []


# ---------------------------------------------------------------------------- Responses


def responses_request(kind: str) -> dict[str, Any]:
    tool = {"type": "function", "name": "bash", "parameters": SCHEMA, "strict": False}
    return {"model": "m", "input": prompt(kind), "tools": [tool]}


@pytest.mark.parametrize("kind", KINDS)
def test_responses_stream(server: ProxyServer, kind: str) -> None:
    recording = Recording()
    done: list[Any] = []
    with oa_client(server, recording) as c:
        for event in c.responses.create(**responses_request(kind), stream=True):
            if event.type == "response.output_item.done":
                done.append(event.item)
            last = event
    checked = check(recording.bodies[0].decode())  # the event grammar, strictly
    calls = [item for item in done if item.type == "function_call"]
    if kind == "none":
        assert last.type == "response.completed" and checked.cut is None
        assert json.loads(calls[0].arguments) == {"command": VALUE}
        return
    assert calls == []  # no output_item.done for the cut call
    assert checked.cut is not None and checked.cut["type"] == "function_call"
    assert all(item["type"] != "function_call" for item in checked.response["output"])
    if kind == "length":
        assert last.type == "response.incomplete"
        assert checked.response["incomplete_details"] == {"reason": "max_output_tokens"}
    else:
        assert last.type == "response.failed"


@pytest.mark.parametrize("kind", KINDS)
def test_responses_buffered(server: ProxyServer, kind: str) -> None:
    with oa_client(server) as c:
        if fails_whole(kind, lambda: c.responses.create(**responses_request(kind)), openai):
            return
        response = c.responses.create(**responses_request(kind))
    calls = [item for item in response.output if item.type == "function_call"]
    if kind == "none":
        assert response.status == "completed"
        assert json.loads(calls[0].arguments) == {"command": VALUE}
    else:
        assert response.status == "incomplete" and calls == []


# ---------------------------------------------------------------------------- pre-parsed calls


def test_a_pre_parsed_call_cut_by_length_gets_no_end() -> None:
    """Calls a backend's tool parser sent (vLLM ``--tool-call-parser``): the ones before the
    last are finished (the backend went on to the next), the last is cut when the length
    limit ended the output, and finished otherwise. (The simulated backend in its parsing
    modes reports ``tool_calls`` whenever it parsed one, so this drives the Turn directly.)"""
    from parser import ToolCallEnd
    from proxy.turn import Turn
    from proxy.upstream import UpChoice, UpChunk, UpDelta, UpFunction, UpToolCall

    def chunk(index: int, name: str | None, args: str) -> UpChunk:
        call = UpToolCall(index=index, function=UpFunction(name=name, arguments=args))
        return UpChunk(choices=[UpChoice(delta=UpDelta(tool_calls=[call]))])

    for finish, ended in (("length", [0]), ("tool_calls", [0, 1])):
        turn = Turn(None, starts_in_think=True)
        turn.feed([chunk(0, "bash", '{"command": "ls"}'), chunk(1, "bash", '{"command": "rm -rf ')])
        turn.feed([UpChunk(choices=[UpChoice(finish_reason=finish)])])
        ends = [e.index for e in turn.close() if type(e) is ToolCallEnd]
        assert ends == ended
        assert turn.cut is (finish == "length") and (turn.finish_reason == "length") is turn.cut
