"""The OpenAI endpoint through the real openai SDK, proxy and simulated backend on loopback."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from proxy.sim import SimServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}


def collect(stream: Any) -> dict[str, Any]:
    """Assemble a streamed response the way clients do: text joined, calls by index."""
    out: dict[str, Any] = {"content": "", "reasoning": "", "details": "", "calls": {}, "ids": set()}
    chunks = list(stream)
    out["chunks"] = chunks
    for chunk in chunks:
        out["ids"].add(chunk.id)
        if not chunk.choices:
            out["usage"] = chunk.usage
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        out["content"] += delta.content or ""
        extra = delta.model_extra or {}
        out["reasoning"] += extra.get("reasoning_content") or ""
        for d in extra.get("reasoning_details") or []:
            out["details"] += d["text"]
        for call in delta.tool_calls or []:
            slot = out["calls"].setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            if call.id:
                assert slot["id"] is None, "id sent twice"
                slot["id"] = call.id
            if call.function and call.function.name:
                assert slot["name"] is None, "name sent twice"
                slot["name"] = call.function.name
            if call.function and call.function.arguments:
                slot["arguments"] += call.function.arguments
        if choice.finish_reason:
            out["finish_reason"] = choice.finish_reason
    return out


def ask(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "minimax-m2", "messages": [{"role": "user", "content": text}], **kw}


def test_plain_answer_keeps_think_in_content(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(**ask("Say hello"))
    content = r.choices[0].message.content
    assert content.startswith("<think>\n")
    reasoning, _, answer = content[len("<think>\n") :].partition("\n</think>\n\n")
    assert reasoning and answer and "<think>" not in answer
    assert r.choices[0].finish_reason == "stop"
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.usage.completion_tokens > 0


def test_reasoning_split_moves_thinking_out(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(**ask("Say hello"), extra_body={"reasoning_split": True})
    msg = r.choices[0].message
    extra = msg.model_extra
    assert "<think>" not in msg.content and "</think>" not in msg.content
    assert extra["reasoning_content"]
    assert extra["reasoning_details"] == [
        {
            "type": "reasoning.text",
            "id": "reasoning-text-1",
            "format": "MiniMax-response-v1",
            "index": 0,
            "text": extra["reasoning_content"],
        }
    ]
    # The same reply without the split carries the same reasoning in content.
    whole = client.chat.completions.create(**ask("Say hello")).choices[0].message.content
    assert whole == f"<think>\n{extra['reasoning_content']}\n</think>\n\n{msg.content}"


@pytest.mark.parametrize("split", [False, True])
def test_stream_equals_buffered(client: openai.OpenAI, split: bool) -> None:
    kw = {"extra_body": {"reasoning_split": True}} if split else {}
    buffered = client.chat.completions.create(**ask("Tell me a fact"), **kw)
    got = collect(client.chat.completions.create(**ask("Tell me a fact"), stream=True, **kw))
    msg = buffered.choices[0].message
    assert got["content"] == msg.content
    assert got["reasoning"] == got["details"] == (msg.model_extra.get("reasoning_content") or "")
    assert len(got["ids"]) == 1
    first = got["chunks"][0]
    assert first.choices[0].delta.role == "assistant"
    assert len({(c.created, c.model) for c in got["chunks"]}) == 1
    assert got["chunks"][-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in got["chunks"][:-1])
    # Nothing held back: the text arrives in many chunks, as the backend sent it.
    assert len(got["chunks"]) > 20


def test_tool_call_stream_matches_buffered(client: openai.OpenAI) -> None:
    buffered = client.chat.completions.create(**ask("Weather in Paris?", tools=[WEATHER]))
    msg = buffered.choices[0].message
    assert buffered.choices[0].finish_reason == "tool_calls"
    assert len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args["city"], str) and isinstance(args["days"], int)
    assert isinstance(args["metric"], bool)
    assert "<minimax:tool_call>" not in (msg.content or "")

    got = collect(
        client.chat.completions.create(**ask("Weather in Paris?", tools=[WEATHER]), stream=True)
    )
    assert got["finish_reason"] == "tool_calls"
    assert [c["name"] for c in got["calls"].values()] == ["get_weather"]
    assert got["calls"][0]["arguments"] == call.function.arguments
    assert got["calls"][0]["id"].startswith("call_")
    assert got["content"] == msg.content
    # Arguments stream in pieces, not in one block at the end.
    arg_chunks = [c for c in got["chunks"] if c.choices and c.choices[0].delta.tool_calls]
    assert len(arg_chunks) > 3


def test_parallel_calls_have_unique_ids_and_indexes(client: openai.OpenAI) -> None:
    req = ask("parallel: weather in three cities", tools=[WEATHER])
    got = collect(client.chat.completions.create(**req, stream=True))
    assert sorted(got["calls"]) == list(range(len(got["calls"])))
    assert len(got["calls"]) >= 2
    ids = [c["id"] for c in got["calls"].values()]
    assert len(set(ids)) == len(ids)
    buffered = client.chat.completions.create(**req).choices[0].message.tool_calls
    assert [c.function.arguments for c in buffered] == [
        c["arguments"] for c in got["calls"].values()
    ]


def test_parallel_tool_calls_false_keeps_one(client: openai.OpenAI) -> None:
    req = ask("parallel: weather in three cities", tools=[WEATHER], parallel_tool_calls=False)
    msg = client.chat.completions.create(**req).choices[0].message
    assert len(msg.tool_calls) == 1


def test_include_usage_adds_one_usage_chunk(client: openai.OpenAI) -> None:
    got = collect(
        client.chat.completions.create(
            **ask("hi"), stream=True, stream_options={"include_usage": True}
        )
    )
    empty = [c for c in got["chunks"] if not c.choices]
    assert len(empty) == 1 and got["chunks"][-1] is empty[0]
    assert got["usage"].completion_tokens > 0
    plain = collect(client.chat.completions.create(**ask("hi"), stream=True))
    assert all(c.choices for c in plain["chunks"])


def test_history_reaches_backend_with_thinking(client: openai.OpenAI, sim: SimServer) -> None:
    first = client.chat.completions.create(
        **ask("Weather in Paris?", tools=[WEATHER]), extra_body={"reasoning_split": True}
    )
    msg = first.choices[0].message
    reasoning = msg.model_extra["reasoning_content"]
    call = msg.tool_calls[0]
    history = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": msg.content,
            "reasoning_details": msg.model_extra["reasoning_details"],
            "tool_calls": [call.model_dump()],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    final = client.chat.completions.create(model="m", messages=history, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop"
    sent = sim.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse."}
    assistant = sent[2]
    assert assistant["content"].startswith(f"<think>\n{reasoning}\n</think>\n\n")
    assert assistant["tool_calls"][0]["function"]["arguments"] == call.function.arguments
    assert sent[3] == {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}


@pytest.mark.parametrize(
    "field",
    [
        {"reasoning_content": "I need the weather."},
        {"reasoning": "I need the weather."},
        {"reasoning_details": [{"type": "reasoning.text", "text": "I need the weather."}]},
        {"content_prefix": "<think>\nI need the weather.\n</think>\n\n"},
        {"content_prefix": "I need the weather.\n</think>\n\n"},
    ],
)
def test_every_reasoning_form_comes_back_as_think(
    client: openai.OpenAI, sim: SimServer, field: dict[str, Any]
) -> None:
    prefix = field.pop("content_prefix", "")
    assistant = {"role": "assistant", "content": prefix + "Checking.", **field}
    client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": "Weather?"},
            assistant,
            {"role": "user", "content": "ok"},
        ],
    )
    sent = sim.requests[-1].body["messages"][1]
    assert sent["content"].startswith("<think>\nI need the weather.\n</think>")
    assert sent["content"].endswith("Checking.")
    assert set(sent) == {"role", "content"}


def test_backend_model_rewrite(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(BACKEND_MODEL="MiniMax-M2-local")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "gpt-4o"
    assert sim.requests[-1].body["model"] == "MiniMax-M2-local"


def test_models_lists_aliases(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "minimax-m2" in ids and "MiniMax-M2" in ids


def test_unknown_fields_ignored_and_aliases_forwarded(
    client: openai.OpenAI, sim: SimServer
) -> None:
    client.chat.completions.create(
        **ask("hi"),
        max_completion_tokens=77,
        top_p=0.9,
        presence_penalty=0.1,
        user="u1",
        store=False,
        metadata={"a": "b"},
        extra_body={"some_future_field": {"x": 1}, "top_k": 40},
    )
    body = sim.requests[-1].body
    assert body["max_tokens"] == 77 and body["top_p"] == 0.9 and body["top_k"] == 40
    assert "some_future_field" not in body and "user" not in body and "store" not in body


def _one(server: Any, **kw: Any) -> Any:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        return c.chat.completions.create(**ask("Weather in Paris?", tools=[WEATHER]), **kw)


def test_tool_translation_off_passes_raw_text(make_proxy: Any, sim: SimServer) -> None:
    msg = _one(make_proxy(ENABLE_TOOL_TRANSLATION="false")).choices[0].message
    assert not msg.tool_calls
    assert "<minimax:tool_call>" in msg.content and "</think>" in msg.content
    assert msg.content == sim.requests[-1].raw.strip()


def test_passthrough_off_always_splits(make_proxy: Any) -> None:
    msg = _one(make_proxy(ENABLE_THINKING_PASSTHROUGH="false")).choices[0].message
    assert "<think>" not in (msg.content or "") and msg.model_extra["reasoning_content"]


def test_reasoning_split_disabled_by_operator(make_proxy: Any) -> None:
    server = make_proxy(ENABLE_REASONING_SPLIT="false")
    msg = _one(server, extra_body={"reasoning_split": True}).choices[0].message
    assert msg.content.startswith("<think>\n") and "reasoning_content" not in msg.model_extra


def test_starts_in_think_false(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(STARTS_IN_THINK="false")
    raw = "<think>\nplan it\n</think>\n\nDone."
    script = "SIM_SCRIPT:" + json.dumps({"raw": raw})
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        r = c.chat.completions.create(**ask(script), extra_body={"reasoning_split": True})
        assert r.choices[0].message.content == "Done."
        assert r.choices[0].message.model_extra["reasoning_content"] == "plan it"
        plain = c.chat.completions.create(**ask("SIM_SCRIPT:" + json.dumps({"raw": "Just text."})))
        assert plain.choices[0].message.content == "Just text."


def test_backend_model_discovered_when_the_backend_comes_up_late(make_proxy: Any, bg: Any) -> None:
    from proxy.sim import start_sim
    from tests.servers import free_port

    port = free_port()
    server = make_proxy(backend_url=f"http://127.0.0.1:{port}")  # nothing listens yet
    late = bg.run(start_sim(port=port, model="MiniMax-M2-late"))
    try:
        server.app.state.proxy.models._next_discovery = 0  # as if the 30 s back-off had passed
        with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
            c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        chats = [r for r in late.requests if r.path == "/v1/chat/completions"]
        assert chats[-1].body["model"] == "MiniMax-M2-late"
    finally:
        bg.run(late.close())


def test_backend_api_key_is_sent_to_the_backend(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(BACKEND_API_KEY="backend-secret")
    _one(server)
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        c.models.list()
    # The sim keeps secret headers as "<redacted>": present, value hidden.
    signed = {r.path for r in sim.requests if r.headers.get("Authorization") == "<redacted>"}
    assert signed >= {
        "/v1/chat/completions",
        "/v1/models",
    }


EMPTY_BLOCK = "plan</think>\n\nNo call needed.<minimax:tool_call>\n</minimax:tool_call>"


@pytest.mark.parametrize("stream", [False, True])
def test_empty_tool_call_block_never_reaches_the_client(
    client: openai.OpenAI, stream: bool
) -> None:
    script = "SIM_SCRIPT:" + json.dumps({"raw": EMPTY_BLOCK, "chunks": [14, 9, 7]})
    kw = ask(script, tools=[WEATHER], extra_body={"reasoning_split": True})
    if stream:
        out = collect(client.chat.completions.create(**kw, stream=True))
        content, reason, calls = out["content"], out["finish_reason"], out["calls"]
    else:
        choice = client.chat.completions.create(**kw).choices[0]
        content, reason, calls = (
            choice.message.content,
            choice.finish_reason,
            choice.message.tool_calls,
        )
    assert content == "No call needed."
    assert reason == "stop" and not calls
