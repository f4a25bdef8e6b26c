"""The public API of ``parser`` (DESIGN.md section 3) and its streaming promises."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import parser
from parser import ContentText, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart
from tests.parser.helpers import feed_all, normalize, render_call

EXPORTS = {
    "StreamParser",
    "parse",
    "ToolCall",
    "ParseResult",  # the type parse() returns
    "Event",
    "ThinkText",
    "ContentText",
    "ToolCallStart",
    "ToolArgs",
    "ToolCallEnd",
    "ParserError",
    "ParserUsageError",
}
EVENT_CLASSES = [ThinkText, ContentText, ToolCallStart, ToolArgs, ToolCallEnd]
SAMPLE_EVENTS = [
    ThinkText("t"),
    ContentText("c"),
    ToolCallStart(0, "f"),
    ToolArgs(0, "{}"),
    ToolCallEnd(0, "f", {}),
]


# --------------------------------------------------------------------------- exports


def test_all_is_exactly_the_public_api() -> None:
    assert set(parser.__all__) == EXPORTS
    assert len(parser.__all__) == len(EXPORTS)
    for name in parser.__all__:
        assert getattr(parser, name) is not None


def test_event_union_covers_the_event_classes() -> None:
    assert set(parser.Event.__args__) == set(EVENT_CLASSES)


@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=lambda e: type(e).__name__)
def test_events_are_frozen_slotted_and_final(event: Any) -> None:
    cls = type(event)
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert hasattr(cls, "__slots__") and not hasattr(event, "__dict__")
    assert getattr(cls, "__final__", False) is True
    field = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, None)
    assert event == dataclasses.replace(event)


def test_error_hierarchy() -> None:
    assert issubclass(parser.ParserError, Exception)
    assert issubclass(parser.ParserUsageError, parser.ParserError)


def test_feed_after_close_raises_usage_error() -> None:
    p = parser.StreamParser()
    p.feed("abc")
    p.close()
    with pytest.raises(parser.ParserUsageError) as excinfo:
        p.feed("more")
    # Only the class is part of the contract, not the message text.
    assert type(excinfo.value) is parser.ParserUsageError
    assert isinstance(excinfo.value, parser.ParserError)


def test_feed_and_close_return_lists() -> None:
    p = parser.StreamParser()
    assert isinstance(p.feed(""), list)
    assert isinstance(p.feed("x"), list)
    assert isinstance(p.close(), list)


def test_defaults_start_in_think_with_no_tools() -> None:
    events = feed_all(["why? ", "because</think>ok"])
    assert normalize(events) == [ThinkText("why? because"), ContentText("ok")]
    assert parser.parse("7</think>").reasoning == "7"


def test_parse_result_and_tool_call_fields() -> None:
    text = "hmm</think>Sure." + render_call("get_weather", {"location": "Oslo", "days": 2})
    result = parser.parse(text, tools=[WEATHER_OPENAI])
    assert result.reasoning == "hmm"
    assert result.content == "Sure."
    [call] = result.tool_calls
    assert isinstance(call, parser.ToolCall)
    assert (call.index, call.name, call.arguments) == (
        0,
        "get_weather",
        {"location": "Oslo", "days": 2},
    )
    assert call.arguments_json == '{"location": "Oslo", "days": 2}'
    assert parser.parse("").tool_calls == []


# --------------------------------------------------------------------------- tools formats

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
}
WEATHER_OPENAI = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA},
}


@pytest.mark.parametrize(
    "tool",
    [
        WEATHER_OPENAI,
        {"name": "get_weather", "parameters": WEATHER_SCHEMA},
        {"name": "get_weather", "input_schema": WEATHER_SCHEMA},
    ],
    ids=["openai", "name_parameters", "anthropic_input_schema"],
)
def test_tools_formats_are_all_accepted(tool: dict) -> None:
    text = render_call("get_weather", {"location": "Oslo", "days": 3})
    [call] = parser.parse(text, tools=[tool]).tool_calls
    assert call.arguments == {"location": "Oslo", "days": 3}
    assert type(call.arguments["days"]) is int
    events = feed_all([text], tools=[tool])
    assert next(e for e in events if isinstance(e, ToolCallEnd)).arguments["days"] == 3


@pytest.mark.parametrize("tools", [None, []], ids=["none", "empty"])
def test_no_tools_means_string_values(tools: Any) -> None:
    [call] = parser.parse(render_call("get_weather", {"days": 3}), tools=tools).tool_calls
    assert call.arguments == {"days": "3"}


def test_tools_of_different_formats_in_one_list() -> None:
    tools = [
        WEATHER_OPENAI,
        {
            "name": "sleep",
            "input_schema": {"type": "object", "properties": {"s": {"type": "number"}}},
        },
    ]
    text = (
        "<minimax:tool_call>\n"
        + (
            '<invoke name="sleep">\n<parameter name="s">0.5</parameter>\n</invoke>\n'
            '<invoke name="get_weather">\n<parameter name="days">1</parameter>\n</invoke>\n'
        )
        + "</minimax:tool_call>"
    )
    calls = parser.parse(text, tools=tools).tool_calls
    assert [c.arguments for c in calls] == [{"s": 0.5}, {"days": 1}]


# --------------------------------------------------------------------------- streaming


def _collect(p: parser.StreamParser, *deltas: str) -> list[Any]:
    out: list[Any] = []
    for d in deltas:
        out.extend(p.feed(d))
    return out


@pytest.mark.parametrize("starts_in_think", [True, False])
@pytest.mark.parametrize(
    ("head", "name_done"),
    [
        ('<minimax:tool_call>\n<invoke name="get_weather"', ">"),
        ("<minimax:tool_call>\n<invoke name='get_weather'", ">"),
        ("<minimax:tool_call>\n<invoke name=get_weather", ">"),
        ('<minimax:tool_call>\n<invoke name="get_weather"  ', ">"),
    ],
    ids=["double_quoted", "single_quoted", "unquoted", "spaces_before_gt"],
)
def test_tool_call_start_arrives_with_the_closing_gt(
    starts_in_think: bool, head: str, name_done: str
) -> None:
    p = parser.StreamParser(tools=[WEATHER_OPENAI], starts_in_think=starts_in_think)
    before = _collect(p, *head)
    assert not any(isinstance(e, ToolCallStart) for e in before)
    after = p.feed(name_done)
    assert ToolCallStart(0, "get_weather") in after
    assert not any(isinstance(e, (ThinkText, ContentText)) for e in before + after)


def test_tool_call_start_after_reasoning_arrives_with_the_closing_gt() -> None:
    p = parser.StreamParser(tools=[WEATHER_OPENAI])
    events = _collect(p, "Call it.\n", "<minimax:tool_call>\n", '<invoke name="get_weather"', ">")
    assert ToolCallStart(0, "get_weather") in events
    assert normalize([e for e in events if isinstance(e, ThinkText)]) == [ThinkText("Call it.\n")]


def test_string_value_streams_before_close_parameter() -> None:
    tools = [
        {
            "name": "write_file",
            "parameters": {"type": "object", "properties": {"content": {"type": "string"}}},
        }
    ]
    final = '{"path": "a.txt", "content": "Hello, world. \\"Quoted\\" line\\nnext"}'
    p = parser.StreamParser(tools=tools)
    events = _collect(
        p,
        '<minimax:tool_call>\n<invoke name="write_file">\n',
        '<parameter name="path">a.txt</parameter>\n<parameter name="content">Hello, wor',
    )
    so_far = "".join(e.fragment for e in events if isinstance(e, ToolArgs))
    assert final.startswith(so_far)
    assert so_far.endswith("Hello, wor")
    events += _collect(p, 'ld. "Quoted" line\nne')
    so_far = "".join(e.fragment for e in events if isinstance(e, ToolArgs))
    assert final.startswith(so_far)
    assert so_far.endswith('Hello, world. \\"Quoted\\" line\\nne')
    events += _collect(p, "xt</parameter>\n</invoke>\n</minimax:tool_call>")
    events += p.close()
    assert "".join(e.fragment for e in events if isinstance(e, ToolArgs)) == final


def test_non_string_value_waits_for_confirmed_close_parameter() -> None:
    p = parser.StreamParser(tools=[WEATHER_OPENAI])
    events = _collect(
        p, '<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="days">12'
    )
    events += _collect(p, "</parameter>")
    # Not yet confirmed: "12</parameter>" could still continue as a (string) value.
    assert "12" not in "".join(e.fragment for e in events if isinstance(e, ToolArgs))
    events += _collect(p, "\n</invoke>")
    args = "".join(e.fragment for e in events if isinstance(e, ToolArgs))
    assert args == '{"days": 12}'
    assert ToolCallEnd(0, "get_weather", {"days": 12}) in events


def test_plain_text_streams_without_waiting_for_close() -> None:
    p = parser.StreamParser()
    assert normalize(p.feed("Let me think")) == [ThinkText("Let me think")]
    out = normalize(p.feed(" more.</think>Hello"))
    assert out == [ThinkText(" more."), ContentText("Hello")]
    assert normalize(p.feed(" there <")) == [ContentText(" there ")]  # "<" may start a tag
    assert normalize(p.close()) == [ContentText("<")]


def test_partial_special_token_held_then_released() -> None:
    p = parser.StreamParser(starts_in_think=False)
    first = normalize(p.feed("abc ]~"))
    assert first == [ContentText("abc ")]
    assert normalize(p.feed("b]def")) == [ContentText("def")]
    assert normalize(p.feed("]~x")) == [ContentText("]~x")]


def test_parse_equals_feeding_whole_text() -> None:
    text = "r</think>a" + render_call("get_weather", {"location": "Oslo"}) + "b"
    events = feed_all([text], tools=[WEATHER_OPENAI])
    result = parser.parse(text, tools=[WEATHER_OPENAI])
    assert (result.reasoning, result.content) == ("r", "ab")
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        (e.name, e.arguments) for e in events if isinstance(e, ToolCallEnd)
    ]
    assert json.loads(result.tool_calls[0].arguments_json) == {"location": "Oslo"}


def test_fallbacks_count_markup_given_back_as_text() -> None:
    p = parser.StreamParser()
    p.feed("think</think>ok <minimax:tool_call>not a call</minimax:tool_call> done")
    p.close()
    assert p.fallbacks == 1
    clean = parser.StreamParser()
    clean.feed('r</think><minimax:tool_call><invoke name="f"></invoke></minimax:tool_call>')
    clean.close()
    assert clean.fallbacks == 0
