"""The Responses API through the real openai SDK, proxy and simulated backend on loopback.

Every streamed response a test reads is also checked by the strict event-grammar checker
(``responses_grammar.check``) when the test ends.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from proxy.sim import SimServer
from tests.responses_grammar import Checked, Recording, check
from tests.servers import ProxyServer
from tests.test_openai import WEATHER as CHAT_WEATHER

WEATHER = {"type": "function", **CHAT_WEATHER["function"]}  # the Responses shape
WRITE = {
    "type": "function",
    "name": "write_file",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
}
RAW = (
    "The user wants weather. I'll call the tool.\n</think>\n\nLet me check.\n\n"
    "<minimax:tool_call>\n"
    '<invoke name="get_weather">\n'
    '<parameter name="city">São Paulo</parameter>\n'
    '<parameter name="days">3</parameter>\n'
    "</invoke>\n</minimax:tool_call>"
)


class Client:
    """An openai client on a proxy, with every stream it read checked at the end."""

    def __init__(self, server: ProxyServer, key: str = "unused") -> None:
        self.recording = Recording()
        self.sdk = openai.OpenAI(
            base_url=server.url + "/v1",
            api_key=key,
            max_retries=0,
            http_client=httpx.Client(transport=self.recording, timeout=30),
        )

    def last(self) -> Checked:
        return check(self.recording.bodies[-1].decode())

    def check_all(self) -> None:
        for body in self.recording.bodies:
            check(body.decode())


@pytest.fixture
def rc(proxy_server: ProxyServer, sim: SimServer, open_client: Callable[..., Client]) -> Client:
    return open_client(proxy_server)


def script(raw: str, chunks: list[int] | None = None, **more: Any) -> str:
    return "SIM_SCRIPT:" + json.dumps({"raw": raw, "chunks": chunks or [], **more})


def plain(output: list[Any]) -> list[dict[str, Any]]:
    """Output items without what differs between two runs (ids)."""
    out = []
    for item in output:
        d = item if isinstance(item, dict) else item.model_dump(exclude_none=True)
        out.append({k: v for k, v in d.items() if k not in ("id", "call_id", "encrypted_content")})
    return out


def backend_messages(sim: SimServer) -> list[dict[str, Any]]:
    chats = [r for r in sim.requests if r.path == "/v1/chat/completions"]
    return list(chats[-1].body["messages"])


# -- answers ------------------------------------------------------------------


def test_text_not_streamed(rc: Client) -> None:
    r = rc.sdk.responses.create(model="minimax-m2", input="Say hello")
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert [o.type for o in r.output] == ["reasoning", "message"]
    reasoning, message = r.output
    assert reasoning.id.startswith("rs_") and message.id.startswith("msg_")
    assert reasoning.summary[0].text and "<think>" not in reasoning.summary[0].text
    assert r.output_text and "</think>" not in r.output_text
    assert message.content[0].annotations == []
    assert r.model == "minimax-m2"
    assert r.usage.output_tokens > 0 and r.usage.input_tokens > 0
    assert 0 < r.usage.output_tokens_details.reasoning_tokens < r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_streamed_equals_buffered(rc: Client) -> None:
    buffered = rc.sdk.responses.create(model="m", input="Say hello", tools=[WEATHER])
    events = list(
        rc.sdk.responses.create(model="m", input="Say hello", tools=[WEATHER], stream=True)
    )
    assert events[-1].type == "response.completed"
    assert plain(events[-1].response.output) == plain(buffered.output)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == buffered.output_text
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert summary == buffered.output[0].summary[0].text
    assert rc.last().deltas  # and the stream passed the grammar


def test_stream_helper_final_response(rc: Client) -> None:
    with rc.sdk.responses.stream(model="m", input="weather?", tools=[WEATHER]) as stream:
        deltas = [e for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    call = final.output[-1]
    assert call.type == "function_call" and call.status == "completed"
    assert "".join(d.delta for d in deltas) == call.arguments
    assert final.output[0].type == "reasoning"


def test_one_call_typed_by_schema(rc: Client) -> None:
    r = rc.sdk.responses.create(model="m", input="What is the weather?", tools=[WEATHER])
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert call.name == "get_weather" and call.namespace is None
    args = json.loads(call.arguments)
    assert isinstance(args["city"], str) and isinstance(args["days"], int)
    assert isinstance(args["metric"], bool)


def test_calls_typed_from_script(rc: Client) -> None:
    r = rc.sdk.responses.create(model="m", input=script(RAW), tools=[WEATHER], stream=False)
    assert plain(r.output) == [
        {
            "type": "reasoning",
            "summary": [
                {"type": "summary_text", "text": "The user wants weather. I'll call the tool."}
            ],
            "status": "completed",
        },
        {
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}
            ],
        },
        {
            "type": "function_call",
            "name": "get_weather",
            "arguments": '{"city": "São Paulo", "days": 3}',
            "status": "completed",
        },
    ]


def test_several_calls_and_parallel_off(rc: Client) -> None:
    r = rc.sdk.responses.create(model="m", input="parallel weather", tools=[WEATHER], stream=True)
    final = next(e for e in r if e.type == "response.completed").response
    assert [o.type for o in final.output].count("function_call") == 3
    one = rc.sdk.responses.create(
        model="m", input="parallel weather", tools=[WEATHER], parallel_tool_calls=False
    )
    assert [o.type for o in one.output].count("function_call") == 1
    assert one.parallel_tool_calls is False


def test_long_argument_streams_in_many_deltas(rc: Client) -> None:
    events = list(rc.sdk.responses.create(model="m", input="long file", tools=[WRITE], stream=True))
    checked = rc.last()
    call = checked.items[-1]
    assert call["type"] == "function_call"
    assert max(len(v) for v in json.loads(call["arguments"]).values()) > 4000
    assert checked.deltas[call["id"]] > 100
    added = next(i for i, e in enumerate(events) if e.type == "response.output_item.added"
                 and e.item.type == "function_call")  # fmt: skip
    first = next(
        i for i, e in enumerate(events) if e.type == "response.function_call_arguments.delta"
    )
    assert added < first  # the name went out before any argument


def test_truncation_is_incomplete(rc: Client, sim: SimServer) -> None:
    r = rc.sdk.responses.create(model="m", input="Say hello", max_output_tokens=5)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    events = list(
        rc.sdk.responses.create(model="m", input="Say hello", max_output_tokens=5, stream=True)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    chats = [r.body for r in sim.requests if r.path == "/v1/chat/completions"]
    assert [b["max_tokens"] for b in chats] == [5, 5]


def test_backend_failure_before_the_first_event(rc: Client) -> None:
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as exc:
            rc.sdk.responses.create(model="m", input="SIM_FAULT:http500 hi", stream=stream)
        assert exc.value.status_code == 502
        assert exc.value.body["message"]  # the OpenAI error shape
    with pytest.raises(openai.BadRequestError) as exc:
        rc.sdk.responses.create(model="m", input="SIM_FAULT:http400_context hi", stream=True)
    assert exc.value.body["code"] == "context_length_exceeded"


def test_backend_failure_after_the_first_event(rc: Client) -> None:
    events = list(rc.sdk.responses.create(model="m", input="SIM_FAULT:cut_mid hi", stream=True))
    assert events[0].type == "response.created"
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error.code == "server_error"
    assert all(o.status == "incomplete" for o in failed.response.output[-1:])


def test_bad_input_is_a_400_in_openai_shape(rc: Client) -> None:
    for body in (
        {"model": "m", "input": 5},
        {"model": "m", "input": "hi", "temperature": 2},
        {"model": "m", "input": "hi", "tools": {"type": "function"}},
        {"model": "m", "input": [{"type": "message", "role": "robot", "content": "x"}]},
        {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
    ):
        r = httpx.post(str(rc.sdk.base_url) + "responses", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_keep_alive_is_an_event_both_clients_count(
    make_proxy: Any, sim: SimServer, open_client: Any
) -> None:
    server = make_proxy(PING_INTERVAL_SECONDS="0.2")
    c = open_client(server)
    with c.sdk.responses.stream(model="m", input="SIM_TTFT:1.2 hi") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds.count("response.in_progress") >= 4  # one at the start, then keep-alives
    assert final.output_text
    c.last()  # sequence numbers stay in order with the keep-alives


def test_raw_reasoning_setting(make_proxy: Any, sim: SimServer, open_client: Any) -> None:
    c = open_client(make_proxy(RESPONSES_REASONING="raw"))
    events = list(c.sdk.responses.create(model="m", input="Say hello", stream=True))
    kinds = {e.type for e in events}
    assert "response.reasoning_text.delta" in kinds
    assert "response.reasoning_summary_text.delta" not in kinds
    item = events[-1].response.output[0]
    assert item.summary == [] and item.content[0].type == "reasoning_text"
    assert item.content[0].text


# -- history ------------------------------------------------------------------


def _turn_one(rc: Client, **kw: Any) -> Any:
    return rc.sdk.responses.create(
        model="m", input=[{"role": "user", "content": "weather?"}], tools=[WEATHER], **kw
    )


def _replayed(first: Any, how: str) -> list[dict[str, Any]]:
    """The first turn's output as a client sends it back (Codex strips ids)."""
    items = []
    for item in first.output:
        d = item.model_dump(exclude_none=True)
        d.pop("id", None)
        if d["type"] == "reasoning":
            if how == "nothing":
                continue
            if how == "encrypted":
                d["summary"] = [{"type": "summary_text", "text": "(edited by the client)"}]
                d["content"] = None
            if how == "foreign":
                d["encrypted_content"] = "gAAAAABforeign-fernet-token=="
        items.append(d)
    return items


@pytest.mark.parametrize("how", ["encrypted", "summary", "foreign", "nothing"])
def test_two_turn_tool_loop_replaying_items(rc: Client, sim: SimServer, how: str) -> None:
    include = ["reasoning.encrypted_content"] if how == "encrypted" else []
    first = _turn_one(rc, include=include, stream=True)
    first = next(e for e in first if e.type == "response.completed").response
    reasoning = first.output[0].summary[0].text
    call = first.output[-1]
    if how == "encrypted":
        assert first.output[0].encrypted_content.startswith("mm1.")
    else:
        assert first.output[0].encrypted_content is None
    second = rc.sdk.responses.create(
        model="m",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "weather?"},
            *_replayed(first, how),
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 22C"},
        ],
    )
    assert "Sunny, 22C" in second.output_text
    messages = backend_messages(sim)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assistant = messages[1]
    if how == "nothing":
        assert "<think>" not in assistant["content"]
    else:
        assert assistant["content"].startswith("<think>\n" + reasoning + "\n</think>\n\n")
    assert assistant["tool_calls"][0]["id"] == call.call_id
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == json.loads(
        call.arguments
    )
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 22C"}


def test_previous_response_id_rebuilds_the_chain(rc: Client, sim: SimServer) -> None:
    first = _turn_one(rc, instructions="Be brief.")
    call = first.output[-1]
    second = rc.sdk.responses.create(
        model="m",
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Rain"}],
    )
    assert second.previous_response_id == first.id
    messages = backend_messages(sim)
    # instructions do not carry over from a previous response (as at OpenAI)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["content"].startswith("<think>\n" + first.output[0].summary[0].text)
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    third = rc.sdk.responses.create(
        model="m", previous_response_id=second.id, input="and tomorrow?", instructions="Be kind."
    )
    messages = backend_messages(sim)
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[0]["content"] == "Be kind."
    assert messages[4]["content"].endswith(second.output_text)
    got = rc.sdk.responses.retrieve(third.id)
    assert got.id == third.id and got.output_text == third.output_text


def test_unknown_previous_response_is_a_404_and_reaches_no_backend(
    rc: Client, sim: SimServer
) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        rc.sdk.responses.create(model="m", previous_response_id="resp_nope", input="hi")
    assert exc.value.body["code"] == "previous_response_not_found"
    assert exc.value.body["param"] == "previous_response_id"
    assert not [r for r in sim.requests if r.path == "/v1/chat/completions"]


def test_store_false_is_never_kept_and_delete_forgets(rc: Client, sim: SimServer) -> None:
    unkept = rc.sdk.responses.create(model="m", input="hi", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        rc.sdk.responses.retrieve(unkept.id)
    with pytest.raises(openai.NotFoundError):
        rc.sdk.responses.create(model="m", previous_response_id=unkept.id, input="more")
    kept = rc.sdk.responses.create(model="m", input="hi")
    assert rc.sdk.responses.retrieve(kept.id).output_text == kept.output_text
    rc.sdk.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        rc.sdk.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        rc.sdk.responses.delete(kept.id)  # nothing left to delete


def test_kept_responses_are_scoped_by_api_key(
    make_proxy: Any, sim: SimServer, open_client: Any
) -> None:
    server = make_proxy()
    alice, bob = open_client(server, "alice"), open_client(server, "bob")
    r = alice.sdk.responses.create(model="m", input="hi")
    with pytest.raises(openai.NotFoundError):
        bob.sdk.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        bob.sdk.responses.create(model="m", previous_response_id=r.id, input="x")
    assert alice.sdk.responses.retrieve(r.id).id == r.id


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_previous_response_id_in_the_session_store(
    make_proxy: Any, sim: SimServer, open_client: Any, tmp_path: Any, backend: str
) -> None:
    from tests.test_sessions import REDIS_URL, need_redis

    if backend == "redis":
        need_redis()
    env = {
        "SESSION_STORE_ENABLED": "true",
        "SESSION_STORE_BACKEND": backend,
        "SESSION_STORE_PATH": str(tmp_path / "s.db"),
        "REDIS_URL": REDIS_URL,
    }
    first = open_client(make_proxy(**env)).sdk.responses.create(
        model="m", input="weather?", tools=[WEATHER]
    )
    # A second proxy on the same store (a restart, or another replica) continues the chain.
    other = open_client(make_proxy(**env))
    call = first.output[-1]
    other.sdk.responses.create(
        model="m",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Hail"}],
    )
    messages = backend_messages(sim)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert other.sdk.responses.retrieve(first.id).id == first.id


def test_tool_link_validation_applies(make_proxy: Any, sim: SimServer, open_client: Any) -> None:
    c = open_client(make_proxy(SESSION_STORE_ENABLED="true", SESSION_STORE_BACKEND="memory"))
    with pytest.raises(openai.BadRequestError) as exc:
        c.sdk.responses.create(
            model="m",
            input=[
                {"role": "user", "content": "hi"},
                {"type": "function_call_output", "call_id": "call_unknown", "output": "x"},
            ],
        )
    assert "call_unknown" in exc.value.body["message"]


# -- what clients send ----------------------------------------------------------

CODEX_REQUEST: dict[str, Any] = {
    "model": "MiniMax-M2",
    "instructions": "You are Codex, a coding agent.",
    "input": [
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "<permissions>sandbox: workspace-write</permissions>"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<environment_context>/r</environment_context>"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Read the README"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "I need the file."}],
         "content": None, "encrypted_content": "gAAAAABopaque"},
        {"type": "function_call", "name": "read_file", "namespace": "mcp__files",
         "arguments": "{\"path\": \"README.md\"}", "call_id": "call_a1"},
        {"type": "function_call_output", "call_id": "call_a1", "output": [
            {"type": "input_text", "text": "# Project"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "<collaboration_mode>plan</collaboration_mode>"}]},
        {"type": "web_search_call", "status": "completed", "action": {"type": "search"}},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Now read the docs"}]},
    ],
    "tools": [
        {"type": "namespace", "name": "mcp__files", "description": "files", "tools": [
            {"type": "function", "name": "read_file", "strict": False, "parameters": {
                "type": "object", "properties": {"path": {"type": "string"}},
                "required": ["path"]}}]},
        {"type": "function", "name": "exec_command", "strict": False, "parameters": {
            "type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": None,
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199-conversation",
}  # fmt: skip


def test_codex_shaped_request(rc: Client, sim: SimServer) -> None:
    url = str(rc.sdk.base_url) + "responses"
    headers = {
        "authorization": "Bearer x",
        "accept": "text/event-stream",
        "originator": "codex_cli_rs",
    }
    with httpx.stream("POST", url, json=CODEX_REQUEST, headers=headers) as r:
        assert r.status_code == 200
        body = r.read().decode()
    checked = check(body)
    assert checked.response["status"] == "completed" and checked.response["store"] is False
    call = checked.items[-1]
    assert call["type"] == "function_call"
    assert call["name"] == "read_file" and call["namespace"] == "mcp__files"
    assert checked.items[0]["encrypted_content"].startswith("mm1.")
    sent = [r for r in sim.requests if r.path == "/v1/chat/completions"][-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == [
        "mcp__files__read_file",
        "exec_command",
    ]
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "user", "assistant", "tool", "user", "user"]
    system = sent["messages"][0]["content"]
    assert system.startswith("You are Codex") and "<permissions>" in system
    assert sent["messages"][3]["content"].startswith("<think>\nI need the file.\n</think>")
    assert sent["messages"][3]["tool_calls"][0]["function"]["name"] == "mcp__files__read_file"
    tool = sent["messages"][4]["content"]
    assert tool.startswith("# Project[image omitted: image/png")
    assert sent["messages"][5]["content"] == (
        "<developer_message>\n<collaboration_mode>plan</collaboration_mode>\n</developer_message>"
    )
    with pytest.raises(openai.NotFoundError):
        rc.sdk.responses.retrieve(checked.response["id"])


def test_custom_tools_round_trip(rc: Client, sim: SimServer) -> None:
    patch_tool = {
        "type": "custom",
        "name": "apply_patch",
        "description": "Apply a patch",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
    }
    events = list(
        rc.sdk.responses.create(model="m", input="patch it", tools=[patch_tool], stream=True)
    )
    final = events[-1].response
    call = final.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    assert isinstance(call.input, str) and call.input
    assert call.call_id.startswith("call_")
    sent = [r for r in sim.requests if r.path == "/v1/chat/completions"][-1].body
    assert "lark grammar" in sent["tools"][0]["function"]["description"]
    rc.sdk.responses.create(
        model="m",
        tools=[patch_tool],
        input=[
            {"role": "user", "content": "patch it"},
            {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch",
             "input": call.input},
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"},
        ],
    )  # fmt: skip
    messages = backend_messages(sim)
    assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == {
        "input": call.input
    }
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "Done!"}


def test_loose_items_and_hosted_tools(rc: Client, sim: SimServer) -> None:
    r = rc.sdk.responses.create(
        model="m",
        tools=[{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["v"]}],
        tool_choice="auto",
        input=[
            {"role": "system", "content": "Sys."},
            {"role": "user", "content": [
                {"type": "input_text", "text": "Look: "},
                {"type": "input_image", "image_url": "https://example.invalid/cat.png"}]},
            {"role": "assistant", "content": []},
            {"type": "item_reference", "id": "msg_1"},
            {"type": "something_new", "x": 1},
            {"role": "user", "content": "hello"},
        ],
        metadata={"run": "7"},
        user="u1",
        reasoning={"effort": "high"},
        truncation="auto",
    )  # fmt: skip
    assert r.metadata == {"run": "7"} and r.user == "u1" and r.reasoning.effort == "high"
    sent = [q for q in sim.requests if q.path == "/v1/chat/completions"][-1].body
    assert "tools" not in sent
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert (
        sent["messages"][1]["content"]
        == "Look: [image omitted: image/png; this model reads text only]"
    )


def test_images_pass_to_a_multimodal_backend(
    make_proxy: Any, sim: SimServer, open_client: Any
) -> None:
    sim.options.multimodal = True  # the fixture puts it back
    c = open_client(make_proxy(BACKEND_IMAGES="pass"))
    png = "data:image/png;base64,iVBORw0KGgo="
    c.sdk.responses.create(
        model="m",
        input=[
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": png, "detail": "auto"}]},
        ],
    )  # fmt: skip
    sent = [q for q in sim.requests if q.path == "/v1/chat/completions"][-1].body
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": png}},
    ]


def test_text_format_and_sampling_reach_the_backend(rc: Client, sim: SimServer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    rc.sdk.responses.create(
        model="m",
        input="hi",
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=300,
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
    )
    sent = [q for q in sim.requests if q.path == "/v1/chat/completions"][-1].body
    assert sent["temperature"] == 0.5 and sent["top_p"] == 0.9 and sent["max_tokens"] == 300
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }


def test_chat_shaped_tools_and_listed_instructions(rc: Client, sim: SimServer) -> None:
    chat_tool = {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
    r = rc.sdk.responses.create(
        model="m",
        input="weather?",
        tools=[chat_tool],  # type: ignore[list-item]
        instructions=[{"role": "developer", "content": "Be terse."}],  # type: ignore[arg-type]
    )
    assert r.output[-1].name == "get_weather"
    sent = [q for q in sim.requests if q.path == "/v1/chat/completions"][-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}


def test_tool_choice_forms(rc: Client, sim: SimServer) -> None:
    rc.sdk.responses.create(model="m", input="weather?", tools=[WEATHER, WRITE], tool_choice="none")
    assert "tools" not in [q for q in sim.requests if q.path == "/v1/chat/completions"][-1].body
    r = rc.sdk.responses.create(
        model="m", input="weather?", tools=[WEATHER, WRITE],
        tool_choice={"type": "function", "name": "write_file"},
    )  # fmt: skip
    assert r.output[-1].name == "write_file"
    sent = [q for q in sim.requests if q.path == "/v1/chat/completions"][-1].body
    assert "write_file" in sent["messages"][0]["content"]  # the system hint


# -- split invariance ---------------------------------------------------------------


def _chunkings(n: int) -> list[list[int]]:
    rng = random.Random(9)
    out = [[], [1] * n, [n], [3, 50, 7, 200]]
    for _ in range(4):
        out.append([rng.randint(1, 30) for _ in range(n // 8)])
    return out


@pytest.mark.parametrize("stream", [False, True])
def test_split_invariance(rc: Client, stream: bool) -> None:
    results = []
    for chunks in _chunkings(len(RAW)):
        r = rc.sdk.responses.create(
            model="m", input=script(RAW, chunks), tools=[WEATHER], stream=stream
        )
        if stream:
            r = next(e for e in r if e.type == "response.completed").response
        results.append(plain(r.output))
    assert all(r == results[0] for r in results)
    assert results[0][-1]["arguments"] == '{"city": "São Paulo", "days": 3}'


def test_metrics_and_logs_label_the_dialect(rc: Client, proxy_server: ProxyServer) -> None:
    rc.sdk.responses.create(model="m", input="weather?", tools=[WEATHER], stream=True).close()
    rc.recording.bodies.clear()  # closed early on purpose: not a whole stream to check
    rc.sdk.responses.create(model="m", input="weather?", tools=[WEATHER])
    text = httpx.get(proxy_server.url + "/metrics").text
    assert 'dialect="responses"' in text
    assert 'minimax_proxy_tool_calls_total{dialect="responses"}' in text


def test_backend_options_are_forwarded(rc: Client, sim: SimServer) -> None:
    rc.sdk.responses.create(
        model="m",
        input="hi",
        extra_body={"ignore_eos": True, "min_tokens": 7, "chat_template_kwargs": {"x": 1}},
    )
    sent = [q for q in sim.requests if q.path == "/v1/chat/completions"][-1].body
    assert sent["ignore_eos"] is True and sent["min_tokens"] == 7
    assert sent["chat_template_kwargs"] == {"x": 1}


def test_custom_call_closed_by_the_next_call_keeps_its_input() -> None:
    """A backend that parses for itself ends its calls only at the end of the output."""
    from proxy.config import Settings
    from proxy.responses import RESPONSES
    from proxy.responses.writer import ResponsesResult
    from proxy.shape import CALL_ARGS, CALL_END, CALL_START
    from proxy.turn import Turn

    settings = Settings.from_env({}, env_file=None)
    tool = {"type": "custom", "name": "apply_patch"}
    plan = RESPONSES.plan({"input": "x", "tools": [tool]}, settings, None)
    result = RESPONSES.result(plan, settings)
    assert isinstance(result, ResponsesResult)
    result.ops([
        (CALL_START, 0, "call_a", "apply_patch"), (CALL_ARGS, 0, '{"input": "one"}'),
        (CALL_START, 1, "call_b", "apply_patch"), (CALL_ARGS, 1, '{"input": "two"}'),
        (CALL_END, 0, "call_a", "apply_patch", {"input": "one"}),
        (CALL_END, 1, "call_b", "apply_patch", {"input": "two"}),
    ])  # fmt: skip
    body = json.loads(result.body(Turn(None, True), 2))
    assert [(o["call_id"], o["input"]) for o in body["output"]] == [
        ("call_a", "one"),
        ("call_b", "two"),
    ]


def test_custom_tool_input_streams_as_written(rc: Client) -> None:
    patch_tool = {"type": "custom", "name": "apply_patch", "description": "Apply a patch"}
    patch = '*** Begin Patch\n+print("héllo \\\\ 😀")\n\ttab\n*** End Patch'
    raw = (
        "Patch it.\n</think>\n\n<minimax:tool_call>\n"
        f'<invoke name="apply_patch">\n<parameter name="input">{patch}</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    )
    # Cut everywhere, escapes and the emoji included: every piece is decoded once.
    events = list(
        rc.sdk.responses.create(
            model="m", input=script(raw, [3] * 60), tools=[patch_tool], stream=True
        )
    )
    deltas = [e.delta for e in events if e.type == "response.custom_tool_call_input.delta"]
    assert len(deltas) > 10 and "".join(deltas) == patch
    call = events[-1].response.output[-1]
    assert call.type == "custom_tool_call" and call.input == patch
    assert rc.last().deltas[call.id] == len(deltas)


def test_custom_tool_input_of_another_shape_comes_whole() -> None:
    from proxy.responses.freeform import InputStream

    other = InputStream()
    assert other.feed('{"patch": "x"}') == "" and other.sent == []
    split = InputStream()
    pieces = ['{"in', 'put": "a\\', "u00e9\\ud83d", "\\ude00", 'b"}']
    assert "".join(split.feed(p) for p in pieces) == "aé😀b"
