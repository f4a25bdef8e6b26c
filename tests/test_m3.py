"""MiniMax-M3 through the real path: the openai and anthropic SDKs, the proxy, the simulated M3.

The simulated M3 (``proxy/sim/m3.py``) writes M3's raw text in the thinking mode it
is sent and reads every history as the M3 template does: started with
``strict_thinking``, it answers 400 when an assistant turn it generated comes back
without its thinking, so every multi-turn loop below proves that thinking came back
on every turn (its records also say how many turns it recognised, so a loop that
sent nothing back cannot pass by accident).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

import parser
from proxy.config import Settings
from proxy.grammar import M2, M3, apply_thinking_mode, choose, names_m3, thinking_mode
from proxy.replay import replay
from proxy.request import think_content
from proxy.sim import RequestRecord, SimServer, start_sim
from proxy.sim.m3 import NS
from tests.servers import Background, ProxyServer
from tests.test_sessions import WEATHER

ORDER = {
    "type": "function",
    "function": {
        "name": "create_order",
        "description": "Place an order",
        "parameters": {
            "type": "object",
            "properties": {
                "user_id": {"type": "integer"},
                "urgent": {"type": "boolean"},
                "shipping": {"type": "object", "properties": {"city": {"type": "string"}}},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                    },
                },
                "note": {"type": "string"},
            },
            "required": ["user_id", "items"],
        },
    },
}
TOOLS = [ORDER, WEATHER]
ANTHROPIC_TOOLS = [
    {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in TOOLS
]
RESPONSES_TOOLS = [{"type": "function", **t["function"]} for t in TOOLS]
SETTINGS = Settings.from_env({}, env_file=None)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def m3_server(bg: Background) -> Iterator[SimServer]:
    server = bg.run(start_sim(model="MiniMax-M3", strict_thinking=True))
    yield server
    bg.run(server.close())


@pytest.fixture
def m3(m3_server: SimServer) -> SimServer:
    m3_server.reset()
    return m3_server


@pytest.fixture(scope="module")
def m3_proxy(bg: Background, m3_server: SimServer) -> Iterator[ProxyServer]:
    from tests.servers import settings_for

    server = bg.run(ProxyServer(settings_for(m3_server.url)).start())
    yield server
    bg.run(server.stop())


@pytest.fixture
def oai(m3_proxy: ProxyServer, m3: SimServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=m3_proxy.url + "/v1", api_key="k", max_retries=0) as c:
        yield c


@pytest.fixture
def ant(m3_proxy: ProxyServer, m3: SimServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=m3_proxy.url, api_key="k", max_retries=0) as c:
        yield c


def chats(sim: SimServer) -> list[RequestRecord]:
    return [r for r in sim.requests if r.path == "/v1/chat/completions"]


def no_markup(text: str | None) -> None:
    for marker in (NS, "<mm:think>", "</mm:think>", "<tool_call>", "<invoke", "]~b]", "[e~["):
        assert marker not in (text or ""), (marker, text)


# ------------------------------------------------------------------------------ the rules


def test_m3_names_any_case_and_path() -> None:
    for name in (
        "MiniMax-M3",
        "minimax-m3",
        "MiniMaxAI/MiniMax-M3",
        "MiniMax-M3-NVFP4",
        "MINIMAX-M3",
        "/models/MiniMaxAI/MiniMax-M3-NVFP4",
    ):
        assert names_m3(name), name
    for name in ("MiniMax-M2", "MiniMax-M2.5", "minimax-m2", "gpt-4o", "MiniMax-M30", "", None):
        assert not names_m3(name), name
    assert choose("auto", "served", "MiniMaxAI/MiniMax-M3") is M3
    assert choose("auto", "MiniMax-M2.7", None) is M2
    assert choose("m3", "MiniMax-M2", None) is M3
    assert choose("m2", "MiniMax-M3", None) is M2


def test_history_shapes() -> None:
    # M3: inline at the start, no newlines added; none at all without reasoning.
    assert M3.history("  why  ", "answer") == "<mm:think>why</mm:think>answer"
    assert M3.history(None, "answer") == "answer"
    assert M3.history("", "") == ""
    # Passed through in the OpenAI content (as the proxy shows it), or template-style.
    shown = M3.shown_open + "why" + M3.shown_close + "answer"
    assert M3.history(None, shown) == "<mm:think>why</mm:think>answer"
    assert M3.history("other", "why</mm:think>answer") == "<mm:think>why</mm:think>answer"
    assert M3.history("field", "<mm:think></mm:think>answer") == (
        "<mm:think>field</mm:think>answer"
    )
    # M2 is what it always was.
    for reasoning, text in [
        ("r", "t"),
        (None, "t"),
        ("r", "<think>\nx\n</think>\n\nt"),
        ("r", "x</think>t"),
        ("", ""),
    ]:
        assert M2.history(reasoning, text) == think_content(reasoning, text)
    assert M2.history("r", "t") == "<think>\nr\n</think>\n\nt"


@pytest.mark.parametrize(
    ("body", "mode"),
    [
        ({}, "adaptive"),
        (
            {
                "chat_template_kwargs": {"thinking_mode": "disabled"},
                "thinking": {"type": "enabled"},
            },
            "disabled",
        ),
        ({"extra_body": {"chat_template_kwargs": {"thinking_mode": "enabled"}}}, "enabled"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "reasoning_effort": "none"},
            "enabled",
        ),
        ({"thinking": {"type": "adaptive"}}, "adaptive"),
        ({"extra_body": {"thinking": {"type": "disabled"}}}, "disabled"),
        ({"reasoning_effort": "none"}, "disabled"),
        ({"reasoning_effort": "minimal"}, "disabled"),
        ({"reasoning_effort": "low"}, "adaptive"),
        ({"reasoning_effort": "medium"}, "enabled"),
        ({"reasoning_effort": "high"}, "enabled"),
        ({"reasoning": {"effort": "low", "summary": "auto"}}, "adaptive"),
        ({"reasoning": {"effort": "xhigh"}}, "enabled"),
    ],
)
def test_thinking_mode_sources(body: dict[str, Any], mode: str) -> None:
    assert thinking_mode(body, SETTINGS) == mode
    backend: dict[str, Any] = {"chat_template_kwargs": {"keep": 1}}
    starts = apply_thinking_mode(M3, body, backend, SETTINGS)
    assert backend["chat_template_kwargs"] == {"keep": 1, "thinking_mode": mode}
    assert starts is (mode == "enabled")
    assert apply_thinking_mode(M2, body, {}, SETTINGS) is None  # M2: STARTS_IN_THINK decides


def test_thinking_mode_setting() -> None:
    s = Settings.from_env({"THINKING_MODE": "Enabled"}, env_file=None)
    assert thinking_mode({}, s) == "enabled"


# ------------------------------------------------------------------------------ chat completions


def _chat_message(client: openai.OpenAI, stream: bool, **kw: Any) -> dict[str, Any]:
    """One chat turn as the client would put it back into its history."""
    kw = {"model": "MiniMax-M3", "tools": TOOLS, **kw}
    if not stream:
        msg = client.chat.completions.create(**kw).choices[0].message
        return msg.model_dump(exclude_none=True)
    reasoning, content, calls = "", "", {}
    for chunk in client.chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(
                tc.index,
                {"id": tc.id, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if tc.function and tc.function.name:
                slot["function"]["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["function"]["arguments"] += tc.function.arguments
    out: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        out["reasoning_content"] = reasoning
    if calls:
        out["tool_calls"] = list(calls.values())
    return out


def _results(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": c["id"], "content": f"done: {c['function']['name']}"}
        for c in message.get("tool_calls") or ()
    ]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("split", [True, False])
def test_chat_tool_loop_keeps_thinking_on_every_turn(
    oai: openai.OpenAI, m3: SimServer, stream: bool, split: bool
) -> None:
    extra = {"reasoning_split": True} if split else {}
    history: list[dict[str, Any]] = [{"role": "user", "content": "Order two items for me"}]
    for turn in range(4):
        if turn == 2:
            history.append({"role": "user", "content": "Now in parallel: order and weather"})
        msg = _chat_message(oai, stream, messages=history, extra_body=extra)
        rec = chats(m3)[-1]
        assert rec.grammar == "m3" and rec.thinking_mode == "adaptive"
        assert rec.thinking_lost == []
        # Every assistant turn so far was recognised: its thinking came back as generated.
        assert rec.history_checked == sum(m["role"] == "assistant" for m in history)
        if split:
            assert msg["reasoning_content"].strip() == rec.raw.split("</mm:think>")[0][10:].strip()
            no_markup(msg["content"])
        else:
            assert msg["content"].startswith("<mm:think>\n")
            assert "\n</mm:think>\n\n" in msg["content"]
            no_markup(msg["content"].split("</mm:think>", 1)[1])
        planned = rec.tool_calls
        got = [json.loads(c["function"]["arguments"]) for c in msg.get("tool_calls") or ()]
        assert got == [c["arguments"] for c in planned]
        history.append(msg)
        history += _results(msg)
    assert len(chats(m3)) == 4
    assert len(chats(m3)[2].tool_calls) == 2  # parallel calls, one block
    assert chats(m3)[-1].history_checked == 3


def test_chat_nested_arguments_stream_as_generated(oai: openai.OpenAI, m3: SimServer) -> None:
    stream = oai.chat.completions.create(
        model="MiniMax-M3",
        messages=[{"role": "user", "content": "order please"}],
        tools=[ORDER],
        stream=True,
        stream_options={"include_usage": True},
    )
    fragments, usage = [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if tc.function and tc.function.arguments:
                fragments.append(tc.function.arguments)
    planned = chats(m3)[-1].tool_calls[0]["arguments"]
    assert json.loads("".join(fragments)) == planned
    assert isinstance(planned["items"], list) and isinstance(planned["items"][0], dict)
    # Incremental: the nested array opened before the call was complete.
    assert len(fragments) > 3
    assert usage is not None and usage.completion_tokens > 0


def test_chat_client_kwargs_merge_and_modes(oai: openai.OpenAI, m3: SimServer) -> None:
    ask = [{"role": "user", "content": "hello there"}]
    oai.chat.completions.create(
        model="MiniMax-M3",
        messages=ask,
        extra_body={"chat_template_kwargs": {"thinking_mode": "enabled", "custom": 1}},
    )
    assert chats(m3)[-1].body["chat_template_kwargs"] == {"thinking_mode": "enabled", "custom": 1}
    msg = (
        oai.chat.completions.create(
            model="MiniMax-M3",
            messages=ask,
            reasoning_effort="minimal",
            extra_body={"reasoning_split": True},
        )
        .choices[0]
        .message
    )
    assert chats(m3)[-1].body["chat_template_kwargs"] == {"thinking_mode": "disabled"}
    assert not (msg.model_extra or {}).get("reasoning_content")
    assert msg.content and msg.content.startswith("Here is my answer")
    msg = (
        oai.chat.completions.create(
            model="MiniMax-M3",
            messages=[{"role": "user", "content": "a quick one"}],
            extra_body={"reasoning_split": True},
        )
        .choices[0]
        .message
    )
    assert chats(m3)[-1].raw.startswith("</mm:think>")  # adaptive, chose not to think
    assert not (msg.model_extra or {}).get("reasoning_content")
    no_markup(msg.content)


@pytest.mark.parametrize("mode", ["enabled", "disabled", "adaptive"])
def test_every_habit_reads_clean(oai: openai.OpenAI, m3: SimServer, mode: str) -> None:
    for said in (
        "order please SIM_HABITS:all",
        "a quick order SIM_HABITS:all",
        "just talk SIM_HABITS:all",
    ):
        tools = None if "talk" in said else [ORDER]
        msg = (
            oai.chat.completions.create(
                model="MiniMax-M3",
                messages=[{"role": "user", "content": said}],
                extra_body={"reasoning_split": True, "thinking": {"type": mode}},
                **({"tools": tools} if tools else {}),
            )
            .choices[0]
            .message
        )
        rec = chats(m3)[-1]
        no_markup(msg.content)
        no_markup((msg.model_extra or {}).get("reasoning_content"))
        thinks = "<mm:think>" in rec.raw or mode == "enabled"
        assert bool((msg.model_extra or {}).get("reasoning_content")) == thinks, rec.raw
        got = [json.loads(c.function.arguments) for c in msg.tool_calls or ()]
        assert got == [c["arguments"] for c in rec.tool_calls]


def test_bad_thinking_mode_is_a_400_in_each_api(
    oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.BadRequestError, match="thinking_mode must be enabled"):
        oai.chat.completions.create(
            model="MiniMax-M3",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"chat_template_kwargs": {"thinking_mode": "maybe"}},
        )
    with pytest.raises(anthropic.BadRequestError, match="thinking must be"):
        ant.messages.create(
            model="MiniMax-M3",
            max_tokens=100,
            thinking={"type": "sometimes"},  # type: ignore[arg-type,misc]
            messages=[{"role": "user", "content": "x"}],
        )
    with pytest.raises(openai.BadRequestError, match="thinking must be"):
        oai.responses.create(model="MiniMax-M3", input="x", extra_body={"thinking": "on"})


# ------------------------------------------------------------------------------ Messages


def _anthropic_turn(client: anthropic.Anthropic, stream: bool, **kw: Any) -> list[dict[str, Any]]:
    kw = {"model": "MiniMax-M3", "max_tokens": 4000, "tools": ANTHROPIC_TOOLS, **kw}
    if stream:
        with client.messages.stream(**kw) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kw)
    return [b.model_dump(exclude_none=True) for b in message.content]


@pytest.mark.parametrize("stream", [False, True])
def test_messages_tool_loop_keeps_thinking(
    ant: anthropic.Anthropic, m3: SimServer, stream: bool
) -> None:
    history: list[dict[str, Any]] = [{"role": "user", "content": "Order it, please"}]
    for turn in range(4):
        if turn == 2:
            history.append({"role": "user", "content": "Next: parallel weather and order"})
        blocks = _anthropic_turn(
            ant, stream, messages=history, thinking={"type": "enabled", "budget_tokens": 1024}
        )
        rec = chats(m3)[-1]
        assert rec.thinking_mode == "enabled" and rec.thinking_lost == []
        assert rec.history_checked == sum(m["role"] == "assistant" for m in history)
        kinds = [b["type"] for b in blocks]
        assert kinds[0] == "thinking"
        for b in blocks:
            no_markup(b.get("text") or b.get("thinking"))
        uses = [b for b in blocks if b["type"] == "tool_use"]
        assert [u["input"] for u in uses] == [c["arguments"] for c in rec.tool_calls]
        history.append({"role": "assistant", "content": blocks})
        if uses:
            history.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": u["id"], "content": "ok"}
                        for u in uses
                    ],
                }
            )
    assert chats(m3)[-1].history_checked == 3


def test_messages_thinking_disabled(ant: anthropic.Anthropic, m3: SimServer) -> None:
    message = ant.messages.create(
        model="MiniMax-M3",
        max_tokens=500,
        thinking={"type": "disabled"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert chats(m3)[-1].body["chat_template_kwargs"] == {"thinking_mode": "disabled"}
    assert [b.type for b in message.content] == ["text"]


# ------------------------------------------------------------------------------ Responses


@pytest.mark.parametrize("stream", [False, True])
def test_responses_tool_loop_with_previous_response_id(
    oai: openai.OpenAI, m3: SimServer, stream: bool
) -> None:
    def create(**kw: Any) -> Any:
        kw = {"model": "MiniMax-M3", "tools": RESPONSES_TOOLS, **kw}
        if not stream:
            return oai.responses.create(**kw)
        with oai.responses.stream(**kw) as s:
            return s.get_final_response()

    first = create(input="Order something", reasoning={"effort": "high"})
    assert chats(m3)[-1].thinking_mode == "enabled"
    calls = [i for i in first.output if i.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [
        c["arguments"] for c in chats(m3)[-1].tool_calls
    ]
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": "ok"} for c in calls
    ]
    second = create(input=outputs, previous_response_id=first.id, reasoning={"effort": "high"})
    rec = chats(m3)[-1]
    assert rec.history_checked == 1 and rec.thinking_lost == []
    third = create(input="and now parallel", previous_response_id=second.id)
    rec = chats(m3)[-1]
    assert rec.thinking_mode == "adaptive"
    assert rec.history_checked == 2 and rec.thinking_lost == []
    assert len([i for i in third.output if i.type == "function_call"]) == 2


def test_responses_stateless_encrypted_content(oai: openai.OpenAI, m3: SimServer) -> None:
    """Codex's way: store false, reasoning carried only in encrypted_content."""
    items: list[Any] = [{"role": "user", "content": "Order something"}]
    for turn in range(3):
        if turn == 2:
            items.append({"role": "user", "content": "parallel now"})
        resp = oai.responses.create(
            model="MiniMax-M3",
            input=items,
            tools=RESPONSES_TOOLS,
            store=False,
            include=["reasoning.encrypted_content"],
        )
        rec = chats(m3)[-1]
        assert rec.history_checked == turn and rec.thinking_lost == []
        out = [i.model_dump(exclude_none=True) for i in resp.output]
        for item in out:
            if item["type"] == "reasoning":
                assert item["encrypted_content"]
                item["summary"] = []  # only the sealed value carries the thinking back
        items += out
        items += [
            {"type": "function_call_output", "call_id": i["call_id"], "output": "ok"}
            for i in out
            if i["type"] == "function_call"
        ]


# ------------------------------------------------------------------------------ history sources


def _stripped(client: openai.OpenAI, history: list[dict[str, Any]], strip: bool) -> Any:
    msg = (
        client.chat.completions.create(
            model="MiniMax-M3",
            messages=history,
            tools=TOOLS,
            extra_headers={"X-Session-Id": "s1"},
            extra_body={"reasoning_split": True},
        )
        .choices[0]
        .message.model_dump(exclude_none=True)
    )
    if strip:
        for key in ("reasoning_content", "reasoning_details"):
            msg.pop(key)  # what many clients do with a tool-call turn
    return msg


def test_thinking_dropped_by_the_client_is_caught_then_repaired(
    m3: SimServer, make_proxy: Callable[..., ProxyServer]
) -> None:
    """The check can fail: a client that drops reasoning loses it (the strict template's
    400); with session repair the proxy puts it back, before the last user message too."""
    plain = make_proxy(m3.url)
    with openai.OpenAI(base_url=plain.url + "/v1", api_key="k", max_retries=0) as c:
        history: list[dict[str, Any]] = [{"role": "user", "content": "Order it"}]
        first = _stripped(c, history, strip=True)
        with pytest.raises(openai.BadRequestError, match="without the thinking"):
            _stripped(c, [*history, first, *_results(first)], strip=False)
        assert chats(m3)[-1].thinking_lost == [1]

    repaired = make_proxy(m3.url, SESSION_STORE_ENABLED="true", SESSION_STORE_BACKEND="memory")
    with openai.OpenAI(base_url=repaired.url + "/v1", api_key="k", max_retries=0) as c:
        first = _stripped(c, history, strip=True)
        history += [first, *_results(first)]
        answer = _stripped(c, history, strip=False)
        assert chats(m3)[-1].history_checked == 1 and chats(m3)[-1].thinking_lost == []
        history += [answer, {"role": "user", "content": "once more"}]
        _stripped(c, history, strip=False)
        # The first turn stands before the last user message now: M3 still needs it.
        rec = chats(m3)[-1]
        assert rec.history_checked == 2 and rec.thinking_lost == []
        assert rec.body["messages"][1]["content"].startswith("<mm:think>")


def test_reasoning_field_variants_reach_the_template(oai: openai.OpenAI, m3: SimServer) -> None:
    first = (
        oai.chat.completions.create(
            model="MiniMax-M3",
            tools=TOOLS,
            messages=[{"role": "user", "content": "Order it"}],
            extra_body={"reasoning_split": True},
        )
        .choices[0]
        .message
    )
    base = first.model_dump(exclude_none=True)
    reasoning = base.pop("reasoning_content")
    details = base.pop("reasoning_details")
    for variant in (
        {"reasoning_content": reasoning},
        {"reasoning": reasoning},
        {"reasoning_details": details},
        {"content": f"<mm:think>{reasoning}</mm:think>{base['content']}"},
    ):
        msg = {**base, **variant}
        oai.chat.completions.create(
            model="MiniMax-M3",
            tools=TOOLS,
            messages=[{"role": "user", "content": "Order it"}, msg, *_results(msg)],
        )
        rec = chats(m3)[-1]
        assert rec.history_checked == 1 and rec.thinking_lost == [], variant
        sent = rec.body["messages"][1]["content"]
        assert sent.startswith(f"<mm:think>{reasoning.strip()}</mm:think>"), sent
        assert "reasoning_content" not in rec.body["messages"][1]


# ------------------------------------------------------------------------------ models and grammar


def _one(client: openai.OpenAI, model: str) -> Any:
    return (
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "order please"}],
            tools=TOOLS,
            extra_body={"reasoning_split": True},
        )
        .choices[0]
        .message
    )


def test_two_models_on_one_proxy_each_get_their_grammar(
    bg: Background, make_proxy: Callable[..., ProxyServer]
) -> None:
    sim = bg.run(start_sim(model="MiniMax-M2.7", models=("MiniMaxAI/MiniMax-M3",)))
    try:
        proxy = make_proxy(sim.url)
        with openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as c:
            for model, grammar in (
                ("MiniMax-M2.7", "m2"),
                ("MiniMaxAI/MiniMax-M3", "m3"),
                ("gpt-4o", "m2"),
            ):
                msg = _one(c, model)
                rec = chats(sim)[-1]
                assert rec.grammar == grammar
                assert ("chat_template_kwargs" in rec.body) == (grammar == "m3")
                assert [json.loads(t.function.arguments) for t in msg.tool_calls or ()] == [
                    call["arguments"] for call in rec.tool_calls
                ]
                no_markup(msg.content)
                assert "<think>" not in (msg.content or "")
    finally:
        bg.run(sim.close())


def test_root_names_the_grammar_and_the_setting_overrides(
    bg: Background, make_proxy: Callable[..., ProxyServer]
) -> None:
    sim = bg.run(start_sim(model="local", root="/ckpt/MiniMaxAI/MiniMax-M3-NVFP4"))
    try:
        for setting, grammar in (("auto", "m3"), ("m3", "m3")):
            proxy = make_proxy(sim.url, MODEL_GRAMMAR=setting)
            with openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as c:
                msg = _one(c, "local")
            assert chats(sim)[-1].grammar == grammar
            assert chats(sim)[-1].body["chat_template_kwargs"] == {"thinking_mode": "adaptive"}
            assert msg.tool_calls and (msg.model_extra or {}).get("reasoning_content")
        # Fixed to m2: the M3 text is not read as tool calls (the setting is obeyed).
        proxy = make_proxy(sim.url, MODEL_GRAMMAR="m2")
        with openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as c:
            msg = _one(c, "local")
        assert "chat_template_kwargs" not in chats(sim)[-1].body
        assert not msg.tool_calls
    finally:
        bg.run(sim.close())


def test_sim_lists_m3_with_its_root(m3: SimServer) -> None:
    data = httpx.get(m3.url + "/v1/models").json()["data"]
    assert data[0]["id"] == "MiniMax-M3" and data[0]["root"] == "MiniMax-M3"


# ------------------------------------------------------------------------------ images


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def test_images_pass_to_m3_and_are_notes_for_m2(
    bg: Background, make_proxy: Callable[..., ProxyServer]
) -> None:
    sim = bg.run(start_sim(model="MiniMax-M2", models=("MiniMax-M3",)))
    try:
        proxy = make_proxy(sim.url)  # BACKEND_IMAGES=auto, the default
        image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
        ask = [{"role": "user", "content": [{"type": "text", "text": "what is it"}, image]}]
        with openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as c:
            c.chat.completions.create(model="MiniMax-M3", messages=ask)  # type: ignore[arg-type]
            assert chats(sim)[-1].body["messages"][0]["content"][1] == image
            c.chat.completions.create(model="MiniMax-M2", messages=ask)  # type: ignore[arg-type]
            part = chats(sim)[-1].body["messages"][0]["content"]
            assert "[image omitted: image/png" in json.dumps(part)
        with anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0) as a:
            block = {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
            }
            a.messages.create(
                model="MiniMax-M3",
                max_tokens=100,
                messages=[{"role": "user", "content": [block, {"type": "text", "text": "what"}]}],
            )  # type: ignore[list-item]
            sent = chats(sim)[-1].body["messages"][0]["content"]
            assert sent[0]["type"] == "image_url"
        with openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as c:
            c.responses.create(
                model="MiniMax-M3",
                input=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "what"},
                            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                        ],
                    }
                ],
            )
            sent = chats(sim)[-1].body["messages"][0]["content"]
            assert sent[1]["type"] == "image_url"
    finally:
        bg.run(sim.close())


# ------------------------------------------------------------------------------ traces and replay


def test_trace_records_the_grammar_and_replays(
    tmp_path: Any, m3: SimServer, make_proxy: Callable[..., ProxyServer]
) -> None:
    path = tmp_path / "trace.jsonl"
    proxy = make_proxy(m3.url, ENABLE_STREAMING_DEBUG="true", STREAMING_DEBUG_PATH=str(path))
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as c:
        list(
            c.chat.completions.create(
                model="MiniMax-M3",
                tools=TOOLS,
                stream=True,
                messages=[{"role": "user", "content": "order please SIM_HABITS:all"}],
                extra_body={"thinking": {"type": "enabled"}},
            )
        )
    for _ in range(500):
        if path.exists() and path.read_text().strip():
            break
        time.sleep(0.02)
    record = json.loads(path.read_text().splitlines()[-1])
    assert record["grammar"] == "m3" and record["starts_in_think"] is True
    bodies, same = replay(record)
    assert same
    calls = json.loads(bodies["openai"])["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        c["arguments"] for c in chats(m3)[-1].tool_calls
    ]
    # The same raw text read as M2 is not a tool call: the grammar is what reproduces it.
    assert not parser.parse("".join(record["deltas"]), TOOLS, True).tool_calls


# ------------------------------------------------------------------------------ the simulated M3


@pytest.mark.parametrize("habits", ["none", "all", "auto"])
@pytest.mark.parametrize("mode", ["enabled", "disabled", "adaptive"])
def test_sim_m3_text_reads_back_as_planned(mode: str, habits: str) -> None:
    """Whatever the mode and habits, M3's text holds exactly the turn the sim planned."""
    from proxy.sim.m3 import render
    from proxy.sim.replies import plan_turn

    for said, tools in [("hello", None), ("a quick hello", None), ("order it", [ORDER]),
                        ("parallel please", TOOLS), ("long parallel", [ORDER]),
                        ("a quick order", TOOLS)]:  # fmt: skip
        body = {"messages": [{"role": "user", "content": said}], "tools": tools}
        raw, written = render(plan_turn(body), mode, habits)
        got = parser.parse(raw, tools, starts_in_think=mode == "enabled", grammar="m3")
        assert (got.reasoning or "").strip() == written.reasoning, (said, raw[:200])
        assert (got.content or "").strip() == written.text.strip(), (said, raw[:200])
        assert [c.arguments for c in got.tool_calls] == [c["arguments"] for c in written.calls]
        if len(written.calls) > 1:
            assert raw.count(f"{NS}<tool_call>") == 1  # parallel calls share one block
    order = render(plan_turn({"messages": [{"role": "user", "content": "order"}],
                              "tools": [ORDER]}), "disabled", "none")[0]  # fmt: skip
    assert f"{NS}<items>{NS}<item>{NS}<sku>" in order  # nested: an array of objects


def test_cut_in_a_tool_call_never_looks_finished(oai: openai.OpenAI, m3: SimServer) -> None:
    stream = oai.chat.completions.create(
        model="MiniMax-M3",
        messages=[{"role": "user", "content": "SIM_FAULT:cut_in_tool long order"}],
        tools=[ORDER],
        stream=True,
    )
    started, finish = False, None
    with pytest.raises(openai.APIError, match="closed the stream early"):
        for chunk in stream:
            if chunk.choices:
                started |= bool(chunk.choices[0].delta.tool_calls)
                finish = chunk.choices[0].finish_reason or finish
    assert started and finish is None
    assert chats(m3)[-1].outcome == "cut"


def test_demo_on_m3() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "proxy.demo", "--model", "MiniMax-M3"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "round trips complete" in out.stdout
    assert "simulated MiniMax-M3" in out.stdout
    assert "tool call: get_weather(" in out.stdout
    assert "2 assistant turns sent back, all with their thinking" in out.stdout


def test_m3_runs_an_agents_shell_command(oai: openai.OpenAI, m3: SimServer) -> None:
    """As the M2 sim does for coding agents: "run `cmd`" with a shell tool is that call."""
    bash = {"type": "function", "function": {"name": "bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}},
        "required": ["command"]}}}  # fmt: skip
    msg = (
        oai.chat.completions.create(
            model="MiniMax-M3",
            messages=[{"role": "user", "content": "Please run `ls -la src` for me"}],
            tools=[bash],  # type: ignore[list-item]
        )
        .choices[0]
        .message
    )
    assert msg.tool_calls and msg.tool_calls[0].function.name == "bash"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"command": "ls -la src"}
    assert chats(m3)[-1].raw.count(f"{NS}<command>ls -la src{NS}</command>") == 1
