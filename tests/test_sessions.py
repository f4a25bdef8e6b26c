"""Session repair and tool-link validation against real stores: memory, SQLite on disk, Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import redis

from proxy.sessions import scope_for
from proxy.sim import SimServer
from tests.servers import Background, ProxyServer, free_port

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        },
    },
}


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def need_redis() -> None:
    if _redis_up():
        return
    if os.environ.get("REQUIRE_REDIS") == "1":
        pytest.fail(f"Redis is required (REQUIRE_REDIS=1) but {REDIS_URL} does not answer")
    pytest.skip(f"no Redis at {REDIS_URL}; start redis-server (make test does)")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"SESSION_STORE_ENABLED": "true", "SESSION_STORE_BACKEND": request.param}
    if request.param == "sqlite":
        env["SESSION_STORE_PATH"] = str(tmp_path / "sessions.db")
    if request.param == "redis":
        need_redis()
        env["REDIS_URL"] = REDIS_URL
    return env


# A memory store that repairs by tool-call id (no session id needed).
MEMORY_BY_ID = {
    "SESSION_STORE_ENABLED": "true",
    "SESSION_STORE_BACKEND": "memory",
    "REQUIRE_SESSION_FOR_REPAIR": "false",
}


def key() -> str:
    return "key-" + uuid.uuid4().hex  # a fresh API key: a fresh scope in a shared store


def oai(server: ProxyServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0)


def first_turn(client: openai.OpenAI, **kw: Any) -> Any:
    question = {"role": "user", "content": "Weather in Paris?"}
    kw["extra_body"] = {"reasoning_split": True, **kw.get("extra_body", {})}
    r = client.chat.completions.create(model="m", messages=[question], tools=[WEATHER], **kw)
    return question, r.choices[0].message


def tool_result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "18C"}


def sent_assistant(sim: SimServer) -> dict[str, Any]:
    messages = sim.requests[-1].body["messages"]
    return next(m for m in messages if m["role"] == "assistant")


def test_repair_by_call_id_dropped_turn_openai(
    make_proxy: Any, sim: SimServer, store_env: dict[str, str]
) -> None:
    server = make_proxy(**store_env, REQUIRE_SESSION_FOR_REPAIR="false")
    with oai(server, key()) as c:
        question, msg = first_turn(c)
        call = msg.tool_calls[0]
        # The client drops the assistant turn entirely and sends only the tool result.
        c.chat.completions.create(
            model="m", messages=[question, tool_result(call.id)], tools=[WEATHER]
        )
    sent = sim.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    reasoning = msg.model_extra["reasoning_content"]
    assert sent[1]["content"] == f"<think>\n{reasoning}\n</think>\n\n{msg.content}"
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == call.function.arguments


def test_repair_by_call_id_stripped_thinking_openai(
    make_proxy: Any, sim: SimServer, store_env: dict[str, str]
) -> None:
    server = make_proxy(**store_env, REQUIRE_SESSION_FOR_REPAIR="false")
    with oai(server, key()) as c:
        question, msg = first_turn(c)
        stripped = {
            "role": "assistant",
            "content": msg.content,
            "tool_calls": [t.model_dump() for t in msg.tool_calls],
        }
        c.chat.completions.create(
            model="m", messages=[question, stripped, tool_result(msg.tool_calls[0].id)]
        )
    assistant = sent_assistant(sim)
    assert assistant["content"].startswith("<think>\n" + msg.model_extra["reasoning_content"])


def test_complete_history_is_never_changed(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(**MEMORY_BY_ID)
    with oai(server, key()) as c:
        question, msg = first_turn(c)
        full = {
            "role": "assistant",
            "content": msg.content,
            "reasoning_content": "my own words",
            "tool_calls": [t.model_dump() for t in msg.tool_calls],
        }
        c.chat.completions.create(
            model="m", messages=[question, full, tool_result(msg.tool_calls[0].id)]
        )
    assert sent_assistant(sim)["content"] == f"<think>\nmy own words\n</think>\n\n{msg.content}"
    assert server.app.state.proxy.sessions.repairs == 0


def test_session_required_by_default(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(
        SESSION_STORE_ENABLED="true",
        SESSION_STORE_BACKEND="memory",
        REQUIRE_TOOL_LINK_VALIDATION="false",
    )
    api_key = key()
    with oai(server, api_key) as c:
        question, msg = first_turn(c)
        call_id = msg.tool_calls[0].id
        c.chat.completions.create(model="m", messages=[question, tool_result(call_id)])
        assert [m["role"] for m in sim.requests[-1].body["messages"]] == ["user", "tool"]
        # With a session id (header), the same request is repaired.
        headers = {"X-Session-Id": "s-1"}
        question, msg = first_turn(c, extra_headers=headers)
        call_id = msg.tool_calls[0].id
        c.chat.completions.create(
            model="m", messages=[question, tool_result(call_id)], extra_headers=headers
        )
        assert [m["role"] for m in sim.requests[-1].body["messages"]] == [
            "user",
            "assistant",
            "tool",
        ]
        # The session id may also come as a body field or a query parameter.
        question, msg = first_turn(
            c, extra_body={"conversation_id": "s-2", "reasoning_split": True}
        )
        c.chat.completions.create(
            model="m",
            messages=[question, tool_result(msg.tool_calls[0].id)],
            extra_query={"conversation_id": "s-2"},
        )
        assert [m["role"] for m in sim.requests[-1].body["messages"]] == [
            "user",
            "assistant",
            "tool",
        ]


def test_only_the_current_tool_loop_is_repaired(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(**MEMORY_BY_ID)
    with oai(server, key()) as c:
        question, msg = first_turn(c)
        old = {
            "role": "assistant",
            "content": "done",
            "tool_calls": [t.model_dump() for t in msg.tool_calls],
        }
        c.chat.completions.create(
            model="m",
            messages=[
                question,
                old,
                tool_result(msg.tool_calls[0].id),
                {"role": "user", "content": "thanks, next question"},
            ],
        )
    assert sent_assistant(sim)["content"] == "done"  # before the last user message: untouched


def test_repair_anthropic_by_tool_use_id(
    make_proxy: Any, sim: SimServer, store_env: dict[str, str]
) -> None:
    server = make_proxy(**store_env, REQUIRE_SESSION_FOR_REPAIR="false")
    tools = [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]
    with anthropic.Anthropic(base_url=server.url, api_key=key(), max_retries=0) as c:
        question = {"role": "user", "content": "Weather in Paris?"}
        first = c.messages.create(model="m", max_tokens=256, messages=[question], tools=tools)
        thinking = first.content[0].thinking
        use = next(b for b in first.content if b.type == "tool_use")
        result = {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}],
        }
        # A client that strips thinking blocks:
        no_thinking = [b.model_dump() for b in first.content if b.type != "thinking"]
        c.messages.create(
            model="m",
            max_tokens=256,
            tools=tools,
            messages=[question, {"role": "assistant", "content": no_thinking}, result],
        )
        assert sent_assistant(sim)["content"].startswith(f"<think>\n{thinking}\n</think>")
        # A client that drops the assistant turn:
        c.messages.create(model="m", max_tokens=256, tools=tools, messages=[question, result])
        sent = sim.requests[-1].body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[1]["tool_calls"][0]["id"] == use.id
        assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == use.input


def test_sqlite_survives_restart(make_proxy: Any, sim: SimServer, tmp_path: Path) -> None:
    env = {
        "SESSION_STORE_ENABLED": "true",
        "SESSION_STORE_BACKEND": "sqlite",
        "SESSION_STORE_PATH": str(tmp_path / "s.db"),
        "REQUIRE_SESSION_FOR_REPAIR": "false",
    }
    api_key = key()
    first = make_proxy(**env)
    with oai(first, api_key) as c:
        question, msg = first_turn(c)
    first_url = first.url
    second = make_proxy(**env)  # a new process would open the same file the same way
    assert second.url != first_url
    with oai(second, api_key) as c:
        c.chat.completions.create(model="m", messages=[question, tool_result(msg.tool_calls[0].id)])
    assert [m["role"] for m in sim.requests[-1].body["messages"]] == ["user", "assistant", "tool"]


def test_keys_are_isolated(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(**MEMORY_BY_ID)
    with oai(server, key()) as c:
        question, msg = first_turn(c)
    call_id = msg.tool_calls[0].id
    with oai(server, key()) as other:
        with pytest.raises(openai.BadRequestError) as info:
            other.chat.completions.create(model="m", messages=[question, tool_result(call_id)])
    assert call_id in info.value.response.json()["error"]["message"]
    assert info.value.response.json()["error"]["code"] == "unknown_tool_call_id"


def test_tool_link_validation_both_apis(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(SESSION_STORE_ENABLED="true", SESSION_STORE_BACKEND="memory")
    with oai(server, key()) as c, pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}, tool_result("call_forged")]
        )
    assert "call_forged" in info.value.response.json()["error"]["message"]
    with anthropic.Anthropic(base_url=server.url, api_key=key(), max_retries=0) as a:
        with pytest.raises(anthropic.BadRequestError) as ainfo:
            a.messages.create(
                model="m",
                max_tokens=10,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_forged", "content": "x"}
                        ],
                    }
                ],
            )
    body = ainfo.value.response.json()
    assert body["type"] == "error" and "toolu_forged" in body["error"]["message"]
    # Off: passed through unchanged.
    lax = make_proxy(
        SESSION_STORE_ENABLED="true",
        SESSION_STORE_BACKEND="memory",
        REQUIRE_TOOL_LINK_VALIDATION="false",
    )
    with oai(lax, key()) as c:
        c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}, tool_result("call_forged")]
        )
    assert sim.requests[-1].body["messages"][-1]["tool_call_id"] == "call_forged"


def test_ttl_expiry(make_proxy: Any, sim: SimServer, store_env: dict[str, str]) -> None:
    server = make_proxy(
        **store_env,
        SESSION_TTL_SECONDS="1",
        REQUIRE_SESSION_FOR_REPAIR="false",
        REQUIRE_TOOL_LINK_VALIDATION="false",
    )
    with oai(server, key()) as c:
        question, msg = first_turn(c)
        time.sleep(2.2)
        c.chat.completions.create(model="m", messages=[question, tool_result(msg.tool_calls[0].id)])
    assert [m["role"] for m in sim.requests[-1].body["messages"]] == ["user", "tool"]


def test_session_keeps_last_n(
    make_proxy: Any, bg: Background, sim: SimServer, store_env: dict[str, str]
) -> None:
    server = make_proxy(**store_env, MAX_MESSAGES_PER_SESSION="2")
    api_key = key()
    with oai(server, api_key) as c:
        for n in range(4):
            c.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": f"question {n}"}],
                extra_headers={"X-Session-Id": "trim"},
            )
    store = server.app.state.proxy.sessions.store
    turns = bg.run(store.session(scope_for(api_key), "trim"))
    assert len(turns) == 2
    assert "question 3" in turns[-1]["content"] and "question 2" in turns[0]["content"]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_store_outage_never_fails_a_request(
    make_proxy: Any, sim: SimServer, tmp_path: Path, backend: str
) -> None:
    env = {
        "SESSION_STORE_ENABLED": "true",
        "SESSION_STORE_BACKEND": backend,
        "REQUIRE_SESSION_FOR_REPAIR": "false",
        # Validation stays on: an unreachable store proves no id unknown, so nothing is rejected.
    }
    if backend == "sqlite":
        env["SESSION_STORE_PATH"] = str(tmp_path / "no-such-dir" / "s.db")
    else:
        env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    server = make_proxy(**env)
    with oai(server, key()) as c:
        question, msg = first_turn(c)
        r = c.chat.completions.create(
            model="m", messages=[question, tool_result(msg.tool_calls[0].id)]
        )
    assert r.choices[0].message.content
    sessions = server.app.state.proxy.sessions
    assert sessions.store_errors >= 2 and sessions.repairs == 0


def test_old_history_is_not_validated(make_proxy: Any, sim: SimServer) -> None:
    """A client that always drops assistant turns keeps working once the stored turn expired."""
    server = make_proxy(
        SESSION_STORE_ENABLED="true",
        SESSION_STORE_BACKEND="memory",
        REQUIRE_SESSION_FOR_REPAIR="false",
        SESSION_TTL_SECONDS="1",
    )
    with oai(server, key()) as c:
        question, msg = first_turn(c)
        result = tool_result(msg.tool_calls[0].id)
        c.chat.completions.create(model="m", messages=[question, result])
        time.sleep(1.5)
        later = [
            question,
            result,
            {"role": "assistant", "content": "18C."},
            {"role": "user", "content": "and tomorrow?"},
        ]
        assert c.chat.completions.create(model="m", messages=later).choices[0].message.content


def test_two_processes_share_redis(make_proxy: Any, sim: SimServer) -> None:
    need_redis()
    env = {
        "SESSION_STORE_ENABLED": "true",
        "SESSION_STORE_BACKEND": "redis",
        "REDIS_URL": REDIS_URL,
        "REQUIRE_SESSION_FOR_REPAIR": "false",
    }
    local = make_proxy(**env)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env, "TABBY_URL": sim.url, "LOG_LEVEL": "warning"},
    )
    try:
        other_url = f"http://127.0.0.1:{port}"
        _wait_up(other_url, proc)
        api_key = key()
        with oai(local, api_key) as c:
            question, msg = first_turn(c)
        with openai.OpenAI(base_url=other_url + "/v1", api_key=api_key, max_retries=0) as c2:
            c2.chat.completions.create(
                model="m", messages=[question, tool_result(msg.tool_calls[0].id)]
            )
        assert [m["role"] for m in sim.requests[-1].body["messages"]] == [
            "user",
            "assistant",
            "tool",
        ]
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    for _ in range(200):
        assert proc.poll() is None, "the second proxy exited"
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the second proxy did not start")


def test_a_session_id_confines_repair_to_that_session(
    make_proxy: Any, sim: SimServer, store_env: dict[str, str]
) -> None:
    server = make_proxy(**store_env, REQUIRE_TOOL_LINK_VALIDATION="false")
    with oai(server, key()) as c:
        question, msg = first_turn(c, extra_headers={"X-Session-Id": "session-a"})
        call = msg.tool_calls[0]
        stripped = {"role": "assistant", "content": msg.content, "tool_calls": [call.model_dump()]}
        in_b = {"extra_headers": {"X-Session-Id": "session-b"}}
        # Session B drops A's assistant turn: nothing from A is put back.
        c.chat.completions.create(model="m", messages=[question, tool_result(call.id)], **in_b)
        assert [m["role"] for m in sim.requests[-1].body["messages"]] == ["user", "tool"]
        # Session B strips the thinking of A's turn: it is not restored from A.
        c.chat.completions.create(
            model="m", messages=[question, stripped, tool_result(call.id)], **in_b
        )
        assert "<think>" not in sent_assistant(sim)["content"]
        # Session A itself is repaired.
        c.chat.completions.create(
            model="m",
            messages=[question, tool_result(call.id)],
            extra_headers={"X-Session-Id": "session-a"},
        )
        assert [m["role"] for m in sim.requests[-1].body["messages"]] == [
            "user",
            "assistant",
            "tool",
        ]


def test_a_foreign_session_call_id_is_unknown_to_validation(
    make_proxy: Any, sim: SimServer
) -> None:
    server = make_proxy(SESSION_STORE_ENABLED="true", SESSION_STORE_BACKEND="memory")
    with oai(server, key()) as c:
        question, msg = first_turn(c, extra_headers={"X-Session-Id": "session-a"})
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(
                model="m",
                messages=[question, tool_result(msg.tool_calls[0].id)],
                extra_headers={"X-Session-Id": "session-b"},
            )
    assert info.value.response.json()["error"]["code"] == "unknown_tool_call_id"


def test_without_required_sessions_call_ids_find_turns_across_sessions(
    make_proxy: Any, sim: SimServer
) -> None:
    server = make_proxy(**MEMORY_BY_ID)
    with oai(server, key()) as c:
        question, msg = first_turn(c, extra_headers={"X-Session-Id": "session-a"})
        c.chat.completions.create(
            model="m",
            messages=[question, tool_result(msg.tool_calls[0].id)],
            extra_headers={"X-Session-Id": "session-b"},
        )
    assert [m["role"] for m in sim.requests[-1].body["messages"]] == ["user", "assistant", "tool"]
