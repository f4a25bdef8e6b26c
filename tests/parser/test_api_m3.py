"""Choosing the grammar, and the streaming promises of ``grammar="m3"``."""

from __future__ import annotations

from typing import Any

import pytest

import parser
from parser import ContentText, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart
from tests.parser.corpus_m3 import NS, TOOLS, B, E, el, inv, items
from tests.parser.helpers import feed_all, normalize

# --------------------------------------------------------------------------- grammar


@pytest.mark.parametrize("grammar", ["m4", "M3", "", "minimax-m3"])
def test_unknown_grammar_is_a_usage_error_at_construction(grammar: str) -> None:
    with pytest.raises(parser.ParserUsageError):
        parser.StreamParser(grammar=grammar)
    with pytest.raises(parser.ParserUsageError):
        parser.parse("x", grammar=grammar)


@pytest.mark.parametrize("grammar", ["m2", "m3"])
def test_every_grammar_is_a_stream_parser(grammar: str) -> None:
    p = parser.StreamParser(None, True, grammar)
    assert isinstance(p, parser.StreamParser)
    assert p.fallbacks == 0
    assert normalize(p.feed("x") + p.close()) == [ThinkText("x")]
    with pytest.raises(parser.ParserUsageError):
        p.feed("more")
    with pytest.raises(parser.ParserUsageError):
        p.close()


def test_m2_is_the_default_and_grammars_differ() -> None:
    m2_text = "r</think>a"
    m3_text = "r</mm:think>a"
    assert parser.parse(m2_text).content == "a"
    assert parser.parse(m2_text, grammar="m2").content == "a"
    assert parser.parse(m3_text).content is None  # M2 reads the M3 closer as reasoning text
    assert parser.parse(m3_text, grammar="m3").content == "a"
    assert parser.parse(m2_text, grammar="m3").content is None
    assert type(parser.StreamParser()) is type(parser.StreamParser(grammar="m2"))
    assert type(parser.StreamParser()) is not type(parser.StreamParser(grammar="m3"))


# --------------------------------------------------------------------------- streaming


def m3(tools: Any = TOOLS, starts_in_think: bool = True) -> parser.StreamParser:
    return parser.StreamParser(tools, starts_in_think, grammar="m3")


def feed_chars(p: parser.StreamParser, text: str) -> list[Any]:
    out: list[Any] = []
    for ch in text:
        out += p.feed(ch)
    return out


def args_of(events: list[Any]) -> str:
    return "".join(e.fragment for e in events if isinstance(e, ToolArgs))


@pytest.mark.parametrize("quote", ['"', "'", ""])
def test_tool_call_start_arrives_with_the_closing_gt(quote: str) -> None:
    p = m3()
    before = feed_chars(p, f"Plan.{B}{NS}<invoke name={quote}get_weather{quote}")
    assert not any(isinstance(e, ToolCallStart) for e in before)
    assert ToolCallStart(0, "get_weather") in p.feed(">")
    assert normalize(before) == [ThinkText("Plan.")]


def test_nested_arguments_grow_character_by_character() -> None:
    code = "print('<b>')\n"
    call = inv(
        "write_files",
        el("files", items(el("path", "src/a.py") + el("content", code))),
        el("message", "m"),
    )
    final = '{"files": [{"path": "src/a.py", "content": "print(\'<b>\')\\n"}], "message": "m"}'
    p = m3()
    events = p.feed(B)
    head = call[: call.index(code)]
    events += feed_chars(p, head)
    assert args_of(events) == '{"files": [{"path": "src/a.py", "content": "'
    for ch in code:
        before = args_of(events)
        events += p.feed(ch)
        now = args_of(events)
        assert final.startswith(now) and len(now) > len(before), (ch, now)
    events += p.feed(call[len(head) + len(code) :] + E)
    events += p.close()
    assert args_of(events) == final
    end = next(e for e in events if isinstance(e, ToolCallEnd))
    assert end.arguments["files"] == [{"path": "src/a.py", "content": code}]


def test_containers_open_as_soon_as_their_first_child_begins() -> None:
    p = m3()
    events = p.feed(B + f'{NS}<invoke name="create_order">{NS}<shipping>')
    assert args_of(events) == "{"
    events += p.feed(f"{NS}<city>")
    assert args_of(events) == '{"shipping": {"city": "'
    events += p.feed(f"Paris{NS}</city>{NS}</shipping>{NS}<items>{NS}<item>")
    assert args_of(events) == '{"shipping": {"city": "Paris"}, "items": ['
    events += p.feed(f"{NS}<sku>")
    assert args_of(events).endswith('"items": [{"sku": "')


def test_value_with_no_schema_is_held_until_text_or_child_is_known() -> None:
    p = m3(tools=None)
    events = p.feed(B + f'{NS}<invoke name="deploy">{NS}<target>\n  ')
    assert args_of(events) == "{"  # whitespace: not yet known to be text or markup
    events += p.feed("]<]mini")
    assert args_of(events) == "{"  # may be the marker of a child element
    events += p.feed(f"max[>[<region>eu{NS}</region>")
    assert args_of(events) == '{"target": {"region": "eu"'
    q = m3(tools=None)
    events = q.feed(B + f'{NS}<invoke name="deploy">{NS}<note>\n  ')
    events += q.feed("h")
    assert args_of(events) == '{"note": "\\n  h'  # text: the held whitespace is the value's


def test_typed_scalar_waits_for_its_closing_tag() -> None:
    p = m3()
    events = p.feed(B + f'{NS}<invoke name="get_weather">{NS}<days>12')
    assert args_of(events) == "{"
    events += p.feed(f"{NS}</days>")
    assert args_of(events) == '{"days": 12'


def test_collection_closes_when_another_name_follows() -> None:
    p = m3()
    events = p.feed(B + f'{NS}<invoke name="search">' + el("labels", "a"))
    assert args_of(events) == '{"labels": ["a"'
    events += p.feed(el("labels", "b"))
    assert args_of(events) == '{"labels": ["a", "b"'
    events += p.feed(el("limit", "2"))
    assert args_of(events) == '{"labels": ["a", "b"], "limit": 2'


def test_plain_text_streams_and_a_possible_marker_is_held() -> None:
    p = m3(starts_in_think=False)
    assert normalize(p.feed("Hello <b>")) == [ContentText("Hello <b>")]
    assert normalize(p.feed(" x ]")) == [ContentText(" x ")]
    assert normalize(p.feed("<]")) == []
    assert normalize(p.feed("y")) == [ContentText("]<]y")]
    assert normalize(p.feed(" <mm:th")) == [ContentText(" ")]
    assert normalize(p.close()) == [ContentText("<mm:th")]


def test_fallbacks_count_markup_given_back_as_text() -> None:
    p = m3()
    p.feed("r</mm:think>ok " + B + "not a call" + E + " done")
    p.close()
    assert p.fallbacks == 1
    clean = m3()
    clean.feed("r</mm:think>" + B + inv("f", el("a", "1")) + E)
    clean.close()
    assert clean.fallbacks == 0


def test_parse_with_grammar_gives_the_stream_result() -> None:
    text = "r</mm:think>a" + B + inv("get_weather", el("days", "2")) + E + "b"
    events = feed_all([text], tools=TOOLS, grammar="m3")
    result = parser.parse(text, TOOLS, True, "m3")
    assert (result.reasoning, result.content) == ("r", "ab")
    [end] = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [(c.name, c.arguments, c.arguments_json) for c in result.tool_calls] == [
        (end.name, end.arguments, '{"days": 2}')
    ]
