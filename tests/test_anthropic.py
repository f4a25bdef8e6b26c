"""The Anthropic Messages endpoint through the real anthropic SDK, on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from proxy.messages.writer import is_own_thinking
from proxy.sim import SimServer
from tests.servers import ProxyServer
from tests.test_chunking import RAW, chunkings

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "metric": {"type": "boolean"},
        },
        "required": ["city"],
    },
}


@pytest.fixture
def ant(proxy_server: ProxyServer, sim: SimServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="x", max_retries=0) as c:
        yield c


def ask(text: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": "claude-proxy-test",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


def raw_events(url: str, body: dict[str, Any], path: str = "/v1/messages") -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    with httpx.stream("POST", url + path, json={**body, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                events.append((name, data))
    return events


def test_plain_message(ant: anthropic.Anthropic) -> None:
    msg = ant.messages.create(**ask("Say hello"))
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.model == "claude-proxy-test"
    assert [b.type for b in msg.content] == ["thinking", "text"]
    thinking, text = msg.content
    assert thinking.thinking and thinking.signature
    assert "<think>" not in text.text and text.text == text.text.strip()
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.output_tokens > 0 and msg.usage.input_tokens > 0


def test_tool_use_block_typed_by_schema(ant: anthropic.Anthropic) -> None:
    msg = ant.messages.create(**ask("Weather in Paris?", tools=[WEATHER]))
    assert msg.stop_reason == "tool_use"
    kinds = [b.type for b in msg.content]
    assert kinds == ["thinking", "text", "tool_use"]
    use = msg.content[-1]
    assert use.id.startswith("toolu_") and use.name == "get_weather"
    assert isinstance(use.input["city"], str) and isinstance(use.input["days"], int)
    assert isinstance(use.input["metric"], bool)


def test_stream_event_order_raw(proxy_server: ProxyServer, sim: SimServer) -> None:
    events = raw_events(proxy_server.url, ask("parallel weather", tools=[WEATHER]))
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert events[0][1]["message"]["content"] == []
    open_index = None
    next_index = 0
    kinds = []
    signatures = 0
    for name, data in events[1:-2]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None, "two blocks open at once"
            assert data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
            kinds.append(data["content_block"]["type"])
            if kinds[-1] == "tool_use":
                assert data["content_block"]["input"] == {}
        elif name == "content_block_delta":
            assert data["index"] == open_index
            if data["delta"]["type"] == "signature_delta":
                signatures += 1
                assert kinds[-1] == "thinking"
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    assert kinds[0] == "thinking" and kinds.count("tool_use") >= 2
    assert signatures == kinds.count("thinking")
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] > 0


def test_stream_helper_equals_buffered(ant: anthropic.Anthropic) -> None:
    req = ask("parallel weather", tools=[WEATHER])
    buffered = ant.messages.create(**req)
    partial: dict[int, str] = {}
    with ant.messages.stream(**req) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial[event.index] = partial.get(event.index, "") + event.delta.partial_json
        final = stream.get_final_message()
    strip = {"id", "signature"}

    def blocks(msg: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in b.model_dump().items() if k not in strip} for b in msg.content]

    assert blocks(final) == blocks(buffered)
    assert final.stop_reason == buffered.stop_reason == "tool_use"
    uses = [i for i, b in enumerate(final.content) if b.type == "tool_use"]
    for i in uses:
        assert json.loads(partial[i]) == final.content[i].input
    # Signatures are HMACs of the thinking text: equal text, equal signature.
    assert final.content[0].signature == buffered.content[0].signature


def test_tool_round_trip_reaches_backend(ant: anthropic.Anthropic, sim: SimServer) -> None:
    question = {"role": "user", "content": "parallel weather in two cities"}
    first = ant.messages.create(
        model="claude-x",
        max_tokens=512,
        messages=[question],
        tools=[WEATHER],
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    )
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) >= 2
    results = [
        {"type": "tool_result", "tool_use_id": u.id, "content": f"result {n}"}
        for n, u in enumerate(uses)
    ]
    results[0]["is_error"] = True
    results.reverse()  # out of order on purpose: the backend must get them in call order
    history = [
        question,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": results},
        {"role": "system", "content": "Mid-conversation system note."},
    ]
    final = ant.messages.create(model="claude-x", max_tokens=512, messages=history, tools=[WEATHER])
    assert final.stop_reason == "end_turn"
    sent = sim.requests[-1].body["messages"]
    assert sent[0] == {
        "role": "system",
        "content": "Be brief.\n\nMid-conversation system note.",
    } or (sent[0]["role"] == "system" and "Mid-conversation system note." in sent[0]["content"])
    assistant = sent[2]
    thinking = first.content[0].thinking
    assert assistant["content"].startswith(f"<think>\n{thinking}\n</think>\n\n")
    assert [c["id"] for c in assistant["tool_calls"]] == [u.id for u in uses]
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == [
        u.input for u in uses
    ]
    tool_msgs = sent[3 : 3 + len(uses)]
    assert [m["tool_call_id"] for m in tool_msgs] == [u.id for u in uses]
    assert tool_msgs[0]["content"] == "Error: result 0"


def test_system_blocks_and_system_messages_merge(ant: anthropic.Anthropic, sim: SimServer) -> None:
    ant.messages.create(
        model="m",
        max_tokens=64,
        system="Top.",
        messages=[{"role": "user", "content": "hi"}, {"role": "system", "content": "Later."}],  # type: ignore[list-item]
    )
    sent = sim.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Top.\n\nLater."}
    assert [m["role"] for m in sent] == ["system", "user"]


@pytest.mark.parametrize("signature", ["", "foreign-signature", None])
def test_thinking_blocks_with_any_signature(
    ant: anthropic.Anthropic, sim: SimServer, signature: str | None
) -> None:
    block: dict[str, Any] = {"type": "thinking", "thinking": "Earlier thought."}
    if signature is not None:
        block["signature"] = signature
    ant.messages.create(
        model="m",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    block,
                    {"type": "redacted_thinking", "data": "x"},
                    {"type": "text", "text": "Hello."},
                ],
            },
            {"role": "user", "content": "again"},
        ],
    )
    sent = sim.requests[-1].body["messages"][1]
    assert sent["content"] == "<think>\nEarlier thought.\n</think>\n\nHello."


def test_own_thinking_signature_is_recognised(
    proxy_server: ProxyServer, ant: anthropic.Anthropic
) -> None:
    msg = ant.messages.create(**ask("hi"))
    secret = proxy_server.settings.thinking_signature_secret
    assert secret
    assert is_own_thinking(secret, msg.content[0].thinking, msg.content[0].signature)
    assert not is_own_thinking(secret, msg.content[0].thinking + "x", msg.content[0].signature)


def test_beta_query_and_prefixed_path(proxy_server: ProxyServer, sim: SimServer) -> None:
    for path in ("/v1/messages?beta=true", "/anthropic/v1/messages"):
        r = httpx.post(
            proxy_server.url + path,
            json=ask("hi"),
            headers={"anthropic-version": "2023-06-01", "anthropic-beta": "some-future-beta"},
        )
        assert r.status_code == 200 and r.json()["type"] == "message"
        assert r.headers["request-id"] == r.headers["x-request-id"]


def test_lenient_fields(ant: anthropic.Anthropic, sim: SimServer) -> None:
    body = {
        "model": "MiniMax-M2",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "u"},
        "context_management": {"edits": []},
        "service_tier": "auto",
        "top_k": 20,
        "stop_sequences": ["END"],
    }
    r = httpx.post(str(ant.base_url) + "/v1/messages", json=body)  # no max_tokens
    assert r.status_code == 200
    sent = sim.requests[-1].body
    assert sent["top_k"] == 20 and sent["stop"] == ["END"] and "max_tokens" not in sent
    for thinking in ({"type": "disabled"}, {"type": "adaptive"}):
        assert (
            httpx.post(
                str(ant.base_url) + "/v1/messages", json={**body, "thinking": thinking}
            ).status_code
            == 200
        )


def test_disable_parallel_tool_use(ant: anthropic.Anthropic) -> None:
    msg = ant.messages.create(
        **ask("parallel weather", tools=[WEATHER]),
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert sum(b.type == "tool_use" for b in msg.content) == 1
    none = ant.messages.create(
        **ask("parallel weather", tools=[WEATHER]), tool_choice={"type": "none"}
    )
    assert all(b.type != "tool_use" for b in none.content)


def test_max_tokens_stop_reason(ant: anthropic.Anthropic) -> None:
    msg = ant.messages.create(**{**ask("Tell me a long story"), "max_tokens": 5})
    assert msg.stop_reason == "max_tokens"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ([{"type": "image", "source": "x"}], "messages.0.content.0.source: must be an object"),
        ([{"type": "image", "source": {"type": "base64"}}], "expected a base64 (with data)"),
        ([{"type": "document", "source": {"type": "text"}}], "text or content source"),
        ([{"type": "mystery"}], "unsupported"),
    ],
)
def test_unsupported_blocks_are_400(ant: anthropic.Anthropic, content: Any, needle: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        ant.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": content}]
        )
    body = info.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert needle in body["error"]["message"]
    assert body["request_id"]


@pytest.mark.parametrize(
    ("kw", "exc", "kind"),
    [
        ({"extra_body": {"temperature": 0}}, anthropic.BadRequestError, "invalid_request_error"),
        ({"extra_body": {"temperature": 2}}, anthropic.BadRequestError, "invalid_request_error"),
        ({"messages": []}, anthropic.BadRequestError, "invalid_request_error"),
    ],
)
def test_validation_errors(
    ant: anthropic.Anthropic, kw: dict[str, Any], exc: type, kind: str
) -> None:
    with pytest.raises(exc) as info:
        ant.messages.create(**{**ask("hi"), **kw})
    assert info.value.response.json()["error"]["type"] == kind


def test_auth_with_x_api_key_and_bearer(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(AUTH_API_KEY="k1")
    with anthropic.Anthropic(base_url=server.url, api_key="k1", max_retries=0) as c:
        assert c.messages.create(**ask("hi")).content
    with anthropic.Anthropic(base_url=server.url, auth_token="k1", max_retries=0) as c:
        assert c.messages.create(**ask("hi")).content
    with anthropic.Anthropic(base_url=server.url, api_key="nope", max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError) as info:
            c.messages.create(**ask("hi"))
    assert info.value.response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("fault", "exc", "kind"),
    [
        ("http500", anthropic.InternalServerError, "api_error"),
        ("http429", anthropic.RateLimitError, "rate_limit_error"),
        ("http503", anthropic.InternalServerError, "overloaded_error"),
        ("http400_context", anthropic.BadRequestError, "invalid_request_error"),
    ],
)
def test_backend_errors_in_anthropic_shape(
    ant: anthropic.Anthropic, fault: str, exc: type, kind: str
) -> None:
    with pytest.raises(exc) as info:
        ant.messages.create(**ask(f"SIM_FAULT:{fault}"))
    body = info.value.response.json()
    assert body["error"]["type"] == kind
    if fault == "http400_context":
        assert body["error"]["message"].startswith("prompt is too long")


def test_mid_stream_failure_is_error_event(proxy_server: ProxyServer, sim: SimServer) -> None:
    events = raw_events(proxy_server.url, ask("SIM_FAULT:cut_mid"))
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="x", max_retries=0) as c:
        with pytest.raises(anthropic.APIStatusError):
            with c.messages.stream(**ask("SIM_FAULT:error_event")) as stream:
                for _ in stream:
                    pass


def test_ping_while_backend_is_silent(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(PING_INTERVAL_SECONDS="0.2")
    events = raw_events(server.url, ask("SIM_TTFT:1 hi"))
    assert events[0][0] == "message_start"
    assert [n for n, _ in events[:6]].count("ping") >= 2
    assert events[-1][0] == "message_stop"


def test_count_tokens(ant: anthropic.Anthropic, sim: SimServer) -> None:
    small = ant.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
    big = ant.messages.count_tokens(
        model="m", messages=[{"role": "user", "content": "hello " * 500}], tools=[WEATHER]
    )
    assert 0 < small.input_tokens < big.input_tokens
    assert sim.requests[-1].path == "/tokenize"


def test_claude_code_background_routes(proxy_server: ProxyServer) -> None:
    assert httpx.head(proxy_server.url + "/").status_code == 200
    assert (
        httpx.post(proxy_server.url + "/api/event_logging/batch", json={"events": []}).status_code
        == 200
    )
    models = httpx.get(proxy_server.url + "/v1/models").json()
    assert models["data"][0]["type"] == "model" and "display_name" in models["data"][0]


def ant_result(url: str, chunks: list[int]) -> dict[str, Any]:
    from tests.test_chunking import TOOLS

    tools = [
        {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in TOOLS
    ]
    script = "SIM_SCRIPT:" + json.dumps({"raw": RAW, "chunks": chunks})
    with anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as c:
        with c.messages.stream(**ask(script, tools=tools)) as s:
            msg = s.get_final_message()
    return {
        "blocks": [{k: v for k, v in b.model_dump().items() if k != "id"} for b in msg.content],
        "stop": msg.stop_reason,
    }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chunkings())
def test_any_backend_chunking_same_message(
    proxy_server: ProxyServer, sim_server: SimServer, chunks: list[int]
) -> None:
    assert ant_result(proxy_server.url, chunks) == ant_result(proxy_server.url, [len(RAW)])


def test_thinking_blocks_can_be_turned_off(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(ENABLE_ANTHROPIC_THINKING_BLOCKS="false")
    with anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as c:
        msg = c.messages.create(**ask("hi"))
        assert [b.type for b in msg.content] == ["text"]
        with c.messages.stream(**ask("hi")) as s:
            assert [b.type for b in s.get_final_message().content] == ["text"]


def test_own_and_foreign_thinking_blocks_are_told_apart() -> None:
    from proxy.config import Settings
    from proxy.messages.reader import plan_anthropic
    from proxy.messages.writer import sign_thinking

    settings = Settings.from_env({"THINKING_SIGNATURE_SECRET": "s"}, env_file=None)

    def plan_with(signature: str) -> Any:
        block = {"type": "thinking", "thinking": "t", "signature": signature}
        messages = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [block, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "q2"},
        ]
        return plan_anthropic({"messages": messages}, settings, None)

    assert plan_with(sign_thinking("s", "t")).foreign_thinking == 0
    assert plan_with("someone-else").foreign_thinking == 1


def test_empty_tool_call_block_is_dropped(ant: anthropic.Anthropic) -> None:
    raw = "plan</think>\n\nNo call needed.\n<minimax:tool_call>\n</minimax:tool_call>"
    msg = ant.messages.create(**ask("SIM_SCRIPT:" + json.dumps({"raw": raw})))
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[1].text == "No call needed." and msg.stop_reason == "end_turn"
